package merge

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// benchTrees returns a base of about 100,000 paths (50 × 20 directories of
// 100 files, each directory with its marker) and two heads that each change
// 5,000 paths of it (modify, add, delete), 10,000 in all, of which conflicts
// are on the same path in both.
func benchTrees(conflicts int) (base, a, b Tree) {
	build := func(side int) Tree {
		var t Tree
		t = append(t, Entry{strings.Clone(""), D(1)})
		n := 0
		for i := range 50 {
			d := fmt.Sprintf("dir%02d", i)
			t = append(t, Entry{d, D(1)})
			for j := range 20 {
				s := fmt.Sprintf("%s/sub%02d", d, j)
				t = append(t, Entry{s, D(1)})
				for k := range 100 {
					// Paths built anew for each tree, as a flatten would.
					p := fmt.Sprintf("%s/file%03d.dat", s, k)
					l := F(n % 50000)
					switch {
					case side == 1 && n%20 == 0 && n/20 < 5000-conflicts-1000:
						l = F(60000 + n%1000) // ours modifies
					case side == 2 && n%20 == 10 && n/20 < 5000-1000:
						l = F(61000 + n%1000) // theirs modifies
					case side == 2 && n%20 == 0 && n/20 < conflicts:
						l = F(62000 + n%1000) // both modify: conflicts
					}
					n++
					if (side == 1 && n%100 == 7 && n/100 < 1000) || (side == 2 && n%100 == 57 && n/100 < 500) {
						continue // deleted
					}
					t = append(t, Entry{p, l})
					if side == 2 && n%100 == 33 && n/100 < 500 {
						t = append(t, Entry{p + ".new", F(1)}) // theirs adds
					}
				}
			}
		}
		return t
	}
	return build(0), build(1), build(2)
}

// BenchmarkTrees reports ms per merge of two heads that differ from their
// base in 10,000 of about 100,000 paths, beside a reference measured in the
// same run: building one map of the base tree's 100,000 paths, the least a
// merge over maps of everything would do.
func BenchmarkTrees(b *testing.B) {
	base, _, _ := benchTrees(0)
	b.Run("reference=map-of-base", func(b *testing.B) {
		b.ReportAllocs()
		cpu := cpuTime()
		for b.Loop() {
			_ = base.Map()
		}
		reportMS(b, cpu)
	})
	for _, conflicts := range []int{0, 100} {
		base, ta, tb := benchTrees(conflicts)
		a := Head{Tree: ta, Node: "n1", Time: time.Unix(1, 0)}
		c := Head{Tree: tb, Node: "n2", Time: time.Unix(2, 0)}
		r, err := Trees(base, a, c)
		if err != nil {
			b.Fatal(err)
		}
		changed := map[string]bool{}
		bm := base.Map()
		for _, t := range []Tree{ta, tb} {
			tm := t.Map()
			for p, l := range tm {
				if bl, ok := bm[p]; !ok || bl != l {
					changed[p] = true
				}
			}
			for p := range bm {
				if _, ok := tm[p]; !ok {
					changed[p] = true
				}
			}
		}
		b.Run(fmt.Sprintf("paths=%d,differ=%d,events=%d", len(base), len(changed), len(r.Events)), func(b *testing.B) {
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				if _, err := Trees(base, a, c); err != nil {
					b.Fatal(err)
				}
			}
			reportMS(b, cpu)
		})
	}
}

// reportMS reports wall milliseconds per operation and, where it can be
// measured, CPU milliseconds (all threads, the collector's included) since
// cpu0.
func reportMS(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/merge")
	if cpu := cpuTime() - cpu0; cpu0 > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/merge")
	}
}
