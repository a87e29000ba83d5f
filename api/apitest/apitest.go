// Package apitest helps tests that need a running api.Server: a server on
// 127.0.0.1 stopped when the test ends, random volume keys, and a Handler
// that records notices.
package apitest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"testing"

	"github.com/delugefs/delugefs/api"
)

// Key returns a new random volume key in node.json's form.
func Key() string {
	k := make([]byte, 32)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// Start registers vols on a new server listening on 127.0.0.1 (unless
// opts.Addr says otherwise), serves it, and stops it when the test ends.
// It returns the server and its base URL ("http://127.0.0.1:PORT").
func Start(t testing.TB, opts api.Options, vols ...api.Volume) (*api.Server, string) {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	s := api.New(opts)
	for _, v := range vols {
		if err := s.Register(v); err != nil {
			t.Fatalf("register %s: %v", v.ID, err)
		}
	}
	addr, err := s.Listen()
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // exits when cancel runs at cleanup
		defer close(done)
		if err := s.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s, "http://" + addr.String()
}

// Recorder is an api.Handler that records notices and answers the other
// calls from its fields. Its methods are safe for concurrent use.
type Recorder struct {
	// Haves, Disks and VolStatus are returned by Have, Space and Status;
	// set them before serving.
	Haves     []api.NodeHave
	Disks     []api.Disk
	VolStatus api.VolumeStatus

	// Notices receives every notice (buffered; a full buffer drops).
	Notices chan api.Notice

	mu  sync.Mutex // guards all
	all []api.Notice
}

// NewRecorder returns a Recorder with a notice buffer of 64.
func NewRecorder() *Recorder { return &Recorder{Notices: make(chan api.Notice, 64)} }

// Notify records n.
func (r *Recorder) Notify(ctx context.Context, n api.Notice) error {
	r.mu.Lock()
	r.all = append(r.all, n)
	r.mu.Unlock()
	select {
	case r.Notices <- n:
	default:
	}
	return nil
}

// All returns the notices received so far.
func (r *Recorder) All() []api.Notice {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]api.Notice(nil), r.all...)
}

// Have returns r.Haves.
func (r *Recorder) Have(ctx context.Context) ([]api.NodeHave, error) { return r.Haves, nil }

// Space returns r.Disks.
func (r *Recorder) Space(ctx context.Context) ([]api.Disk, error) { return r.Disks, nil }

// Status returns r.VolStatus.
func (r *Recorder) Status(ctx context.Context) (*api.VolumeStatus, error) {
	st := r.VolStatus
	return &st, nil
}
