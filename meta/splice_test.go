package meta

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"

	"github.com/delugefs/delugefs/bt"
)

// checkTrees checks every directory under n against a full encoding of
// its children: its tree id, and its kept encoding and offsets if any. It
// returns the number of directories with a kept encoding.
func checkTrees(t *testing.T, n *node, path string) int {
	t.Helper()
	ents := []treeEnt{{markerName, filemode.Regular, n.marker}}
	kept := 0
	it := n.kids.Iterator()
	for !it.Done() {
		name, c, _ := it.Next()
		if c.e.Kind == KindDir {
			kept += checkTrees(t, c, join(path, name))
		}
		if c.oid.IsZero() {
			t.Fatalf("%q: child %q has no object", path, name)
		}
		ents = append(ents, treeEnt{escapeName(name), kidMode(c), c.oid})
	}
	want, offs := encodeTreeOffs(ents, true)
	if id := objectHash("tree", want); n.oid != id {
		t.Fatalf("%q: tree %s, a full encoding is %s", path, n.oid, id)
	}
	if n.enc == nil {
		return kept
	}
	if n.enc.id != n.oid || !bytes.Equal(n.enc.data, want) || fmt.Sprint(n.enc.offs) != fmt.Sprint(offs) {
		t.Fatalf("%q: kept encoding differs from a full encoding:\n%q\n%q", path, n.enc.data, want)
	}
	if n.dirty != nil {
		t.Fatalf("%q: written directory has changed names", path)
	}
	return kept + 1
}

// TestSpliceMatchesEncode runs random updates (several operations per
// commit, lazy ones grouped with durable ones) over names that sort around
// '/' and names escapeName changes, and checks after every commit that
// each directory's tree (spliced where it could be) equals a full
// encoding; then that stock git accepts the repository (trees sorted,
// deltas applying) and that a reopen reads the same tree ids.
func TestSpliceMatchesEncode(t *testing.T) {
	for _, min := range []int{0, 64} {
		t.Run(fmt.Sprintf("min=%d", min), func(t *testing.T) { testSplice(t, min) })
	}
}

func testSplice(t *testing.T, min int) {
	old := spliceMinEntries
	spliceMinEntries = min
	defer func() { spliceMinEntries = old }()
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, stop := openServed(t, dir, Options{})
	names := []string{"a", "a.b", "a-", "a0", "a.b.c", "b", ".git", "..git", ".delugefs", ".DelugeFS", "..delugefs", "x.git", ".GIT"}
	// A large directory, so that trees go past writeTree's delta size.
	if err := r.Update(context.Background(), "fill", func(tx *Tx) error {
		if err := tx.Put("big", &Entry{Kind: KindDir, Mode: 0o755}); err != nil {
			return err
		}
		for i := range 100 {
			if err := tx.Put(fmt.Sprintf("big/f%03d", i), &Entry{Kind: KindFile, Mode: 0o644}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := splices.Load()
	rnd := rand.New(rand.NewPCG(uint64(min), 7))
	info := func(i int) *bt.Info {
		p := make([]byte, 20)
		p[0], p[1] = byte(i), byte(i>>8)
		return bt.NewInfo(1, 1<<18, p)
	}
	op := func(tx *Tx, i int) {
		dirs := txDirs(tx)
		pick := func() string {
			return join(dirs[rnd.IntN(len(dirs))], names[rnd.IntN(len(names))])
		}
		p := pick()
		switch rnd.IntN(10) {
		case 9:
			// Replace p by an entry of the other kind in one commit (so
			// that its git name moves past names that sort around '/').
			if e, ok := tx.Get(p); ok && (e.Kind != KindDir || tx.Remove(p) == nil) {
				if e.Kind == KindDir {
					tx.Put(p, &Entry{Kind: KindFile, Mode: 0o644, Info: info(i)})
				} else if tx.Remove(p) == nil {
					tx.Put(p, &Entry{Kind: KindDir, Mode: 0o755, Mtime: int64(i)})
				}
			}
		case 0, 1:
			tx.Put(p, &Entry{Kind: KindDir, Mode: 0o755, Mtime: int64(i)})
		case 2, 3:
			mode := uint32(0o644)
			if rnd.IntN(2) == 0 {
				mode = 0o755
			}
			tx.Put(p, &Entry{Kind: KindFile, Mode: mode, Info: info(i)})
		case 4:
			tx.Put(p, &Entry{Kind: KindSymlink, Target: fmt.Sprint("t", i)})
		case 5:
			tx.Remove(p)
		case 6:
			tx.Rename(p, pick())
		case 7:
			// Attribute change of an existing directory (or the root).
			d := dirs[rnd.IntN(len(dirs))]
			tx.Put(d, &Entry{Kind: KindDir, Mode: 0o700, Mtime: int64(i)})
		default:
			tx.Put(fmt.Sprintf("big/f%03d", rnd.IntN(120)), &Entry{Kind: KindFile, Mode: 0o644, Mtime: int64(i)})
		}
	}
	for i := range 400 {
		if rnd.IntN(3) == 0 {
			if err := r.UpdateLazy(context.Background(), "lazy", func(tx *Tx) error {
				op(tx, i)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Update(context.Background(), "op", func(tx *Tx) error {
			for range 1 + rnd.IntN(4) {
				op(tx, i)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		checkTrees(t, r.Snapshot().root, "")
	}
	s := r.Snapshot()
	if s.Len() < 120 {
		t.Errorf("only %d entries: the test did little", s.Len())
	}
	if kept := checkTrees(t, s.root, ""); kept == 0 {
		t.Errorf("no directory keeps its encoding")
	}
	if n := splices.Load() - before; n < 200 {
		t.Errorf("only %d trees spliced", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	packs, err := packNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	deltas := 0
	for _, p := range packs {
		objs, err := readPack(p, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if typ, _, _, _ := entryHeader(o.file); typ == objRefDelta {
				deltas++
			}
		}
	}
	if deltas == 0 {
		t.Errorf("no tree stored as a delta")
	}
	cmd := exec.Command("git", "--git-dir", dir, "fsck", "--strict", "--no-dangling")
	cmd.Env = append(cmd.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("git fsck: %v\n%s", err, out)
	}
	r2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	want := map[string]plumbing.Hash{}
	collect := func(root *node, into func(string, plumbing.Hash)) {
		var rec func(n *node, p string)
		rec = func(n *node, p string) {
			into(p, n.oid)
			it := n.kids.Iterator()
			for !it.Done() {
				name, c, _ := it.Next()
				if c.e.Kind == KindDir {
					rec(c, join(p, name))
				}
			}
		}
		rec(root, "")
	}
	collect(s.root, func(p string, h plumbing.Hash) { want[p] = h })
	got := 0
	collect(r2.Snapshot().root, func(p string, h plumbing.Hash) {
		got++
		if want[p] != h {
			t.Errorf("after reopen %q is %s, was %s", p, h, want[p])
		}
	})
	if got != len(want) {
		t.Errorf("after reopen %d directories, was %d", got, len(want))
	}
}

// txDirs lists the directories of tx's tree, the root ("") last.
func txDirs(tx *Tx) []string {
	var dirs []string
	(&Snapshot{root: tx.root}).Walk(func(p string, e *Entry) bool {
		if e.Kind == KindDir {
			dirs = append(dirs, p)
		}
		return true
	})
	return append(dirs, "")
}
