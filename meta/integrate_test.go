package meta_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/merge"
	"github.com/delugefs/delugefs/meta/metatest"
)

// peer is a served repository with its directory and node id.
type peer struct {
	*metatest.Served
	dir  string
	node string
}

// clock is a fake clock in whole seconds, shared by the peers of a test.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newPeer(t testing.TB, node string, c *clock) *peer {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "meta.git")
	opts := meta.Options{NodeID: node}
	if c != nil {
		opts.Now = c.now
	}
	return &peer{Served: metatest.Serve(t, dir, opts), dir: dir, node: node}
}

// src makes p's commits visible to git readers and returns a fresh
// storage on its repository, as a peer's fetch would see it.
func (p *peer) src(t testing.TB) *filesystem.Storage {
	t.Helper()
	if err := p.Sync(context.Background()); err != nil {
		t.Fatalf("sync %s: %v", p.node, err)
	}
	st := filesystem.NewStorage(osfs.New(p.dir), cache.NewObjectLRUDefault())
	t.Cleanup(func() { st.Close() })
	return st
}

// pull integrates from's head into p.
func (p *peer) pull(t testing.TB, from *peer) meta.IntegrateResult {
	t.Helper()
	res, err := p.Integrate(context.Background(), from.Head(), from.src(t))
	if err != nil {
		t.Fatalf("%s integrates %s's head %s: %v", p.node, from.node, from.Head(), err)
	}
	if res.Head != p.Head() {
		t.Fatalf("%s: result head %s, Head() %s", p.node, res.Head, p.Head())
	}
	return res
}

func put(t testing.TB, p *peer, path string, e *meta.Entry) {
	t.Helper()
	p.Do(t, "put "+path, func(tx *meta.Tx) error { return tx.Put(path, e) })
}

func sameSnapshots(t *testing.T, a, b *peer) {
	t.Helper()
	if a.Head() != b.Head() {
		t.Errorf("heads differ: %s %s, %s %s", a.node, a.Head(), b.node, b.Head())
	}
	compareMaps(t, snapMap(b.Snapshot()), snapMap(a.Snapshot()))
	if a.Snapshot().Len() != b.Snapshot().Len() {
		t.Errorf("Len: %s %d, %s %d", a.node, a.Snapshot().Len(), b.node, b.Snapshot().Len())
	}
}

func TestIntegrateFastForward(t *testing.T) {
	a, b := newPeer(t, "aaaa", nil), newPeer(t, "bbbb", nil)
	want := populate(t, a.Served)
	res := b.pull(t, a)
	if !res.Changed || res.Announce || res.Head != a.Head() {
		t.Fatalf("first pull: %+v", res)
	}
	compareMaps(t, snapMap(b.Snapshot()), want)
	sameSnapshots(t, a, b)

	// Both directions, several times.
	put(t, b, "movies/new.mkv", metatest.File(1<<20, 77, 0o644, 5))
	b.Do(t, "rm", func(tx *meta.Tx) error { return tx.Remove("movies/a.mkv") })
	b.Do(t, "mv", func(tx *meta.Tx) error { return tx.Rename("deep", "deep2") })
	if res := a.pull(t, b); !res.Changed || res.Announce {
		t.Fatalf("pull back: %+v", res)
	}
	sameSnapshots(t, a, b)
	// Pulling an ancestor, or our own head, changes nothing.
	if res := b.pull(t, a); res.Changed {
		t.Fatalf("pull of the same head: %+v", res)
	}
	old := a.Head()
	put(t, a, "x", metatest.File(3, 3, 0o600, 3))
	res, err := a.Integrate(context.Background(), old, b.src(t))
	if err != nil || res.Changed || res.Head != a.Head() {
		t.Fatalf("integrate an ancestor: %+v %v", res, err)
	}
	st := a.Stats()
	if st.Integrations != 2 || st.FastForwards != 1 || st.Merges != 0 {
		t.Errorf("stats of a: %+v", st)
	}
	b.pull(t, a)
	sameSnapshots(t, a, b)
	gitFsck(t, a.dir)
	gitFsck(t, b.dir)
}

// diverge gives a and b a common history, then runs fa on a and fb on b.
func diverge(t *testing.T, a, b *peer, setup, fa, fb func(tx *meta.Tx) error) {
	t.Helper()
	a.Do(t, "setup", setup)
	b.pull(t, a)
	a.Do(t, "a", fa)
	b.Do(t, "b", fb)
}

// exchange sends each head to the other peer at once (each integrates the
// other's head as it was before either merged) and checks that both make
// the same merge commit.
func exchange(t *testing.T, a, b *peer) (ra, rb meta.IntegrateResult) {
	t.Helper()
	sa, sb := a.src(t), b.src(t)
	ha, hb := a.Head(), b.Head()
	ra, err := a.Integrate(context.Background(), hb, sb)
	if err != nil {
		t.Fatal(err)
	}
	rb, err = b.Integrate(context.Background(), ha, sa)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Head != rb.Head {
		t.Fatalf("the peers merged differently: %s %s", ra.Head, rb.Head)
	}
	sameSnapshots(t, a, b)
	return ra, rb
}

func TestIntegrateMerge(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 15, 47, 0, 0, time.UTC)}
	a, b := newPeer(t, "node-a", c), newPeer(t, "node-b", c)
	setup := func(tx *meta.Tx) error {
		for _, d := range []string{"d", "e"} {
			if err := tx.Put(d, metatest.Dir(0o755, 1)); err != nil {
				return err
			}
		}
		for i := range 5 {
			if err := tx.Put(fmt.Sprintf("d/f%d.txt", i), metatest.File(10, uint64(i), 0o644, 1)); err != nil {
				return err
			}
		}
		return tx.Put("e/film.mkv", metatest.File(100, 100, 0o644, 1))
	}
	diverge(t, a, b, setup,
		func(tx *meta.Tx) error {
			// Same change as b; its own change; rename of a file b edits.
			if err := tx.Put("d/f0.txt", metatest.File(11, 1000, 0o644, 2)); err != nil {
				return err
			}
			if err := tx.Put("d/a-only", metatest.File(1, 1001, 0o644, 2)); err != nil {
				return err
			}
			return tx.Rename("d/f1.txt", "d/renamed.txt")
		},
		func(tx *meta.Tx) error {
			if err := tx.Put("d/f0.txt", metatest.File(11, 1000, 0o644, 2)); err != nil {
				return err
			}
			if err := tx.Put("e/b-only", metatest.Dir(0o700, 2)); err != nil {
				return err
			}
			return tx.Put("d/f1.txt", metatest.File(12, 1002, 0o644, 3))
		})
	ra, rb := exchange(t, a, b)
	if !ra.Changed || !ra.Announce || !rb.Changed || !rb.Announce {
		t.Errorf("results: %+v %+v", ra, rb)
	}
	s := a.Snapshot()
	for p, seed := range map[string]int64{"d/f0.txt": 11, "d/a-only": 1, "d/renamed.txt": 10, "d/f1.txt": 12} {
		if e, ok := s.Get(p); !ok || e.Size != seed {
			t.Errorf("%s: %+v %v", p, e, ok)
		}
	}
	if e, ok := s.Get("e/b-only"); !ok || e.Kind != meta.KindDir || e.Mode != 0o700 {
		t.Errorf("e/b-only: %+v", e)
	}
	if n := conflictCopies(s); len(n) > 0 {
		t.Errorf("unexpected conflict copies %v", n)
	}
	// Rename on one side and edit on the other keep both: a
	// modification beats a delete.
	var md bool
	for _, e := range ra.Events {
		md = md || e.Kind == merge.ModifyDelete && e.Path == "d/f1.txt"
	}
	if !md {
		t.Errorf("events %v: want modify-delete of d/f1.txt", ra.Events)
	}
	// Exchanging the merges changes nothing.
	if r := a.pull(t, b); r.Changed {
		t.Errorf("a pulls the same merge: %+v", r)
	}
	if st := a.Stats(); st.Merges != 1 || st.Conflicts != 0 {
		t.Errorf("stats %+v", st)
	}
	// The merge commit: sorted parents, fixed signature, time of the
	// latest parent.
	a.src(t)
	out := string(git(t, a.dir, "cat-file", "commit", a.Head().String()))
	if !strings.Contains(out, "author delugefs merge <merge@delugefs>") || strings.Count(out, "\nparent ") != 2 {
		t.Errorf("merge commit:\n%s", out)
	}
	gitFsck(t, a.dir)
	gitFsck(t, b.dir)
}

// conflictCopies returns the paths holding ".conflict-".
func conflictCopies(s *meta.Snapshot) []string {
	var out []string
	s.Walk(func(p string, e *meta.Entry) bool {
		if strings.Contains(p, ".conflict-") {
			out = append(out, p)
		}
		return true
	})
	return out
}

func TestIntegrateConflict(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 15, 47, 0, 0, time.UTC)}
	a, b := newPeer(t, "node-a", c), newPeer(t, "node-b", c)
	diverge(t, a, b,
		func(tx *meta.Tx) error { return tx.Put("film.mkv", metatest.File(100, 1, 0o644, 1)) },
		func(tx *meta.Tx) error {
			if err := tx.Put("film.mkv", metatest.File(200, 2, 0o644, 2)); err != nil {
				return err
			}
			// A file on a, a directory on b.
			return tx.Put("clash", metatest.File(5, 5, 0o644, 2))
		},
		func(tx *meta.Tx) error {
			c.t = c.t.Add(time.Minute)
			if err := tx.Put("film.mkv", metatest.File(300, 3, 0o644, 3)); err != nil {
				return err
			}
			if err := tx.Put("clash", metatest.Dir(0o755, 3)); err != nil {
				return err
			}
			return tx.Put("clash/inside", metatest.File(6, 6, 0o644, 3))
		})
	ra, _ := exchange(t, a, b)
	s := a.Snapshot()
	copies := conflictCopies(s)
	if len(copies) != 2 {
		t.Fatalf("conflict copies %v, events %v", copies, ra.Events)
	}
	// Both versions of film.mkv are kept, the loser under its name.
	sizes := map[int64]bool{}
	for _, p := range append([]string{"film.mkv"}, copies...) {
		if e, ok := s.Get(p); ok && e.Kind == meta.KindFile {
			sizes[e.Size] = true
		}
	}
	if !sizes[200] || !sizes[300] || !sizes[5] {
		t.Errorf("versions kept: %v (copies %v)", sizes, copies)
	}
	if e, ok := s.Get("clash"); !ok || e.Kind != meta.KindDir {
		t.Errorf("clash: %+v", e)
	}
	if _, ok := s.Get("clash/inside"); !ok {
		t.Errorf("clash/inside missing")
	}
	for _, p := range copies {
		if !strings.Contains(p, ".conflict-node-") || !strings.Contains(p, "-20261125T15") {
			t.Errorf("conflict name %q", p)
		}
	}
	if st := a.Stats(); st.Conflicts != 2 {
		t.Errorf("stats %+v", st)
	}
	gitFsck(t, a.dir)
	gitFsck(t, b.dir)
}

// TestIntegrateRestart reopens repositories after integrations.
func TestIntegrateRestart(t *testing.T) {
	a, b := newPeer(t, "aa", nil), newPeer(t, "bb", nil)
	diverge(t, a, b,
		func(tx *meta.Tx) error { return tx.Put("x", metatest.File(1, 1, 0o644, 1)) },
		func(tx *meta.Tx) error { return tx.Put("y", metatest.File(2, 2, 0o644, 1)) },
		func(tx *meta.Tx) error { return tx.Put("z", metatest.File(3, 3, 0o755, 1)) })
	exchange(t, a, b)
	want, head := snapMap(b.Snapshot()), b.Head()
	b.Stop()
	b2 := &peer{Served: metatest.Serve(t, b.dir, meta.Options{NodeID: "bb"}), dir: b.dir, node: "bb"}
	if b2.Head() != head {
		t.Fatalf("head after reopen %s, want %s", b2.Head(), head)
	}
	if p := b2.Problems(); len(p) > 0 {
		t.Errorf("problems %v", p)
	}
	compareMaps(t, snapMap(b2.Snapshot()), want)
	// It goes on committing and merging after the restart.
	put(t, b2, "w", metatest.File(4, 4, 0o644, 1))
	put(t, a, "v", metatest.File(5, 5, 0o644, 1))
	exchange(t, a, b2)
	gitFsck(t, b.dir)
}

func TestIntegrateErrors(t *testing.T) {
	a := newPeer(t, "aa", nil)
	put(t, a, "x", metatest.File(1, 1, 0o644, 1))
	ctx := context.Background()
	if _, err := a.Integrate(ctx, plumbing.ZeroHash, a.src(t)); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("zero head: %v", err)
	}
	missing := plumbing.NewHash("0123456789012345678901234567890123456789")
	if _, err := a.Integrate(ctx, missing, a.src(t)); !errors.Is(err, meta.ErrBadRemote) {
		t.Errorf("missing head: %v", err)
	}
	if _, err := meta.Open(filepath.Join(t.TempDir(), "x.git"), meta.Options{NodeID: "a/b"}); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("bad node id: %v", err)
	}
}

// TestIntegrateUnrelated merges two histories without a common commit
// (two repositories created apart) against an empty base.
func TestIntegrateUnrelated(t *testing.T) {
	a, b := newPeer(t, "aa", nil), newPeer(t, "bb", nil)
	put(t, a, "x", metatest.File(1, 1, 0o644, 1))
	put(t, a, "same", metatest.File(9, 9, 0o644, 9))
	put(t, b, "y", metatest.File(2, 2, 0o644, 1))
	put(t, b, "same", metatest.File(9, 9, 0o644, 9))
	ra, _ := exchange(t, a, b)
	for _, p := range []string{"x", "y", "same"} {
		if _, ok := a.Snapshot().Get(p); !ok {
			t.Errorf("%s missing", p)
		}
	}
	if c := conflictCopies(a.Snapshot()); len(c) > 0 {
		t.Errorf("conflict copies %v (events %v)", c, ra.Events)
	}
	gitFsck(t, a.dir)
}

// TestIntegrateCommitsLazy: lazy updates waiting for a commit are
// committed before the integration and kept by the merge.
func TestIntegrateCommitsLazy(t *testing.T) {
	a, b := newPeer(t, "aa", nil), newPeer(t, "bb", nil)
	diverge(t, a, b,
		func(tx *meta.Tx) error { return tx.Put("x", metatest.File(1, 1, 0o644, 1)) },
		func(tx *meta.Tx) error { return tx.Put("y", metatest.File(2, 2, 0o644, 1)) },
		func(tx *meta.Tx) error { return tx.Put("z", metatest.File(3, 3, 0o644, 1)) })
	if err := b.UpdateLazy(context.Background(), "lazy", func(tx *meta.Tx) error {
		return tx.Put("w", metatest.File(4, 4, 0o644, 1))
	}); err != nil {
		t.Fatal(err)
	}
	if res := b.pull(t, a); !res.Announce {
		t.Fatalf("not a merge: %+v", res)
	}
	a.pull(t, b)
	sameSnapshots(t, a, b)
	for _, p := range []string{"x", "y", "z", "w"} {
		if _, ok := a.Snapshot().Get(p); !ok {
			t.Errorf("%s missing", p)
		}
	}
}

// TestIntegrateConcurrent integrates a peer's heads while other goroutines
// update: integrations run between the batches, nothing is lost.
func TestIntegrateConcurrent(t *testing.T) {
	a, b := newPeer(t, "aa", nil), newPeer(t, "bb", nil)
	put(t, a, "a", metatest.Dir(0o755, 0))
	b.pull(t, a)
	ctx := context.Background()
	errs := make(chan error, 8)
	for g := range 4 {
		go func() {
			for i := range 30 {
				p := fmt.Sprintf("g%d-%d", g, i)
				if err := b.Update(ctx, p, func(tx *meta.Tx) error { return tx.Put(p, metatest.File(1, uint64(g*100+i), 0o644, 1)) }); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range 20 {
		p := fmt.Sprintf("a/%d", i)
		put(t, a, p, metatest.File(2, uint64(1000+i), 0o644, 1))
		if _, err := b.Integrate(ctx, a.Head(), a.src(t)); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	a.pull(t, b)
	sameSnapshots(t, a, b)
	if n := a.Snapshot().Len(); n != 1+20+4*30 {
		t.Errorf("Len %d", n)
	}
	gitFsck(t, b.dir)
}

// TestIntegrateLegacyHistory: commits written before the generation
// trailer (here by stock git) get their generations computed from their
// parents, and sync goes on over them.
func TestIntegrateLegacyHistory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	git(t, dir, "init", "--bare", "-q", "-b", "main")
	marker := strings.TrimSpace(gitIn(t, dir, dirMarker, "hash-object", "-w", "--stdin"))
	file := strings.TrimSpace(gitIn(t, dir, emptyFile, "hash-object", "-w", "--stdin"))
	tree := strings.TrimSpace(gitIn(t, dir, "100644 blob "+marker+"\t.delugefs\n", "mktree"))
	c1 := strings.TrimSpace(gitIn(t, dir, "", "commit-tree", tree, "-m", "one"))
	tree2 := strings.TrimSpace(gitIn(t, dir, "100644 blob "+marker+"\t.delugefs\n100644 blob "+file+"\tf\n", "mktree"))
	c2 := strings.TrimSpace(gitIn(t, dir, "", "commit-tree", tree2, "-p", c1, "-m", "two"))
	git(t, dir, "update-ref", "refs/heads/main", c2)

	a := &peer{Served: metatest.Serve(t, dir, meta.Options{NodeID: "aa"}), dir: dir, node: "aa"}
	b := newPeer(t, "bb", nil)
	b.pull(t, a)
	put(t, a, "x", metatest.File(1, 1, 0o644, 1))
	put(t, b, "y", metatest.File(2, 2, 0o644, 1))
	exchange(t, a, b)
	a.src(t)
	msg := string(git(t, dir, "log", "--format=%B", "-n", "1", a.Head().String()))
	if !strings.HasSuffix(strings.TrimSpace(msg), "DelugeFS-Generation: 4") {
		t.Errorf("merge message:\n%s", msg)
	}
	for _, p := range []string{"f", "x", "y"} {
		if _, ok := b.Snapshot().Get(p); !ok {
			t.Errorf("%s missing", p)
		}
	}
	gitFsck(t, dir)
}

func gitIn(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"--git-dir", dir}, args...)...)
	cmd.Env = append(cmd.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir(),
		"GIT_AUTHOR_NAME=old", "GIT_AUTHOR_EMAIL=old@x", "GIT_COMMITTER_NAME=old", "GIT_COMMITTER_EMAIL=old@x")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}
