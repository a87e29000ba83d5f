package meta_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
	"github.com/delugefs/delugefs/piece"
)

// fill creates n small files: in directories of 1,000 ("d0/f0" ...), or all
// in directory "flat" when flat is set.
func fill(tb testing.TB, s *metatest.Served, n int, flat bool) {
	tb.Helper()
	for start := 0; start < n; start += 1000 {
		s.Do(tb, fmt.Sprintf("fill %d", start), func(tx *meta.Tx) error {
			d := "flat"
			if !flat {
				d = fmt.Sprintf("d%d", start/1000)
			}
			if _, ok := tx.Get(d); !ok {
				if err := tx.Put(d, metatest.Dir(0o755, 0)); err != nil {
					return err
				}
			}
			for i := start; i < min(n, start+1000); i++ {
				if err := tx.Put(fmt.Sprintf("%s/f%d", d, i), metatest.File(4096, uint64(i), 0o644, int64(i))); err != nil {
					return err
				}
			}
			return nil
		})
	}
}

// BenchmarkFdatasync is the reference for BenchmarkCommit: a 2 KiB pwrite
// and fdatasync of a pre-filled file on the same disk, the floor of one
// journaled commit.
func BenchmarkFdatasync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "j"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 8<<20)); err != nil {
		b.Fatal(err)
	}
	f.Sync()
	rec := make([]byte, 2048)
	i := 0
	for b.Loop() {
		f.WriteAt(rec, int64(i%4000)*2048)
		if err := f.Sync(); err != nil { // fdatasync on Linux is close: no metadata changes
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCommit measures one-file-per-commit creates, one writer (no
// grouping) and 32 writers (group commit), in a volume of 1,000 or
// 100,000 files spread in directories of 1,000, or all in one directory.
func BenchmarkCommit(b *testing.B) {
	for _, c := range []struct {
		files   int
		flat    bool
		journal int64
	}{{1000, false, 0}, {1000, false, -1}, {100000, false, 0}, {100000, true, 0}} {
		layout := "dirs"
		if c.flat {
			layout = "flat"
		}
		sync := "journal"
		if c.journal < 0 {
			sync = "syncfs"
		}
		b.Run(fmt.Sprintf("files=%d/%s/%s", c.files, layout, sync), func(b *testing.B) {
			s := metatest.Serve(b, filepath.Join(b.TempDir(), "meta.git"), meta.Options{JournalSize: c.journal})
			fill(b, s, c.files, c.flat)
			target := "d0"
			if c.flat {
				target = "flat"
			}
			var seq atomic.Int64
			create := func() {
				i := seq.Add(1)
				p := target + "/new" + strconv.FormatInt(i, 10)
				if err := s.Update(context.Background(), "write "+p, func(tx *meta.Tx) error {
					return tx.Put(p, metatest.File(4096, uint64(i)+1<<40, 0o644, i))
				}); err != nil {
					b.Error(err)
				}
			}
			for _, writers := range []int{1, 64} {
				b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
					b.ReportAllocs()
					before := s.Stats()
					start := time.Now()
					if writers == 1 {
						for b.Loop() {
							create()
						}
					} else {
						b.SetParallelism(writers / runtime.GOMAXPROCS(0))
						b.RunParallel(func(pb *testing.PB) {
							for pb.Next() {
								create()
							}
						})
					}
					el := time.Since(start).Seconds()
					after := s.Stats()
					commits := after.Commits - before.Commits
					b.ReportMetric(float64(b.N)/el, "creates/s")
					b.ReportMetric(float64(commits)/el, "commits/s")
					if commits > 0 {
						b.ReportMetric(float64((after.SyncTime-before.SyncTime).Microseconds())/float64(commits), "µs-sync/commit")
						b.ReportMetric(float64(after.Objects-before.Objects)/float64(commits), "objects/commit")
					}
				})
			}
		})
	}
}

// BenchmarkOpen100k loads a repository of 100,000 files (in 100
// directories) and reports the load time, the heap the index holds, and
// the process RSS: the memory figure the issue asks for.
func BenchmarkOpen100k(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "meta.git")
	s := metatest.Serve(b, dir, meta.Options{})
	start := time.Now()
	fill(b, s, 100000, false)
	b.Logf("filled 100,000 files in 100 commits in %v", time.Since(start))
	s.Stop()
	// RSS of a fresh process that only opens the repository: the figure
	// for a node after a restart.
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenRSSChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), rssEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("child: %v\n%s", err, out)
	}
	var rss, heap, secs float64
	if i := strings.Index(string(out), "RSS "); i >= 0 {
		fmt.Sscanf(string(out[i:]), "RSS %f heap %f open %f", &rss, &heap, &secs)
	}
	defer func() { // after b.Loop, which deletes metrics reported before it
		b.ReportMetric(rss, "MB-RSS-fresh")
		b.ReportMetric(heap, "MB-heap-fresh")
		b.ReportMetric(secs, "s-open-fresh")
	}()
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		r, err := meta.Open(dir, meta.Options{})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if r.Snapshot().Len() != 100000+100 {
			b.Errorf("Len %d", r.Snapshot().Len())
		}
		heap := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
		b.ReportMetric(heap, "MB-index-heap")
		b.ReportMetric(heap*(1<<20)/100000, "B/file")
		b.ReportMetric(float64(after.HeapAlloc)/(1<<20), "MB-heap")
		b.ReportMetric(rssMB(), "MB-RSS")
		r.Close()
	}
}

const rssEnv = "DELUGEFS_META_RSS_CHILD"

// TestOpenRSSChild is BenchmarkOpen100k's child process: with the variable
// set it opens the repository and prints its RSS; without, it does
// nothing.
func TestOpenRSSChild(t *testing.T) {
	dir := os.Getenv(rssEnv)
	if dir == "" {
		return
	}
	start := time.Now()
	r, err := meta.Open(dir, meta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	open := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("RSS %.1f heap %.1f open %.2f\n", rssMB(), float64(ms.HeapAlloc)/(1<<20), open.Seconds())
}

// rssMB returns the process's resident set size in MB (0 off Linux).
func rssMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkSmallFileClose is meta's side of a close(2) of a new small file
// as fs does it (one writer, 1,000 files in the directory first): a lazy
// create, then the write with its 4 KiB blob attached (old: a durable
// create, then the write with the blob sealed and fsynced by the store,
// which this leaves out). It reports barriers per file.
func BenchmarkSmallFileClose(b *testing.B) {
	for _, mode := range []string{"durable-create", "lazy-create+attach", "lazy-create+attach+logged"} {
		b.Run(mode, func(b *testing.B) {
			root := b.TempDir()
			st, err := piece.OpenStore(root)
			if err != nil {
				b.Fatal(err)
			}
			s := metatest.Serve(b, filepath.Join(root, "meta.git"), meta.Options{RestoreBlob: st.Restore})
			fill(b, s, 1000, false)
			data := make([]byte, 4096)
			ctx := context.Background()
			var i uint64
			before := s.Stats()
			start := time.Now()
			for b.Loop() {
				i++
				p := "d0/new" + strconv.FormatUint(i, 10)
				create := s.Update
				if mode != "durable-create" {
					create = s.UpdateLazy
				}
				if err := create(ctx, "create "+p, func(tx *meta.Tx) error {
					return tx.Put(p, &meta.Entry{Kind: meta.KindFile, Mode: 0o644})
				}); err != nil {
					b.Fatal(err)
				}
				data[0], data[1], data[2] = byte(i), byte(i>>8), byte(i>>16)
				hs := piece.NewHasher(piece.Length(int64(len(data))))
				hs.Write(data)
				info := hs.Info()
				write := s.Update
				if mode == "lazy-create+attach+logged" {
					write = s.UpdateLogged
				}
				if err := write(ctx, "write "+p, func(tx *meta.Tx) error {
					if mode != "durable-create" {
						if err := tx.AttachBlob(info, data); err != nil {
							return err
						}
					}
					return tx.Put(p, &meta.Entry{Kind: meta.KindFile, Mode: 0o644, Info: info})
				}); err != nil {
					b.Fatal(err)
				}
			}
			el := time.Since(start).Seconds()
			after := s.Stats()
			b.ReportMetric(float64(b.N)/el, "files/s")
			b.ReportMetric(float64(after.Barriers-before.Barriers)/float64(b.N), "barriers/file")
			b.ReportMetric(float64(after.Commits-before.Commits)/float64(b.N), "commits/file")
		})
	}
}

// BenchmarkIntegrate10k merges two heads that differ in 10,000 paths of a
// namespace of 100,000 files (100 directories of 1,000; each head changed
// 50 files in every directory) and reports the time of one Integrate (the
// merge commit made durable, the snapshot published) as ms/merge. The
// source is a reader of the other repository's packs, opened before the
// clock starts ("packs"), or go-git's filesystem storage on it, its
// indexes loaded before ("gogit"). cpu-ms/merge is the process's CPU time
// over the call (all threads, garbage collection included): on a shared
// machine it varies far less than the wall time.
func BenchmarkIntegrate10k(b *testing.B) {
	for _, kind := range []string{"packs", "gogit"} {
		b.Run("src="+kind, func(b *testing.B) {
			a, c := newPeer(b, "aaaa", nil), newPeer(b, "cccc", nil)
			start := time.Now()
			fill(b, a.Served, 100000, false)
			c.pull(b, a)
			b.Logf("filled and cloned 100,000 files in %v", time.Since(start))
			change := func(p *peer, offset, round int) {
				p.Do(b, "change", func(tx *meta.Tx) error {
					for i := offset; i < 100000; i += 20 {
						e := metatest.File(4096, uint64(round)<<32|uint64(i), 0o644, int64(round))
						if err := tx.Put(fmt.Sprintf("d%d/f%d", i/1000, i), e); err != nil {
							return err
						}
					}
					return nil
				})
			}
			var total, cpu time.Duration
			round := 0
			for b.Loop() {
				b.StopTimer()
				round++
				change(a, 0, round)
				change(c, 10, round)
				var src storer.EncodedObjectStorer
				switch kind {
				case "packs":
					if err := a.Sync(context.Background()); err != nil {
						b.Fatal(err)
					}
					st, done, err := meta.PackStorer(a.dir)
					if err != nil {
						b.Fatal(err)
					}
					defer done()
					src = st
				default:
					if err := a.Sync(context.Background()); err != nil {
						b.Fatal(err)
					}
					st := filesystem.NewStorageWithOptions(osfs.New(a.dir), cache.NewObjectLRUDefault(),
						filesystem.Options{KeepDescriptors: true})
					defer st.Close()
					st.HasEncodedObject(a.Head()) // loads the indexes
					src = st
				}
				b.StartTimer()
				t0, c0 := time.Now(), cpuTime()
				res, err := c.Integrate(context.Background(), a.Head(), src)
				total += time.Since(t0)
				cpu += cpuTime() - c0
				b.StopTimer()
				if err != nil || !res.Announce || len(res.Events) != 0 {
					b.Fatalf("merge: %+v %v", res, err)
				}
				if n := c.Snapshot().Len(); n != 100100 {
					b.Fatalf("Len %d", n)
				}
				// A fast-forward, for the next round.
				if err := c.Sync(context.Background()); err != nil {
					b.Fatal(err)
				}
				back, done, err := meta.PackStorer(c.dir)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := a.Integrate(context.Background(), c.Head(), back); err != nil || a.Head() != c.Head() {
					b.Fatalf("fast-forward: %v", err)
				}
				done()
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(round), "ms/merge")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(round), "cpu-ms/merge")
		})
	}
}
