package meta

import (
	"bytes"
	"compress/zlib"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// gitOK runs stock git on dir and fails the test on an error.
func gitOK(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"--git-dir", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func mkdirs(t *testing.T, r *Repo, dirs ...string) {
	t.Helper()
	err := r.Update(context.Background(), "mkdir", func(tx *Tx) error {
		for _, d := range dirs {
			if err := tx.Put(d, &Entry{Kind: KindDir, Mode: 0o755}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func packFiles(t *testing.T, dir string) []string {
	t.Helper()
	ps, err := packNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// TestPackStockGit: every flush writes one pack that stock git reads and
// fsck --strict accepts, and no loose objects.
func TestPackStockGit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, r)
	mkdirs(t, r, "d")
	for i := range 5 {
		put(t, r, fmt.Sprintf("d/f%d", i%3), byte(i))
		if err := r.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	head := r.Head()
	stop()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if loose, _ := filepath.Glob(filepath.Join(dir, "objects", "??", "*")); len(loose) > 0 {
		t.Errorf("loose objects written: %v", loose)
	}
	if n := len(packFiles(t, dir)); n < 2 {
		t.Errorf("%d packs after 5 flushes", n)
	}
	gitOK(t, dir, "fsck", "--strict", "--full", "--no-dangling")
	if got := strings.TrimSpace(gitOK(t, dir, "rev-parse", "HEAD")); got != head.String() {
		t.Errorf("git HEAD %s, want %s", got, head)
	}
	if n := strings.Count(gitOK(t, dir, "log", "--oneline"), "\n"); n < 5 {
		t.Errorf("git log shows %d commits", n)
	}
	gitOK(t, dir, "show", "HEAD:d/f1")
}

// TestPackConsolidate: more than maxPacks flushes merge the small packs;
// every object of every commit stays readable, for stock git and Open.
func TestPackConsolidate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, r)
	mkdirs(t, r, "d0", "d1", "d2", "d3")
	// A directory whose tree is large enough to be stored as deltas.
	r.Update(context.Background(), "many", func(tx *Tx) error {
		for i := range 80 {
			tx.Put(fmt.Sprintf("d0/many%03d", i), &Entry{Kind: KindFile, Mode: 0o644})
		}
		return nil
	})
	for i := range 3 * maxPacks {
		if i%3 == 0 {
			// Several commits into d0 in one pack: deltas.
			put(t, r, fmt.Sprintf("d0/x%d", i), byte(i))
			put(t, r, fmt.Sprintf("d0/y%d", i), byte(i))
		}
		put(t, r, fmt.Sprintf("d%d/f%d", i%4, i), byte(i))
		if i%5 == 0 {
			r.Update(context.Background(), "mkdir", func(tx *Tx) error {
				return tx.Put(fmt.Sprintf("e%d", i), &Entry{Kind: KindDir, Mode: 0o755})
			})
		}
		if err := r.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Packs a consolidation replaced stay on disk for a while
		// (readers that listed them); they are not counted. A merge
		// runs beside updates: once it is done the count is bounded.
		r.serveMu.Lock()
		err := r.w.waitMerge()
		n := len(packFiles(t, dir)) - len(r.w.retired)
		r.serveMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if n > maxPacks {
			t.Fatalf("%d packs after flush %d", n, i)
		}
	}
	head, want := r.Head(), r.Snapshot().Len()
	stop()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	gitOK(t, dir, "fsck", "--strict", "--full", "--no-dangling")
	merged := false
	for _, p := range packFiles(t, dir) {
		v := gitOK(t, dir, "verify-pack", "-v", p+".idx")
		// A merged pack holds the deltas of several flushes.
		merged = merged || strings.Count(v, "chain length = 1:") > 0 && strings.Count(v, "\n") > 100
	}
	if !merged {
		t.Errorf("no merged pack with deltas")
	}
	if n := strings.Count(gitOK(t, dir, "rev-list", "--objects", "--all"), "\n"); n < 3*maxPacks*3 {
		t.Errorf("only %d objects reachable", n)
	}
	r, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Head() != head || r.Snapshot().Len() != want || len(r.Problems()) > 0 {
		t.Errorf("reopened at %s with %d entries (%v), want %s %d", r.Head(), r.Snapshot().Len(), r.Problems(), head, want)
	}
}

// TestPackTornByCrash: a crash tore the pack of a flush whose records are
// still live (its index reached the disk, its data did not): Open drops
// the torn pack, rewrites the records' objects and loads everything.
func TestPackTornByCrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, r)
	put(t, r, "a", 1)
	stop()
	if err := r.checkpoint(); err != nil {
		t.Fatal(err)
	}
	durable := map[string]bool{}
	for _, p := range packFiles(t, dir) {
		durable[p] = true
	}
	stop = serve(t, r)
	put(t, r, "b", 2)
	mkdirs(t, r, "c")
	put(t, r, "c/d", 3)
	head := r.Head()
	stop()         // writes the pack and moves the branch
	r.closeFiles() // the crash: no checkpoint
	torn := 0
	for _, p := range packFiles(t, dir) {
		if durable[p] {
			continue
		}
		st, err := os.Stat(p + ".pack")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p+".pack", st.Size()/2); err != nil {
			t.Fatal(err)
		}
		torn++
	}
	if torn == 0 {
		t.Fatal("no pack written since the checkpoint")
	}
	// A temp file of a flush cut short, too.
	os.WriteFile(filepath.Join(dir, "objects", "pack", "tmp_pack_123"), []byte("PACK"), 0o644)

	r, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after the crash: %v", err)
	}
	if r.Head() != head {
		t.Errorf("head %s, want %s", r.Head(), head)
	}
	for _, p := range []string{"a", "b", "c/d"} {
		if _, ok := r.Snapshot().Get(p); !ok {
			t.Errorf("%s missing after replay", p)
		}
	}
	if p := r.Problems(); len(p) > 0 {
		t.Errorf("problems: %v", p)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", "pack", "tmp_pack_123")); err == nil {
		t.Error("temp pack left behind")
	}
	gitOK(t, dir, "fsck", "--strict", "--full", "--no-dangling")
}

// TestLooseRecordReplay: objects of records written before packs
// (loose-object bytes) convert to the pack entries replay writes.
func TestLooseRecordReplay(t *testing.T) {
	data := []byte("hello")
	w := newObjWriter(t.TempDir())
	loose := looseFile("blob", data)
	e, err := looseToEntry(loose, w.zw)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := encodeEntry(&w.buf, w.zw, objBlob, data)
	if string(e) != string(want) {
		t.Errorf("converted entry %x, want %x", e, want)
	}
}

func looseFile(typ string, data []byte) []byte {
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	fmt.Fprintf(zw, "%s %d\x00", typ, len(data))
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

// TestDeltaRoundTrip: makeDelta and applyDelta against random edits, and
// stock git reads a pack of deltas (TestPackConsolidate).
func TestDeltaRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 500 {
		src := make([]byte, rng.IntN(200_000))
		for k := range src {
			src[k] = byte(rng.IntN(4))
		}
		dst := slices.Clone(src)
		switch i % 3 {
		case 0: // insert
			at := rng.IntN(len(dst) + 1)
			ins := make([]byte, rng.IntN(300))
			dst = slices.Insert(dst, at, ins...)
		case 1: // delete
			if len(dst) > 0 {
				a := rng.IntN(len(dst))
				dst = slices.Delete(dst, a, min(len(dst), a+rng.IntN(100)))
			}
		case 2: // replace all
			dst = make([]byte, rng.IntN(1000))
		}
		got, err := applyDelta(src, makeDelta(src, dst))
		if err != nil || !bytes.Equal(got, dst) {
			t.Fatalf("case %d (%d -> %d bytes): %v", i, len(src), len(dst), err)
		}
	}
}

// TestJournalReplayDeltas: commits into a large directory journal its
// tree as deltas; a power cut loses every pack since the checkpoint and
// replay rebuilds them from the records alone.
func TestJournalReplayDeltas(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, err := Open(dir, Options{FlushDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, r)
	mkdirs(t, r, "d")
	r.Update(context.Background(), "many", func(tx *Tx) error {
		for i := range 200 {
			tx.Put(fmt.Sprintf("d/many%03d", i), &Entry{Kind: KindFile, Mode: 0o644})
		}
		return nil
	})
	stop()
	if err := r.checkpoint(); err != nil {
		t.Fatal(err)
	}
	durable := looseObjects(t, dir)
	refPath := filepath.Join(dir, "refs", "heads", "main")
	durableRef, _ := os.ReadFile(refPath)
	stop = serve(t, r)
	off := r.j.off
	for i := range 20 {
		put(t, r, fmt.Sprintf("d/new%d", i), byte(i))
		if i == 9 {
			r.Sync(context.Background()) // a pack in the middle
		}
	}
	if per := (r.j.off - off) / 20; per > 2000 {
		t.Errorf("%d journal bytes per commit into a directory of 200: no deltas?", per)
	}
	head := r.Head()
	stop()
	r.closeFiles()
	for p := range looseObjects(t, dir) {
		if !durable[p] {
			os.Remove(p)
		}
	}
	os.WriteFile(refPath, durableRef, 0o644)

	r, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after the cut: %v", err)
	}
	if r.Head() != head || r.Snapshot().Len() != 1+200+20 || len(r.Problems()) > 0 {
		t.Errorf("head %s, %d entries, %v; want %s", r.Head(), r.Snapshot().Len(), r.Problems(), head)
	}
	r.Close()
	gitOK(t, dir, "fsck", "--strict", "--full", "--no-dangling")
}
