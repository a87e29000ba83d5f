// Package metatest helps tests that need a meta.Repo: a served repository
// in a temporary directory, and file entries with made-up piece hashes.
package metatest

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/meta"
)

// PieceLength is the piece length of the infos Info makes.
const PieceLength = 256 << 10

// Info returns a valid info dictionary for a blob of size bytes (size > 0)
// whose piece hashes are derived from seed, so different seeds give
// different info-hashes. No data exists behind it.
func Info(size int64, seed uint64) *bt.Info {
	n := (size + PieceLength - 1) / PieceLength
	pieces := make([]byte, 0, n*20)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], seed)
	for i := int64(0); i < n; i++ {
		binary.LittleEndian.PutUint64(b[8:], uint64(i))
		h := sha1.Sum(b[:])
		pieces = append(pieces, h[:]...)
	}
	return bt.NewInfo(size, PieceLength, pieces)
}

// File returns a regular file entry of size bytes (empty when size is 0).
func File(size int64, seed uint64, mode uint32, mtime int64) *meta.Entry {
	e := &meta.Entry{Kind: meta.KindFile, Mode: mode, Mtime: mtime, Size: size}
	if size > 0 {
		e.Info = Info(size, seed)
	}
	return e
}

// Dir returns a directory entry.
func Dir(mode uint32, mtime int64) *meta.Entry {
	return &meta.Entry{Kind: meta.KindDir, Mode: mode, Mtime: mtime}
}

// Symlink returns a symlink entry.
func Symlink(target string) *meta.Entry {
	return &meta.Entry{Kind: meta.KindSymlink, Mode: 0o777, Target: target}
}

// Serve opens (or creates) the repository at gitDir, runs its Serve loop,
// and stops and closes it when the test ends. Use Stop to end it earlier.
func Serve(t testing.TB, gitDir string, opts meta.Options) *Served {
	t.Helper()
	r, err := meta.Open(gitDir, opts)
	if err != nil {
		t.Fatalf("open %s: %v", gitDir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Served{Repo: r, cancel: cancel, done: make(chan struct{})}
	go func() { // exits when Stop cancels ctx
		defer close(s.done)
		if err := r.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, meta.ErrClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(s.Stop)
	return s
}

// New is Serve on a fresh repository under t.TempDir().
func New(t testing.TB) *Served {
	t.Helper()
	return Serve(t, filepath.Join(t.TempDir(), "meta.git"), meta.Options{})
}

// Served is a Repo with its Serve loop running.
type Served struct {
	*meta.Repo
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Stop ends the Serve loop, waits for it, and closes the Repo.
func (s *Served) Stop() {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		s.Repo.Close()
	})
}

// Do runs one update and fails the test on error.
func (s *Served) Do(t testing.TB, msg string, fn func(tx *meta.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), msg, fn); err != nil {
		t.Fatalf("update %q: %v", msg, err)
	}
}
