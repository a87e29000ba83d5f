//go:build linux

package bench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/delugefs/delugefs/internal/testwait"
	dfsnode "github.com/delugefs/delugefs/node"
)

// clusterPair starts node A (a new volume) and node B (joined with A's key
// and --peer), each a process with its mount, on loopback.
func clusterPair(b *testing.B) (a, bn *node) {
	b.Helper()
	a = startNodeArgs(b, "--create")
	cfg, err := dfsnode.LoadConfig(a.root, "bench")
	if err != nil {
		b.Fatal(err)
	}
	bn = startNodeArgs(b, "--key", cfg.VolumeKey, "--peer", a.api)
	return a, bn
}

// BenchmarkClusterVisibility measures the time from the close of a new
// file on A's mount to the file being visible (stat) on B's mount.
func BenchmarkClusterVisibility(b *testing.B) {
	a, bn := clusterPair(b)
	data := []byte("a small file\n")
	var lat []float64
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("vis-%d", i)
		i++
		if err := os.WriteFile(filepath.Join(a.mnt, name), data, 0o644); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if !testwait.UntilEvery(30*time.Second, time.Millisecond, func() bool {
			_, err := os.Stat(filepath.Join(bn.mnt, name))
			return err == nil
		}) {
			b.Fatalf("%s not visible on B after 30s", name)
		}
		lat = append(lat, float64(time.Since(start).Microseconds())/1000)
	}
	b.ReportMetric(median(lat), "ms-median")
	b.ReportMetric(slices.Max(lat), "ms-max")
}

// remoteBig writes a 1 GiB file on A's mount and waits until B lists it.
func remoteBig(b *testing.B, a, bn *node, name string) string {
	b.Helper()
	if err := writeBig(filepath.Join(a.mnt, name), xferSize, randBuf(1<<20)); err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(bn.mnt, name)
	// The create reaches B before the close's commit: wait for the
	// contents, as a user opening a finished file would.
	testwait.For(b, 30*time.Second, name+" whole on B", func() bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Size() == xferSize
	})
	return p
}

// dropCaches empties the page cache, so each read goes to the swarm.
func dropCaches(b *testing.B) {
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err != nil {
		b.Logf("drop caches: %v", err)
	}
}

// BenchmarkClusterRemoteRead1GiB reads, through B's mount, a 1 GiB file
// only A holds (a fresh file each iteration), sequentially, and reports the
// ratio to the core's node-to-node rate (BenchmarkTransfer1GiB's two
// processes, measured in the same run).
func BenchmarkClusterRemoteRead1GiB(b *testing.B) {
	a, bn := clusterPair(b)
	d := xferFixture(b)
	seed := xferSeed(b, d)
	buf := make([]byte, 1<<20)
	b.SetBytes(xferSize)
	var ours, core []float64
	i := 0
	for b.Loop() {
		b.StopTimer()
		p := remoteBig(b, a, bn, fmt.Sprintf("big-%d", i))
		dropCaches(b)
		b.StartTimer()
		start := time.Now()
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		f.Close()
		if err != nil || n != xferSize {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		ours = append(ours, mbps(n, time.Since(start)))
		b.StopTimer()
		took, _ := xferGet(b, d, seed, filepath.Join(d.dir, fmt.Sprintf("core-%d", i)))
		core = append(core, mbps(xferSize, took))
		os.Remove(filepath.Join(a.mnt, fmt.Sprintf("big-%d", i)))
		b.StartTimer()
		i++
	}
	o, c := median(ours), median(core)
	b.ReportMetric(o, "MB/s-mount")
	b.ReportMetric(c, "MB/s-core")
	if c > 0 {
		b.ReportMetric(o/c, "x-core")
	}
}

// BenchmarkClusterFirstByte opens, through B's mount, a 1 GiB file only A
// holds and reads 4 KiB at offset 0, and on another such file at 50 %, and
// reports the median time to the first byte of each.
func BenchmarkClusterFirstByte(b *testing.B) {
	a, bn := clusterPair(b)
	var at0, at50 []float64
	i := 0
	for b.Loop() {
		for _, off := range []int64{0, xferSize / 2} {
			b.StopTimer()
			name := fmt.Sprintf("fb-%d-%d", i, off)
			p := remoteBig(b, a, bn, name)
			dropCaches(b)
			b.StartTimer()
			start := time.Now()
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 4096)
			if _, err := f.ReadAt(buf, off); err != nil {
				b.Fatalf("read at %d: %v", off, err)
			}
			d := float64(time.Since(start).Microseconds()) / 1000
			f.Close()
			b.Logf("first byte at %d: %.2f ms", off, d)
			if off == 0 {
				at0 = append(at0, d)
			} else {
				at50 = append(at50, d)
			}
			b.StopTimer()
			os.Remove(filepath.Join(a.mnt, name))
			b.StartTimer()
		}
		i++
	}
	b.ReportMetric(median(at0), "ms-first-byte-0")
	b.ReportMetric(median(at50), "ms-first-byte-50")
}
