package meta

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// blobEntries makes n random blobs of size bytes as pack entries
// (incompressible, so the pack is as large as the data).
func blobEntries(t testing.TB, w *objWriter, rng *rand.Rand, n, size int) []journalObj {
	t.Helper()
	out := make([]journalObj, 0, n)
	data := make([]byte, size)
	for range n {
		for i := 0; i+8 <= len(data); i += 8 {
			v := rng.Uint64()
			copy(data[i:], []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24), byte(v >> 32), byte(v >> 40), byte(v >> 48), byte(v >> 56)})
		}
		e, err := encodeEntry(&w.buf, w.zwBig, objBlob, data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, journalObj{id: objectHash("blob", data), file: e})
	}
	return out
}

// treeChain makes a chain of trees of one directory (of ents entries,
// one more per version) as writeTree stores them: the first whole, the
// others reference deltas against the one before. It returns the entries
// and the trees' contents by id.
func treeChain(t testing.TB, w *objWriter, dirName string, ents, versions int) ([]journalObj, map[plumbing.Hash][]byte) {
	t.Helper()
	var te []treeEnt
	te = append(te, treeEnt{markerName, 0o100644, blobHash([]byte("marker of " + dirName))})
	for i := range ents {
		te = append(te, treeEnt{fmt.Sprintf("f%05d", i), 0o100644, plumbing.Hash(sha1.Sum([]byte(dirName + fmt.Sprint(i))))})
	}
	contents := map[plumbing.Hash][]byte{}
	var out []journalObj
	var prev []byte
	var prevID plumbing.Hash
	for v := range versions {
		te = append(te, treeEnt{fmt.Sprintf("g%05d", v), 0o100644, plumbing.Hash(sha1.Sum([]byte(dirName + "g" + fmt.Sprint(v))))})
		data := encodeTree(slices.Clone(te))
		id := objectHash("tree", data)
		contents[id] = data
		if prev == nil {
			e, err := encodeEntry(&w.buf, w.zwBig, objTree, data)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, journalObj{id: id, file: e})
		} else {
			out = append(out, journalObj{id: id, file: refDeltaEntry(t, w, prevID, makeDelta(prev, data))})
		}
		prev, prevID = data, id
	}
	return out, contents
}

func refDeltaEntry(t testing.TB, w *objWriter, base plumbing.Hash, d []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	b.Write(appendEntryHeader(nil, objRefDelta, len(d)))
	b.Write(base[:])
	w.zw.Reset(&b)
	w.zw.Write(d)
	if err := w.zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// packObjects reads every object of the packs under dir (deltas
// resolved) through the package's own reader.
func packObjects(t testing.TB, dir string) map[plumbing.Hash]string {
	t.Helper()
	ps := newPackSet(dir)
	defer ps.close()
	if err := ps.refresh(1); err != nil {
		t.Fatal(err)
	}
	out := map[plumbing.Hash]string{}
	for _, pf := range ps.packs {
		for i := range pf.n {
			id := plumbing.Hash(pf.names[20*i : 20*i+20])
			typ, data, err := ps.read(id, 0)
			if err != nil {
				t.Fatalf("read %s: %v", id, err)
			}
			if objectHash(typ.String(), data) != id {
				t.Fatalf("object %s does not hash to its id", id)
			}
			out[id] = typ.String() + " " + string(data)
		}
	}
	return out
}

// TestConsolidateUnion: many packs (blobs, chains of tree deltas, objects
// repeated across packs) merge into one whose objects are their union;
// stock git verifies it.
func TestConsolidateUnion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	gitOK(t, filepath.Dir(dir), "init", "-q", "--bare", dir)
	w := newObjWriter(dir)
	rng := rand.New(rand.NewPCG(1, 2))
	shared := blobEntries(t, w, rng, 3, 100)
	for p := range maxPacks + 4 {
		ents := blobEntries(t, w, rng, 20+p, 3000)
		chain, _ := treeChain(t, w, fmt.Sprint("d", p%5), 100+p, 10) // chains repeated in several packs
		ents = append(ents, chain...)
		ents = append(ents, shared...)
		if p%3 == 0 {
			ents = append(ents, blobEntries(t, w, rng, 1, 100_000)...)
		}
		if _, err := writePack(dir, ents, false); err != nil {
			t.Fatal(err)
		}
	}
	// A pack whose delta precedes its base (not as a flush writes them):
	// left alone.
	chain, _ := treeChain(t, w, "fwd", 200, 2)
	fwd, err := writePack(dir, []journalObj{chain[1], chain[0]}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := consolidateNow(t, w, dir)
	w.dropRetired(time.Now().Add(retireAfter))
	packs := packFiles(t, dir)
	if len(packs) > maxPacks/2+1 {
		t.Errorf("%d packs left", len(packs))
	}
	if !slices.Contains(packs, strings.TrimSuffix(fwd[0], ".pack")) {
		t.Errorf("the pack with a forward delta was merged")
	}
	checkPacks(t, dir, want)
}

// consolidateMemory writes packs totalling about total bytes under a new
// repository, merges them and returns the Go heap's high-water mark above
// its level before (sampled) and the bytes allocated by the merge.
func consolidateMemory(tb testing.TB, total int) (peak, alloc uint64, packs int) {
	dir := filepath.Join(tb.TempDir(), "meta.git")
	w := newObjWriter(dir)
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 2 * maxPacks
	for range n {
		ents := blobEntries(tb, w, rng, total/n/4096, 4096)
		chain, _ := treeChain(tb, w, "d", 1000, 20)
		if _, err := writePack(dir, append(ents, chain...), false); err != nil {
			tb.Fatal(err)
		}
	}
	w.packs = n
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	base, alloc0 := s[0].Value.Uint64(), s[1].Value.Uint64()
	var hi atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tk := time.NewTicker(200 * time.Microsecond)
		defer tk.Stop()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > hi.Load() {
				hi.Store(v)
			}
			select {
			case <-done:
				return
			case <-tk.C:
			}
		}
	}()
	if err := w.consolidate(); err != nil {
		tb.Fatal(err)
	}
	close(done)
	<-stopped
	metrics.Read(s)
	if h := hi.Load(); h > base {
		peak = h - base
	}
	left, err := packNames(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return peak, s[1].Value.Uint64() - alloc0, len(left) - len(w.retired)
}

// BenchmarkConsolidate100MB merges 32 packs of 3.2 MB each (about 105 MB)
// and reports the heap's high-water mark and the bytes allocated.
func BenchmarkConsolidate100MB(b *testing.B) {
	for b.Loop() {
		peak, alloc, packs := consolidateMemory(b, 105<<20)
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(alloc)/(1<<20), "alloc-MB")
		b.ReportMetric(float64(packs), "packs-left")
	}
}

// TestConsolidateMemory: merging 40 MB of packs allocates a few MB, not
// the packs' size.
func TestConsolidateMemory(t *testing.T) {
	peak, alloc, _ := consolidateMemory(t, 40<<20)
	t.Logf("heap peak +%.1f MB, allocated %.1f MB", float64(peak)/(1<<20), float64(alloc)/(1<<20))
	if alloc > 6<<20 {
		t.Errorf("merging 40 MB of packs allocated %.1f MB", float64(alloc)/(1<<20))
	}
}

// dirHist makes the successive trees of one directory: n entries at
// first, one more file per version, named in order (as files are made).
type dirHist struct {
	te   []treeEnt
	next int
}

func newDirHist(name string, n int) *dirHist {
	d := &dirHist{te: []treeEnt{{markerName, 0o100644, blobHash([]byte("marker of " + name))}}}
	for range n {
		d.add(name)
	}
	return d
}

func (d *dirHist) add(name string) {
	d.te = append(d.te, treeEnt{fmt.Sprintf("f%06d", d.next), 0o100644,
		plumbing.Hash(sha1.Sum([]byte(name + fmt.Sprint(d.next))))})
	d.next++
}

// flushLike makes the entries of a pack as a flush writes them: for each
// directory a new tree version whole, then deltas more versions against
// the one before; with a few small blobs (manifests) beside them.
// With interleave set the directories' versions alternate (as commits
// into several directories make them).
func flushLike(t testing.TB, w *objWriter, rng *rand.Rand, dirs []*dirHist, deltas int, interleave bool) []journalObj {
	t.Helper()
	var out []journalObj
	prev := make([][]byte, len(dirs))
	prevID := make([]plumbing.Hash, len(dirs))
	version := func(k, v int) {
		d := dirs[k]
		d.add(fmt.Sprint("d", k))
		data := encodeTree(slices.Clone(d.te))
		id := objectHash("tree", data)
		if v == 0 {
			e, err := encodeEntry(&w.buf, w.zwBig, objTree, data)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, journalObj{id: id, file: e})
		} else {
			out = append(out, journalObj{id: id, file: refDeltaEntry(t, w, prevID[k], makeDelta(prev[k], data))})
		}
		prev[k], prevID[k] = data, id
	}
	if interleave {
		for v := range deltas + 1 {
			for k := range dirs {
				version(k, v)
			}
		}
	} else {
		for k := range dirs {
			for v := range deltas + 1 {
				version(k, v)
			}
		}
	}
	for _, b := range blobEntries(t, w, rng, 8, 300) {
		out = append(out, b)
	}
	return out
}

// packBytes is the size of the packs under dir.
func packBytes(t testing.TB, dir string) int64 {
	t.Helper()
	names, err := packNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range names {
		for _, ext := range []string{".pack", ".idx"} {
			st, err := os.Stat(p + ext)
			if err != nil {
				t.Fatal(err)
			}
			n += st.Size()
		}
	}
	return n
}

// checkPacks checks that the packs under dir hold exactly want (read by
// the package's reader and go-git), that stock git accepts them, and
// returns their longest delta chain (git verify-pack).
func checkPacks(t *testing.T, dir string, want map[plumbing.Hash]string) int {
	t.Helper()
	got := packObjects(t, dir)
	if len(got) != len(want) {
		t.Errorf("%d objects, want %d", len(got), len(want))
	}
	for id, c := range want {
		if got[id] != c {
			t.Fatalf("object %s changed or lost", id)
		}
	}
	gitOK(t, dir, "fsck", "--strict", "--full", "--no-dangling")
	st := filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRUDefault())
	for id, c := range want {
		o, err := st.EncodedObject(plumbing.AnyObject, id)
		if err != nil {
			t.Fatalf("go-git: %s: %v", id, err)
		}
		rd, err := o.Reader()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rd)
		if err != nil || o.Type().String()+" "+string(data) != c {
			t.Fatalf("go-git reads %s wrong: %v", id, err)
		}
	}
	chain := 0
	for _, p := range packFiles(t, dir) {
		v := gitOK(t, dir, "verify-pack", "-v", p+".idx")
		for _, l := range strings.Split(v, "\n") {
			var n, m int
			if _, err := fmt.Sscanf(l, "chain length = %d: %d object", &n, &m); err == nil {
				chain = max(chain, n)
			}
		}
	}
	return chain
}

// TestConsolidateDeltas: packs as flushes write them (each directory's
// tree whole once per pack, then deltas) merge into a pack where the
// whole trees became deltas against the versions before: every object
// reads back the same, stock git accepts it, and it is many times
// smaller.
func TestConsolidateDeltas(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	gitOK(t, filepath.Dir(dir), "init", "-q", "--bare", dir)
	w := newObjWriter(dir)
	rng := rand.New(rand.NewPCG(3, 4))
	dirs := []*dirHist{newDirHist("a", 1000), newDirHist("b", 1000), newDirHist("c", 300), newDirHist("d", 1000)}
	for p := range maxPacks + 8 {
		ents := flushLike(t, w, rng, dirs, 3, p%2 == 0)
		// A small tree and a delta of it (resolved from the packs: small
		// trees are not cached).
		small, _ := treeChain(t, w, fmt.Sprint("s", rng.IntN(1000)), 5, 2)
		if _, err := writePack(dir, append(ents, small...), false); err != nil {
			t.Fatal(err)
		}
	}
	before := packBytes(t, dir)
	all := packObjects(t, dir)
	w.packs = len(packFiles(t, dir))
	if err := w.consolidate(); err != nil {
		t.Fatal(err)
	}
	w.dropRetired(time.Now().Add(retireAfter))
	if n := len(packFiles(t, dir)); n != 1 {
		t.Fatalf("%d packs after the merge", n)
	}
	after := packBytes(t, dir)
	chain := checkPacks(t, dir, all)
	t.Logf("packs: %d bytes before the merge, %d after (%.1fx); longest chain %d", before, after, float64(before)/float64(after), chain)
	if after*8 > before {
		t.Errorf("merged pack of %d bytes from %d: want 8x smaller", after, before)
	}
	if chain > maxDeltaDepth {
		t.Errorf("delta chain of %d", chain)
	}
}

// TestConsolidateDeltaDepth: long histories of one directory, merged
// again and again, keep delta chains at most maxDeltaDepth; with a cache
// too small for two trees (so bases are read back from the packs) too.
func TestConsolidateDeltaDepth(t *testing.T) {
	for _, cacheBytes := range []int{mergeCacheBytes, 40 << 10} {
		t.Run(fmt.Sprint(cacheBytes), func(t *testing.T) {
			defer func(n int) { mergeCacheBytes = n }(mergeCacheBytes)
			mergeCacheBytes = cacheBytes
			dir := filepath.Join(t.TempDir(), "meta.git")
			gitOK(t, filepath.Dir(dir), "init", "-q", "--bare", dir)
			w := newObjWriter(dir)
			rng := rand.New(rand.NewPCG(7, 8))
			dirs := []*dirHist{newDirHist("a", 1000), newDirHist("b", 1000)}
			for round := range 3 {
				for range 15 {
					if _, err := writePack(dir, flushLike(t, w, rng, dirs, 9, true), false); err != nil {
						t.Fatal(err)
					}
				}
				names := packFiles(t, dir)
				// The merged pack first (the oldest), as consolidate orders them.
				slices.SortStableFunc(names, func(a, b string) int {
					sa, _ := os.Stat(a + ".pack")
					sb, _ := os.Stat(b + ".pack")
					return sa.ModTime().Compare(sb.ModTime())
				})
				want := packObjects(t, dir)
				made, merged, err := mergePacks(dir, names)
				if err != nil {
					t.Fatal(err)
				}
				if len(merged) != len(names) {
					t.Fatalf("round %d: %d of %d packs merged", round, len(merged), len(names))
				}
				newBase := strings.TrimSuffix(made[0], ".pack")
				for _, b := range merged {
					if b != newBase {
						os.Remove(b + ".idx")
						os.Remove(b + ".pack")
					}
				}
				chain := checkPacks(t, dir, want)
				t.Logf("round %d: %d bytes, longest chain %d", round, packBytes(t, dir), chain)
				if chain > maxDeltaDepth {
					t.Fatalf("round %d: delta chain of %d", round, chain)
				}
				if chain < maxDeltaDepth/2 && cacheBytes > 100<<10 {
					t.Errorf("round %d: longest chain %d: trees were not made deltas", round, chain)
				}
			}
		})
	}
}

// BenchmarkConsolidateFlushes writes 200 packs as flushes do (each with a
// new whole 1,000-entry tree and 3 deltas for 4 directories, and a few
// manifests), consolidating after each as a flush does, and reports the
// bytes written and the bytes the packs hold at the end.
func BenchmarkConsolidateFlushes(b *testing.B) {
	for b.Loop() {
		dir := filepath.Join(b.TempDir(), "meta.git")
		w := newObjWriter(dir)
		rng := rand.New(rand.NewPCG(9, 10))
		dirs := []*dirHist{newDirHist("a", 1000), newDirHist("b", 1000), newDirHist("c", 1000), newDirHist("d", 1000)}
		var written int64
		for range 200 {
			made, err := writePack(dir, flushLike(b, w, rng, dirs, 3, true), false)
			if err != nil {
				b.Fatal(err)
			}
			for _, p := range made[:2] {
				st, err := os.Stat(p)
				if err != nil {
					b.Fatal(err)
				}
				written += st.Size()
			}
			w.packs++
			if err := w.consolidate(); err != nil {
				b.Fatal(err)
			}
		}
		w.dropRetired(time.Now().Add(retireAfter))
		b.ReportMetric(float64(written)/1e6, "written-MB")
		b.ReportMetric(float64(packBytes(b, dir))/1e6, "packs-MB")
		b.ReportMetric(float64(len(packFiles2(b, dir))), "packs")
	}
}

func packFiles2(tb testing.TB, dir string) []string {
	ps, err := packNames(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return ps
}

// consolidateNow merges the packs under dir (at least two must be
// retired) and returns the objects they held before.
func consolidateNow(t *testing.T, w *objWriter, dir string) map[plumbing.Hash]string {
	t.Helper()
	want := packObjects(t, dir)
	w.packs = len(packFiles(t, dir))
	if err := w.consolidate(); err != nil {
		t.Fatal(err)
	}
	if len(w.retired) < 2 {
		t.Fatalf("%d packs retired", len(w.retired))
	}
	return want
}

// TestRetiredAfterStop: packs a consolidation replaced are removed by the
// next Open's cleanup (their markers outlive the process that made them),
// never the merged pack, and every object stays readable.
func TestRetiredAfterStop(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	gitOK(t, filepath.Dir(dir), "init", "-q", "--bare", dir)
	w := newObjWriter(dir)
	rng := rand.New(rand.NewPCG(3, 4))
	for p := range maxPacks + 4 {
		ents := blobEntries(t, w, rng, 10+p, 2000)
		chain, _ := treeChain(t, w, fmt.Sprint("d", p%3), 80+p, 5)
		if _, err := writePack(dir, append(ents, chain...), false); err != nil {
			t.Fatal(err)
		}
	}
	want := consolidateNow(t, w, dir)
	live := len(packFiles(t, dir)) - len(w.retired)
	// The process stops here (the retired packs' 30 s are not over).
	if err := cleanPacks(dir, false); err != nil {
		t.Fatal(err)
	}
	if n := len(packFiles(t, dir)); n != live {
		t.Errorf("%d packs after cleanup, want the %d live ones", n, live)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "*"+retiredSuffix))
	if len(left) > 0 {
		t.Errorf("markers left: %v", left)
	}
	checkPacks(t, dir, want)
	gitOK(t, filepath.Dir(dir), "--git-dir", dir, "fsck", "--strict")
}

// TestGraphBounded: the commit graph the actor keeps of its own commits
// stays under maxGraph entries however many commits it makes.
func TestGraphBounded(t *testing.T) {
	g := newGraph()
	for i := range maxGraph + 100 {
		var id plumbing.Hash
		binary.BigEndian.PutUint64(id[:], uint64(i)+1)
		g.add(id, commitInfo{gen: uint64(i) + 1, time: int64(i)})
		if len(g.m) > maxGraph+1 {
			t.Fatalf("%d commits kept after %d adds", len(g.m), i+1)
		}
	}
}

// TestConsolidateBackground: a Repo's writer merges packs on a goroutine
// of its own: consolidate returns at once, packs written meanwhile (and
// further calls) go on, and the next call after the merge, or waitMerge,
// retires what it replaced; every object stays readable throughout.
func TestConsolidateBackground(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	gitOK(t, filepath.Dir(dir), "init", "-q", "--bare", dir)
	w := newObjWriter(dir)
	w.background = true
	hold := make(chan struct{})
	w.mergeHook = func() { <-hold }
	rng := rand.New(rand.NewPCG(5, 6))
	write := func(p int) {
		t.Helper()
		ents := blobEntries(t, w, rng, 10+p, 2000)
		chain, _ := treeChain(t, w, fmt.Sprint("d", p%3), 80+p, 5)
		if _, err := writePack(dir, append(ents, chain...), false); err != nil {
			t.Fatal(err)
		}
		w.packs++
	}
	for p := range maxPacks + 4 {
		write(p)
	}
	if err := w.consolidate(); err != nil {
		t.Fatal(err)
	}
	if w.merge == nil {
		t.Fatal("no merge started")
	}
	// The merge is held: writes and calls go on, nothing is retired.
	write(100)
	if err := w.consolidate(); err != nil {
		t.Fatal(err)
	}
	if len(w.retired) != 0 {
		t.Fatalf("%d packs retired before the merge ran", len(w.retired))
	}
	want := packObjects(t, dir)
	checkPacks(t, dir, want)
	close(hold)
	if err := w.waitMerge(); err != nil {
		t.Fatal(err)
	}
	if len(w.retired) < 2 {
		t.Fatalf("%d packs retired after the merge", len(w.retired))
	}
	w.dropRetired(time.Now().Add(retireAfter))
	if n := len(packFiles(t, dir)); n != w.packs || n > maxPacks/2+2 {
		t.Errorf("%d packs left, counted %d", n, w.packs)
	}
	checkPacks(t, dir, want)
}
