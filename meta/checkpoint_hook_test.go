package meta_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
)

// BeforeCheckpoint runs before every checkpoint's barrier (here: a small
// journal that fills, and Close); its error fails the checkpoint, and the
// journal's records stay for the replay.
func TestBeforeCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	var calls atomic.Int32
	var fail atomic.Bool
	hook := func() error {
		calls.Add(1)
		if fail.Load() {
			return errors.New("blobs not written")
		}
		return nil
	}
	s := metatest.Serve(t, dir, meta.Options{JournalSize: 64 << 10, BeforeCheckpoint: hook})
	ctx := context.Background()
	for i := range 300 { // fills the 64 KiB journal several times
		p := "f" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		s.Do(t, "write", func(tx *meta.Tx) error { return tx.Put(p, metatest.File(100, uint64(i), 0o644, int64(i))) })
	}
	if calls.Load() == 0 {
		t.Fatal("no checkpoint called the hook")
	}
	fail.Store(true)
	before := calls.Load()
	err := s.Update(ctx, "more", func(tx *meta.Tx) error { return tx.Put("last", metatest.File(100, 999, 0o644, 1)) })
	s.Stop()
	if calls.Load() == before {
		t.Fatal("Close's checkpoint did not call the hook")
	}
	// The records the failed checkpoint kept are replayed: "last" is
	// there if its update succeeded (it fails when its commit needed the
	// checkpoint: a full journal), and absent if it failed.
	fail.Store(false)
	r := metatest.Serve(t, dir, meta.Options{JournalSize: 64 << 10, BeforeCheckpoint: hook})
	if _, ok := r.Snapshot().Get("last"); ok != (err == nil) {
		t.Fatalf("update with a failing hook: %v; after reopen present=%v", err, ok)
	}
}
