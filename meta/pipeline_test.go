package meta

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/internal/testwait"
)

func fileEntry(seed byte) *Entry {
	pieces := make([]byte, 20)
	pieces[0] = seed
	return &Entry{Kind: KindFile, Mode: 0o644, Info: bt.NewInfo(10, 1<<18, pieces)}
}

// TestPipelinedBarrier: while a durable update's barrier runs, other
// updates are applied (a lazy one is answered at once) but no durable one
// is answered before a barrier that began after its record was written.
func TestPipelinedBarrier(t *testing.T) {
	r, err := Open(filepath.Join(t.TempDir(), "meta.git"), Options{FlushDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	serve(t, r)
	var (
		mu      sync.Mutex
		started int
		release = make(chan struct{})
	)
	r.syncMu.Lock()
	r.j.beforeSync = func() error {
		mu.Lock()
		started++
		mu.Unlock()
		<-release
		return nil
	}
	r.syncMu.Unlock()
	update := func(lazy bool, p string, seed byte) <-chan error {
		done := make(chan error, 1)
		go func() { // ends when the update is answered
			u := r.Update
			if lazy {
				u = r.UpdateLazy
			}
			done <- u(context.Background(), "write "+p, func(tx *Tx) error { return tx.Put(p, fileEntry(seed)) })
		}()
		return done
	}
	barriers := func() int { mu.Lock(); defer mu.Unlock(); return started }
	a := update(false, "a", 1)
	testwait.For(t, 10*time.Second, "a's barrier", func() bool { return barriers() == 1 })
	// The barrier holds: a lazy update is applied and answered anyway.
	select {
	case err := <-update(true, "b", 2):
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lazy update waited for another update's barrier")
	}
	c := update(false, "c", 3)
	testwait.For(t, 10*time.Second, "c applied", func() bool { _, ok := r.Snapshot().Get("c"); return ok })
	if testwait.Until(50*time.Millisecond, func() bool { return len(a) > 0 || len(c) > 0 }) {
		t.Fatal("a durable update was answered before its barrier")
	}
	close(release)
	for _, ch := range []<-chan error{a, c} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if n := barriers(); n > 2 {
		// c's record was written while a's barrier was held: that
		// barrier takes it, or one more does.
		t.Errorf("%d barriers for two durable updates", n)
	}
	if r.j.unsynced() {
		t.Errorf("records left unsynced")
	}
}

// TestBarrierFailure: a failed journal barrier fails the updates that
// waited for it and every update after it (the disk's state is unknown
// until a restart replays the journal); Close still works.
func TestBarrierFailure(t *testing.T) {
	r, err := Open(filepath.Join(t.TempDir(), "meta.git"), Options{FlushDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, r)
	put(t, r, "ok", 1)
	r.syncMu.Lock()
	r.j.beforeSync = func() error { return syscall.EIO }
	r.syncMu.Unlock()
	if r.Err() != nil {
		t.Fatalf("Err before any failure: %v", r.Err())
	}
	err = r.Update(context.Background(), "write x", func(tx *Tx) error { return tx.Put("x", fileEntry(2)) })
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("update over a failed barrier: %v", err)
	}
	if !errors.Is(r.Err(), syscall.EIO) {
		t.Errorf("Err after a failed barrier: %v", r.Err())
	}
	r.syncMu.Lock()
	r.j.beforeSync = nil // the disk is back: the node still refuses
	r.syncMu.Unlock()
	for _, lazy := range []bool{false, true} {
		u := r.Update
		if lazy {
			u = r.UpdateLazy
		}
		if err := u(context.Background(), "write y", func(tx *Tx) error { return tx.Put("y", fileEntry(3)) }); !errors.Is(err, syscall.EIO) {
			t.Errorf("update after a failed barrier (lazy %v): %v", lazy, err)
		}
	}
	if _, ok := r.Snapshot().Get("y"); ok {
		t.Errorf("an update after a failed barrier was applied")
	}
	if _, ok := r.Snapshot().Get("ok"); !ok {
		t.Errorf("a durable update before the failure is gone")
	}
	r.Close()
}
