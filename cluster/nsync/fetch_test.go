package nsync

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/meta"
)

// clonePeer clones p into a new directory and returns its git dir.
func clonePeer(t *testing.T, p *peer) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "meta.git")
	if err := Clone(testCtx(t, 20*time.Second), p.client, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFetchTransfersOnlyTheDifference(t *testing.T) {
	p := newPeer(t, "")
	var names []string
	for i := range 40 {
		names = append(names, "d"+string(rune('a'+i%4))+"/f"+string(rune('a'+i)))
	}
	p.write(t, 1, names...)
	local := clonePeer(t, p)
	before := treeDigest(t, local)

	p.write(t, 100, "db/new")
	head := p.repo.Head()
	f, err := Fetch(testCtx(t, 10*time.Second), p.client, local, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Skipped || f.Head != head {
		t.Fatalf("fetch: skipped %v head %s, want %s", f.Skipped, f.Head, head)
	}
	// The new commit, the root tree, db's tree and the new manifest.
	if f.Objects != 4 {
		t.Errorf("fetch received %d objects, want 4 (commit, 2 trees, 1 blob)", f.Objects)
	}
	if f.Requests != 2 {
		t.Errorf("fetch made %d requests, want 2", f.Requests)
	}
	c, err := object.GetCommit(f.Store, head)
	if err != nil {
		t.Fatalf("read fetched head: %v", err)
	}
	tree, err := c.Tree()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.FindEntry("db/new"); err != nil {
		t.Errorf("fetched tree: %v", err)
	}
	if _, err := tree.FindEntry("da/fa"); err != nil { // read through to our repository
		t.Errorf("fetched tree, old entry: %v", err)
	}
	if got := treeDigest(t, local); got != before {
		t.Errorf("Fetch wrote into our repository")
	}
	t.Logf("incremental fetch: %d objects, pack %d B, %d B on the wire, %d haves", f.Objects, f.PackBytes, f.Bytes, f.Haves)
}

func TestFetchSkipsWhatWeHave(t *testing.T) {
	p := newPeer(t, "")
	p.write(t, 1, "a", "b")
	local := clonePeer(t, p)
	gets, posts := p.gets.Load(), p.posts.Load()
	f, err := Fetch(testCtx(t, 10*time.Second), p.client, local, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Skipped || f.Head != p.repo.Head() || f.Store != nil {
		t.Fatalf("fetch of a head we hold: skipped %v head %s store %v", f.Skipped, f.Head, f.Store)
	}
	if g, q := p.gets.Load()-gets, p.posts.Load()-posts; g != 1 || q != 0 || f.Requests != 1 {
		t.Errorf("fetch of a head we hold made %d GETs and %d POSTs (client says %d requests), want 1 and 0", g, q, f.Requests)
	}
	t.Logf("skipped fetch: %d B on the wire", f.Bytes)

	// Known heads are skipped without looking into our repository.
	p.write(t, 5, "c")
	f, err = Fetch(testCtx(t, 10*time.Second), p.client, local, Options{Known: []plumbing.Hash{p.repo.Head()}})
	if err != nil || !f.Skipped {
		t.Fatalf("fetch of a known head: %v, skipped %v", err, f != nil && f.Skipped)
	}
	if q := p.posts.Load() - posts; q != 0 {
		t.Errorf("fetch of a known head made %d POSTs", q)
	}
}

func TestFetchEmptyPeer(t *testing.T) {
	p := newPeer(t, "")
	local := filepath.Join(t.TempDir(), "meta.git")
	r, err := meta.Open(local, meta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	f, err := Fetch(testCtx(t, 10*time.Second), p.client, local, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Skipped || !f.Head.IsZero() {
		t.Errorf("fetch from an empty peer: skipped %v head %s", f.Skipped, f.Head)
	}
}

func TestFetchWrongToken(t *testing.T) {
	p := newPeer(t, "")
	p.write(t, 1, "a")
	local := clonePeer(t, p)
	p.write(t, 2, "b")
	c := p.newClient(t, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") // another volume's key
	_, err := Fetch(testCtx(t, 10*time.Second), c, local, Options{})
	if !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("fetch with a wrong token: %v, want api.ErrUnauthorized", err)
	}
	if !strings.Contains(err.Error(), "wrong volume key") {
		t.Errorf("error does not say what is wrong: %v", err)
	}
	if Unreachable(err) {
		t.Errorf("Unreachable(%v)", err)
	}
	t.Logf("wrong token: %v", err)
}

func TestFetchBadPeers(t *testing.T) {
	p := newPeer(t, "")
	var names []string
	for i := range 30 {
		names = append(names, "f"+string(rune('a'+i)))
	}
	p.write(t, 1, names...)
	local := clonePeer(t, p)
	p.write(t, 50, "g1", "g2", "g3", "g4")
	before := treeDigest(t, local)

	for _, tc := range []struct {
		name   string
		mangle func([]byte) []byte
		opts   Options
		want   error
	}{
		{"garbage", func([]byte) []byte { return []byte("this is not a pack, this is a teapot") }, Options{}, ErrBadPack},
		{"flipped", func(b []byte) []byte {
			b = append([]byte(nil), b...)
			b[len(b)-5] ^= 0xff // last byte of the pack's checksum, before the flush
			return b
		}, Options{}, ErrBadPack},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, Options{}, ErrBadPack},
		{"truncated at a packet", func(b []byte) []byte { return b[:len(b)-4-25] }, Options{}, ErrBadPack},
		{"server error", func([]byte) []byte { return nil }, Options{}, api.ErrServer},
		{"oversize pack", nil, Options{Limits: Limits{PackBytes: 200}}, ErrTooLarge},
		{"too many objects", nil, Options{Limits: Limits{Objects: 3}}, ErrTooLarge},
		{"object too large", nil, Options{Limits: Limits{ObjectSize: 100}}, ErrTooLarge},
		{"inflates too much", nil, Options{Limits: Limits{Inflated: 500}}, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mangle != nil {
				p.setMangle(tc.mangle)
				defer p.mangle.Store(nil)
			}
			f, err := Fetch(testCtx(t, 10*time.Second), p.client, local, tc.opts)
			if err == nil {
				f.Close()
				t.Fatalf("fetch succeeded (%d objects)", f.Objects)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "nsync: ") {
				t.Errorf("error without the package prefix: %v", err)
			}
			if Unreachable(err) {
				t.Errorf("Unreachable(%v)", err)
			}
			t.Logf("%v", err)
		})
	}
	if got := treeDigest(t, local); got != before {
		t.Errorf("a failed fetch wrote into our repository")
	}
	// The peer, served honestly again, is fetched.
	f, err := Fetch(testCtx(t, 10*time.Second), p.client, local, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestFetchDeadPeer(t *testing.T) {
	local := filepath.Join(t.TempDir(), "meta.git")
	r, err := meta.Open(local, meta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()

	// A closed port: refused at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := api.NewClient("http://"+addr, testVolume, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := Fetch(context.Background(), c, local, Options{Timeout: 2 * time.Second}); err == nil {
		t.Fatal("fetch from a closed port succeeded")
	} else {
		t.Logf("closed port after %v: %v", time.Since(start), err)
		if !Unreachable(err) {
			t.Errorf("Unreachable(%v) is false", err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("fetch from a closed port took %v", d)
	}

	// A peer that accepts and never answers: the deadline ends it.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // exits when ln is closed
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c.Base = "http://" + ln.Addr().String()
	start = time.Now()
	_, err = Fetch(context.Background(), c, local, Options{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) || !Unreachable(err) {
		t.Errorf("fetch from a silent peer: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("fetch from a silent peer took %v", d)
	}
	t.Logf("silent peer after %v: %v", time.Since(start), err)
}
