package meta

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/delugefs/delugefs/bt"
)

// serve runs r's actor until the test ends or stop is called.
func serve(t *testing.T, r *Repo) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // ends when cancel is called
		defer close(done)
		r.Serve(ctx)
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// openServed opens the repository at dir and runs its actor; stop (run
// too when the test ends) stops the actor and closes the repository, once,
// and returns Close's error.
func openServed(t *testing.T, dir string, opts Options) (*Repo, func() error) {
	t.Helper()
	r, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Serve(ctx); close(done) }() // ends when stop cancels ctx
	stop := sync.OnceValue(func() error { cancel(); <-done; return r.Close() })
	t.Cleanup(func() { stop() })
	return r, stop
}

func put(t *testing.T, r *Repo, p string, seed byte) {
	t.Helper()
	pieces := make([]byte, 20)
	pieces[0] = seed
	e := &Entry{Kind: KindFile, Mode: 0o644, Info: bt.NewInfo(10, 1<<18, pieces)}
	if err := r.Update(context.Background(), "write "+p, func(tx *Tx) error { return tx.Put(p, e) }); err != nil {
		t.Fatal(err)
	}
}

// looseObjects lists the object files (loose objects, packs and their
// indexes) under gitDir.
func looseObjects(t *testing.T, gitDir string) map[string]bool {
	out := map[string]bool{}
	subs, _ := filepath.Glob(filepath.Join(gitDir, "objects", "??", "*"))
	packs, _ := filepath.Glob(filepath.Join(gitDir, "objects", "pack", "*"))
	for _, p := range append(subs, packs...) {
		out[p] = true
	}
	return out
}

// TestJournalReplay simulates a power cut that lost everything written
// since the last checkpoint except the journal: every loose object of the
// journaled commits and the branch update. Open must restore them all.
func TestJournalReplay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, r)
	put(t, r, "a", 1)
	r.Update(context.Background(), "checkpoint", func(tx *Tx) error { return nil })
	stop()
	if err := r.checkpoint(); err != nil { // everything so far is durable
		t.Fatal(err)
	}
	durable := looseObjects(t, dir)
	refPath := filepath.Join(dir, "refs", "heads", "main")
	durableRef, _ := os.ReadFile(refPath)
	stop = serve(t, r)
	put(t, r, "b", 2)
	put(t, r, "c", 3)
	put(t, r, "d", 4)
	head := r.Head()
	stop()         // writes the pending objects and moves the branch
	r.closeFiles() // a crash: no final checkpoint

	// The power cut: objects and ref written since the checkpoint vanish.
	lost := 0
	for p := range looseObjects(t, dir) {
		if !durable[p] {
			os.Remove(p)
			lost++
		}
	}
	os.WriteFile(refPath, durableRef, 0o644)
	if lost < 2 {
		t.Fatalf("only %d object files written by 3 commits", lost)
	}

	r, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after the cut: %v", err)
	}
	if r.Head() != head {
		t.Errorf("head %s after replay, want %s", r.Head(), head)
	}
	for _, p := range []string{"a", "b", "c", "d"} {
		if _, ok := r.Snapshot().Get(p); !ok {
			t.Errorf("%s missing after replay", p)
		}
	}
	if p := r.Problems(); len(p) > 0 {
		t.Errorf("problems: %v", p)
	}
	r.Close()

	// Replay started a new epoch: reopening replays nothing and agrees.
	r, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if recs, _ := r.j.records(); len(recs) != 0 || r.Head() != head {
		t.Errorf("after reopen: %d live records, head %s", len(recs), r.Head())
	}
	r.Close()
}

// TestJournalTornRecord corrupts the last record: replay stops before it
// and the branch stays at the commit before.
func TestJournalTornRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, r)
	put(t, r, "a", 1)
	first := r.Head()
	off := r.j.off
	put(t, r, "b", 2)
	stop()
	// Tear the second record (flip a payload byte) and move the branch to
	// it as a crash could have, then lose its objects? Keep them: the
	// branch must still come back to the first commit.
	var b [1]byte
	r.j.f.ReadAt(b[:], off+recordHead+5)
	b[0] ^= 0xff
	r.j.f.WriteAt(b[:], off+recordHead+5)
	r.closeFiles() // a crash: no final checkpoint

	r, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Head() != first {
		t.Errorf("head %s, want the first commit %s", r.Head(), first)
	}
	if _, ok := r.Snapshot().Get("b"); ok {
		t.Errorf("b survived a torn record")
	}
}

// TestJournalFull uses a tiny journal so that commits checkpoint and
// large commits bypass it; everything must persist.
func TestJournalFull(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, err := Open(dir, Options{JournalSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, r)
	big := make(map[string][]byte)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 240 {
		v := make([]byte, 270)
		for k := range v {
			v[k] = byte(rng.Uint32())
		}
		big["user.x"+string(rune('a'+i%26))+string(rune('a'+i/26))] = v
	}
	e := &Entry{Kind: KindFile, Mode: 0o644, Xattrs: big} // a 65 KiB manifest: larger than the journal
	for i := range 30 {
		put(t, r, "f"+string(rune('a'+i)), byte(i))
		if i%10 == 0 {
			p := "big" + string(rune('a'+i))
			if err := r.Update(context.Background(), "big", func(tx *Tx) error { return tx.Put(p, e) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	head := r.Head()
	want := r.Snapshot().Len()
	stop()
	r.Close()
	r, err = Open(dir, Options{JournalSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Head() != head || r.Snapshot().Len() != want {
		t.Errorf("head %s len %d, want %s %d", r.Head(), r.Snapshot().Len(), head, want)
	}
	if _, ok := r.Snapshot().Get("biga"); !ok {
		t.Errorf("big commit lost")
	}
}
