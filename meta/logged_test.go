package meta

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/delugefs/delugefs/bt"
)

// dumpSnap describes every entry of s as its manifest (a symlink: its
// target), for comparing a namespace with what a replay rebuilt.
func dumpSnap(s *Snapshot) map[string]string {
	m := map[string]string{}
	s.Walk(func(p string, e *Entry) bool {
		if e.Kind == KindSymlink {
			m[p] = "-> " + e.Target
		} else {
			m[p] = string(encodeManifest(e))
		}
		return true
	})
	return m
}

func sameNamespace(t *testing.T, what string, got, want *Snapshot) {
	t.Helper()
	g, w := dumpSnap(got), dumpSnap(want)
	if maps.Equal(g, w) {
		return
	}
	for p, d := range w {
		if g[p] != d {
			t.Errorf("%s: %q is %q, want %q", what, p, g[p], d)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: %q should not exist", what, p)
		}
	}
}

func headMessage(t *testing.T, gitDir string) string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", gitDir, "log", "-1", "--format=%B").CombinedOutput()
	if err != nil {
		t.Fatalf("git log: %v\n%s", err, out)
	}
	return string(out)
}

// TestUpdateLoggedPowerCut: a logged update is durable when it returns,
// through an operations record and one barrier, without a commit (Head
// stays); a power cut then loses none of it: the replay applies the
// operations (puts of files, directories and symlinks, removes, renames,
// attribute changes, the lazy updates before them) on the commit they
// were made on, restores their attached blobs, and commits them. A lazy
// update after the last barrier is lost whole; operations records before
// a commit's record are not applied twice.
func TestUpdateLoggedPowerCut(t *testing.T) {
	root, r, st := openForCuts(t, Options{})
	ctx := context.Background()
	logged := func(msg string, fn func(tx *Tx) error) {
		t.Helper()
		if err := r.UpdateLogged(ctx, msg, fn); err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
	}
	if err := r.Update(ctx, "mkdir d, create d/x", func(tx *Tx) error { // a commit to build on
		if err := tx.Put("d", &Entry{Kind: KindDir, Mode: 0o755}); err != nil {
			return err
		}
		return tx.Put("d/x", emptyFile())
	}); err != nil {
		t.Fatal(err)
	}
	head0, commits := r.Head(), r.Stats().Commits
	barriers := r.Stats().Barriers

	if err := r.UpdateLazy(ctx, "create d/a", func(tx *Tx) error { return tx.Put("d/a", emptyFile()) }); err != nil {
		t.Fatal(err)
	}
	info, data := sealSmall(t, st, 3000, 1)
	logged("write d/a", func(tx *Tx) error {
		if err := tx.AttachBlob(info, data); err != nil {
			return err
		}
		return tx.Put("d/a", &Entry{Kind: KindFile, Mode: 0o640, UID: 7, GID: 8, Mtime: 5e9, Info: info,
			Xattrs: map[string][]byte{"user.k": []byte("v\x00w")}})
	})
	logged("mkdir e", func(tx *Tx) error {
		return tx.Put("e", &Entry{Kind: KindDir, Mode: 0o750, Mtime: 6e9, Xattrs: map[string][]byte{"user.dir": {1}}})
	})
	logged("symlink e/l", func(tx *Tx) error { return tx.Put("e/l", &Entry{Kind: KindSymlink, Target: "../d/a"}) })
	logged("rename d/a -> e/a", func(tx *Tx) error { return tx.Rename("d/a", "e/a") })
	logged("create and remove d/tmp, remove d/x", func(tx *Tx) error {
		if err := tx.Put("d/tmp", emptyFile()); err != nil {
			return err
		}
		if err := tx.Remove("d/tmp"); err != nil {
			return err
		}
		return tx.Remove("d/x")
	})
	logged("chmod /", func(tx *Tx) error { return tx.Put("", &Entry{Kind: KindDir, Mode: 0o700, Mtime: 9e9}) })
	logged("a failing update leaves nothing", func(tx *Tx) error {
		if err := tx.Put("e/never", emptyFile()); err != nil {
			return err
		}
		return nil
	})
	if err := r.UpdateLogged(ctx, "fails", func(tx *Tx) error {
		tx.Put("e/gone", emptyFile())
		return ErrInvalid
	}); err == nil {
		t.Fatal("a failing logged update succeeded")
	}
	s := r.Stats()
	if r.Head() != head0 || s.Commits != commits {
		t.Errorf("logged updates committed: head %s (was %s), %d commits (was %d)", r.Head(), head0, s.Commits, commits)
	}
	if got := s.Barriers - barriers; got != 7 {
		t.Errorf("%d barriers for 7 logged updates", got)
	}
	if _, ok := r.Snapshot().Get("e/gone"); ok {
		t.Error("a failed update was applied")
	}

	cut := powerCut(t, r, root, []bt.InfoHash{info.Hash()})
	c, cst := reopen(t, cut)
	sameNamespace(t, "after the cut", c.Snapshot(), r.Snapshot())
	blobIs(t, cst, info, data)
	if c.Head() == head0 {
		t.Error("the replayed operations were not committed")
	}
	if msg := headMessage(t, filepath.Join(cut, "meta.git")); !strings.Contains(msg, "rename d/a -> e/a") {
		t.Errorf("replayed commit's message %q lacks the updates'", msg)
	}
	if recs, _ := c.j.records(); len(recs) != 0 {
		t.Errorf("%d live records after the replay's checkpoint", len(recs))
	}
	gitFsckDir(t, filepath.Join(cut, "meta.git"))

	// A lazy update after the last barrier is lost whole; a commit's
	// record (Update) covers the operations records before it, and the
	// ones after it are applied on its commit.
	logged("create f1", func(tx *Tx) error { return tx.Put("f1", emptyFile()) })
	put(t, r, "f2", 2)
	logged("rename f1 -> f3", func(tx *Tx) error { return tx.Rename("f1", "f3") })
	want := r.Snapshot()
	if err := r.UpdateLazy(ctx, "create z", func(tx *Tx) error { return tx.Put("z", emptyFile()) }); err != nil {
		t.Fatal(err)
	}
	c, _ = reopen(t, powerCut(t, r, root, []bt.InfoHash{info.Hash()}))
	sameNamespace(t, "after the second cut", c.Snapshot(), want)

	// A logged update that changes nothing (fsyncdir) makes the lazy
	// ones before it durable.
	if err := r.UpdateLazy(ctx, "create g", func(tx *Tx) error { return tx.Put("g", emptyFile()) }); err != nil {
		t.Fatal(err)
	}
	logged("nothing", func(*Tx) error { return nil })
	c, _ = reopen(t, powerCut(t, r, root, []bt.InfoHash{info.Hash()}))
	if _, ok := c.Snapshot().Get("g"); !ok {
		t.Error("a lazy create before a logged no-op was lost in a cut")
	}

	// Sync commits the logged updates: git shows them.
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Head() == head0 || r.Stats().Commits == commits {
		t.Error("Sync did not commit the logged updates")
	}
	if msg := headMessage(t, filepath.Join(root, "meta.git")); !strings.Contains(msg, "rename f1 -> f3") {
		t.Errorf("commit message %q lacks the logged updates'", msg)
	}
}

// TestUpdateLoggedJournalFull: when the journal has no room for the next
// record, logged updates are committed the slow way (objects, syncfs, ref)
// before any record is retired: a power cut loses none that returned,
// neither after their return nor just before the first barrier after a
// commit (a checkpoint there would have retired their records before the
// commit that holds them was durable).
func TestUpdateLoggedJournalFull(t *testing.T) {
	root, r, _ := openForCuts(t, Options{JournalSize: 64 << 10})
	type cutAt struct {
		dir        string
		acked, now *Snapshot
	}
	var (
		acked       atomic.Pointer[Snapshot] // every update that returned
		hookOn      atomic.Bool
		mu          sync.Mutex
		cuts        []cutAt
		lastCommits uint64
	)
	acked.Store(r.Snapshot())
	hookOn.Store(true)
	r.j.beforeSync = func() error {
		if c := r.Stats().Commits; hookOn.Load() && c != lastCommits {
			lastCommits = c
			mu.Lock()
			cuts = append(cuts, cutAt{powerCut(t, r, root, nil), acked.Load(), r.Snapshot()})
			mu.Unlock()
		}
		return nil
	}
	ctx := context.Background()
	big := []byte(strings.Repeat("x", 3000)) // ~20 updates fill the journal
	for i := range 150 {
		p := fmt.Sprintf("f%03d", i)
		err := r.UpdateLogged(ctx, "create "+p, func(tx *Tx) error {
			if i > 0 && i%7 == 0 {
				if err := tx.Remove(fmt.Sprintf("f%03d", i-1)); err != nil {
					return err
				}
			}
			return tx.Put(p, &Entry{Kind: KindFile, Mode: 0o644, Xattrs: map[string][]byte{"user.big": big}})
		})
		if err != nil {
			t.Fatal(err)
		}
		acked.Store(r.Snapshot())
		if i%10 == 9 {
			c, _ := reopen(t, powerCut(t, r, root, nil))
			sameNamespace(t, fmt.Sprintf("cut after %d updates", i+1), c.Snapshot(), r.Snapshot())
			if t.Failed() {
				t.FailNow()
			}
		}
	}
	hookOn.Store(false)
	if r.Stats().Commits == 0 {
		t.Error("a full journal did not commit the logged updates")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(cuts) == 0 {
		t.Fatal("no barrier followed a commit")
	}
	for i, cut := range cuts {
		c, _ := reopen(t, cut.dir)
		got := dumpSnap(c.Snapshot())
		if !maps.Equal(got, dumpSnap(cut.acked)) && !maps.Equal(got, dumpSnap(cut.now)) {
			sameNamespace(t, fmt.Sprintf("cut %d of %d (before a barrier)", i+1, len(cuts)), c.Snapshot(), cut.acked)
		}
	}
}
