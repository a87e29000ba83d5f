package meta_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
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

// BenchmarkCommit measures one-file-per-commit creates, one writer (no
// grouping) and 32 writers (group commit), in a volume of 1,000 or
// 100,000 files spread in directories of 1,000, or all in one directory.
func BenchmarkCommit(b *testing.B) {
	for _, c := range []struct {
		files int
		flat  bool
	}{{1000, false}, {100000, false}, {100000, true}} {
		layout := "dirs"
		if c.flat {
			layout = "flat"
		}
		b.Run(fmt.Sprintf("files=%d/%s", c.files, layout), func(b *testing.B) {
			s := metatest.Serve(b, filepath.Join(b.TempDir(), "meta.git"), meta.Options{})
			fill(b, s, c.files, c.flat)
			target := "d0"
			if c.flat {
				target = "flat"
			}
			var seq atomic.Int64
			for _, writers := range []int{1, 32} {
				b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
					b.ReportAllocs()
					b.SetParallelism(writers) // times GOMAXPROCS
					before := s.Stats()
					start := time.Now()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							i := seq.Add(1)
							p := target + "/new" + strconv.FormatInt(i, 10)
							if err := s.Update(context.Background(), "write "+p, func(tx *meta.Tx) error {
								return tx.Put(p, metatest.File(4096, uint64(i)+1<<40, 0o644, i))
							}); err != nil {
								b.Error(err)
								return
							}
						}
					})
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

// TestMemory100k loads a repository of 100,000 files and reports heap and
// RSS (the figure the issue asks for); it fails above 200 MB of heap.
func TestMemory100k(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dir := filepath.Join(t.TempDir(), "meta.git")
	s := metatest.Serve(t, dir, meta.Options{})
	start := time.Now()
	fill(t, s, 100000, false)
	t.Logf("filled 100,000 files in 100 commits in %v", time.Since(start))
	s.Stop()
	s = nil
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start = time.Now()
	r, err := meta.Open(dir, meta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	load := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	t.Logf("Open of 100,000 files: %v; index heap %.1f MB (%.0f B/file); process heap %.1f MB; RSS %s",
		load, heap, heap*(1<<20)/100000, float64(after.HeapAlloc)/(1<<20), rss())
	if r.Snapshot().Len() != 100000+100 {
		t.Errorf("Len %d", r.Snapshot().Len())
	}
	if heap > 200 {
		t.Errorf("index heap %.1f MB", heap)
	}
}

func rss() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(l[6:])
		}
	}
	return "?"
}
