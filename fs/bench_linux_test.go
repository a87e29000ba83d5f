//go:build linux

package fs_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bench/passthrough"
	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/fs/fstest"
	"github.com/delugefs/delugefs/fs/mount"
	"github.com/delugefs/delugefs/meta"
)

// benchSize is the file size of the throughput benchmarks (DELUGEFS_BENCH_MB
// overrides it).
func benchSize() int64 {
	if v, err := strconv.Atoi(os.Getenv("DELUGEFS_BENCH_MB")); err == nil && v > 0 {
		return int64(v) << 20
	}
	return 1 << 30
}

// mounts returns the two mounts the benchmarks compare: a passthrough of a
// plain directory and a DelugeFS node.
func mounts(b *testing.B) map[string]string {
	pt := fstest.Mount(b, passthrough.New(b.TempDir(), true), mount.Options{Name: "passthrough", ReaddirPlus: true, ReadAheadKB: 1024})
	n := fstest.Start(b, b.TempDir(), fs.Options{})
	return map[string]string{"passthrough": pt, "delugefs": n.Dir}
}

// writeFile writes size bytes to p with 1 MiB writes.
func writeFile(b *testing.B, p string, size int64) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

var ddRate = regexp.MustCompile(`copied, ([0-9.]+) s`)

// dd runs dd with bs=1M and returns MB/s.
func dd(b *testing.B, args ...string) float64 {
	out, err := exec.Command("dd", append(args, "bs=1M")...).CombinedOutput()
	if err != nil {
		b.Fatalf("dd %v: %v\n%s", args, err, out)
	}
	m := ddRate.FindSubmatch(out)
	if m == nil {
		b.Fatalf("dd output: %s", out)
	}
	sec, _ := strconv.ParseFloat(string(m[1]), 64)
	return float64(benchSize()) / sec / 1e6
}

// BenchmarkDD measures sequential read and write+close with dd (bs=1M)
// through both mounts, reporting MB/s of each and the ratio.
func BenchmarkDD(b *testing.B) {
	size := benchSize()
	ms := mounts(b)
	read := map[string]float64{}
	write := map[string]float64{}
	for b.Loop() {
		for _, name := range []string{"passthrough", "delugefs"} {
			p := filepath.Join(ms[name], "big")
			write[name] += dd(b, "if=/dev/zero", "of="+p, fmt.Sprint("count=", size>>20), "conv=fsync")
			read[name] += dd(b, "if="+p, "of=/dev/null")
		}
	}
	n := float64(b.N)
	b.ReportMetric(read["passthrough"]/n, "MB/s-read-passthrough")
	b.ReportMetric(read["delugefs"]/n, "MB/s-read-delugefs")
	b.ReportMetric(read["delugefs"]/read["passthrough"], "read-ratio")
	b.ReportMetric(write["passthrough"]/n, "MB/s-write-passthrough")
	b.ReportMetric(write["delugefs"]/n, "MB/s-write-delugefs")
	b.ReportMetric(write["delugefs"]/write["passthrough"], "write-ratio")
}

// BenchmarkRead reads a file sequentially with 1 MiB reads.
func BenchmarkRead(b *testing.B) {
	size := benchSize()
	for name, dir := range mounts(b) {
		p := filepath.Join(dir, "big")
		writeFile(b, p, size)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			buf := make([]byte, 1<<20)
			for b.Loop() {
				f, err := os.Open(p)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}

// randReader is a separate process (the FUSE server in this one must not
// compete with the reader for the Go scheduler) doing 4 KiB preads at
// random offsets; it prints the mean latency in ns.
const randReader = `
import os, random, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
size, n = os.fstat(fd).st_size, int(sys.argv[2])
random.seed(1)
offs = [random.randrange(size // 4096) * 4096 for _ in range(n)]
t = time.perf_counter_ns()
for o in offs:
    os.pread(fd, 4096, o)
print((time.perf_counter_ns() - t) // n)
`

// BenchmarkRandRead4K reads 4 KiB blocks at random offsets of a 256 MiB
// file, one reader (a separate process), and reports IOPS of both mounts.
func BenchmarkRandRead4K(b *testing.B) {
	const size = 256 << 20
	ms := mounts(b)
	for _, dir := range ms {
		writeFile(b, filepath.Join(dir, "f"), size)
	}
	iops := map[string]float64{}
	for b.Loop() {
		for _, name := range []string{"passthrough", "delugefs"} {
			out, err := exec.Command("python3", "-c", randReader, filepath.Join(ms[name], "f"), "20000").Output()
			if err != nil {
				b.Fatal(err)
			}
			ns, err := strconv.ParseFloat(string(bytes.TrimSpace(out)), 64)
			if err != nil {
				b.Fatal(err)
			}
			iops[name] += 1e9 / ns
		}
	}
	b.ReportMetric(iops["passthrough"]/float64(b.N), "IOPS-passthrough")
	b.ReportMetric(iops["delugefs"]/float64(b.N), "IOPS-delugefs")
	b.ReportMetric(iops["delugefs"]/iops["passthrough"], "ratio")
}

// BenchmarkSmallFiles creates, writes (1 KiB) and closes files, reporting
// files/s, then times `ls -lR` over them.
func BenchmarkSmallFiles(b *testing.B) {
	const files = 2000
	data := make([]byte, 1024)
	for name, dir := range mounts(b) {
		b.Run(name, func(b *testing.B) {
			var made int
			for i := 0; b.Loop(); i++ {
				d := filepath.Join(dir, fmt.Sprint("run", i))
				if err := os.Mkdir(d, 0o755); err != nil {
					b.Fatal(err)
				}
				for j := range files {
					if err := os.WriteFile(filepath.Join(d, fmt.Sprint("f", j)), data, 0o644); err != nil {
						b.Fatal(err)
					}
				}
				made += files
			}
			b.ReportMetric(float64(made)/b.Elapsed().Seconds(), "files/s")
			start := time.Now()
			out, err := exec.Command("ls", "-lR", dir).Output()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/ls-lR")
			b.ReportMetric(float64(bytes.Count(out, []byte("\n-rw"))), "ls-files")
		})
	}
}

// BenchmarkLsLR100k times `ls -lR` over 100,000 files (100 directories of
// 1,000 empty files, put straight into the namespace) and reports the
// process's peak RSS.
func BenchmarkLsLR100k(b *testing.B) {
	n := fstest.Start(b, b.TempDir(), fs.Options{})
	for d := range 100 {
		dir := fmt.Sprint("d", d)
		err := n.Repo.Update(context.Background(), "populate", func(tx *meta.Tx) error {
			if err := tx.Put(dir, &meta.Entry{Kind: meta.KindDir, Mode: 0o755}); err != nil {
				return err
			}
			for i := range 1000 {
				e := &meta.Entry{Kind: meta.KindFile, Mode: 0o644, Mtime: time.Now().UnixNano()}
				if err := tx.Put(fmt.Sprint(dir, "/f", i), e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		out, err := exec.Command("ls", "-lR", n.Dir).Output()
		if err != nil {
			b.Fatal(err)
		}
		if c := bytes.Count(out, []byte("\n-rw")); c != 100_000 {
			b.Fatalf("ls -lR listed %d files", c)
		}
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.ReportMetric(float64(ru.Maxrss)/1024, "MB-maxrss")
}
