//go:build linux

package swarm_test

import (
	"context"
	"crypto/sha1"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/bt/swarm/swarmtest"
	"github.com/delugefs/delugefs/internal/testwait"
)

// benchSize is the blob of the transfer benchmark: 256 MiB, or
// DELUGEFS_BENCH_MIB.
func benchSize(b *testing.B) int {
	if s := os.Getenv("DELUGEFS_BENCH_MIB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		return n << 20
	}
	return 256 << 20
}

// BenchmarkTransfer moves a blob from one seed to one leech on loopback,
// both in this process, and reports MB/s.
func BenchmarkTransfer(b *testing.B) {
	size := benchSize(b)
	seedNode := swarmtest.NewNode(b, swarm.Config{})
	info := seedNode.Seed(swarmtest.RandomData(size, 7))
	seedNode.Start(info)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		before := cpuTime()
		leechNode := swarmtest.NewNode(b, swarm.Config{})
		leech := leechNode.Start(info)
		leech.AddPeer(seedNode.Addr)
		select {
		case <-leech.Done():
		case <-time.After(5 * time.Minute):
			b.Fatal("transfer did not finish")
		}
		b.StopTimer()
		cpu += cpuTime() - before
		leechNode.Close()
		b.StartTimer()
	}
	// CPU time of both ends per GiB: what the transfer costs whatever else
	// runs on the machine (2 cores give 2 CPU-seconds per second).
	b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "cpu-s/GiB")
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFirstByte measures the latency of a 16 KiB read at offset 0 and
// at 50 % of a blob a connected leech does not have (stream-only, so
// nothing else is downloading).
func BenchmarkFirstByte(b *testing.B) {
	size := benchSize(b)
	seedNode := swarmtest.NewNode(b, swarm.Config{})
	info := seedNode.Seed(swarmtest.RandomData(size, 7))
	seedNode.Start(info)
	for _, frac := range []struct {
		name string
		at   int64
	}{{"offset0", 0}, {"offset50", int64(size) / 2}} {
		b.Run(frac.name, func(b *testing.B) {
			var total time.Duration
			buf := make([]byte, 16<<10)
			for b.Loop() {
				b.StopTimer()
				leechNode := swarmtest.NewNode(b, swarm.Config{StreamOnly: true})
				leech := leechNode.Start(info)
				leech.AddPeer(seedNode.Addr)
				waitUnchoked(b, leech)
				b.StartTimer()
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := leech.ReadAt(ctx, buf, frac.at)
				cancel()
				total += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				leechNode.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/first-byte")
		})
	}
}

// BenchmarkFirstByteBusy measures the latency of a 16 KiB read at 90 % of
// the blob while the leech is busy downloading the rest from the start:
// the read must jump the queue.
func BenchmarkFirstByteBusy(b *testing.B) {
	size := benchSize(b)
	seedNode := swarmtest.NewNode(b, swarm.Config{})
	info := seedNode.Seed(swarmtest.RandomData(size, 7))
	seedNode.Start(info)
	var total time.Duration
	buf := make([]byte, 16<<10)
	at := int64(size) / 10 * 9
	for b.Loop() {
		b.StopTimer()
		leechNode := swarmtest.NewNode(b, swarm.Config{})
		leech := leechNode.Start(info)
		leech.AddPeer(seedNode.Addr)
		testwait.For(b, 30*time.Second, "5 % of the blob", func() bool {
			p, _ := leech.Progress(context.Background())
			return p.Pieces >= p.Total/20
		})
		b.StartTimer()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := leech.ReadAt(ctx, buf, at)
		cancel()
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		leechNode.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/first-byte")
}

// waitUnchoked waits until the leech has a peer that unchoked it.
func waitUnchoked(tb testing.TB, s *swarm.Swarm) {
	testwait.For(tb, 10*time.Second, "a peer to unchoke the leech", func() bool {
		ps, _ := s.Peers(context.Background())
		for _, p := range ps {
			if !p.PeerChoking && p.Have > 0 {
				return true
			}
		}
		return false
	})
}

// BenchmarkTransferReference is the floor BenchmarkTransfer is compared
// with, measured the same way: the same bytes read from a file, sent over
// one loopback TCP connection in 1 MiB writes, written to a new sparse file
// in 1 MiB writes and hashed with SHA-1 once, with no protocol at all.
func BenchmarkTransferReference(b *testing.B) {
	size := benchSize(b)
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, swarmtest.RandomData(size, 7), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	var cpu time.Duration
	for b.Loop() {
		before := cpuTime()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			f, _ := os.Open(src)
			defer f.Close()
			buf := make([]byte, 1<<20)
			for off := int64(0); ; off += int64(len(buf)) {
				n, _ := f.ReadAt(buf, off)
				if n == 0 {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		})
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		dst, _ := os.Create(filepath.Join(dir, "dst"))
		dst.Truncate(int64(size))
		buf := make([]byte, 1<<20)
		h := sha1.New()
		for off := int64(0); off < int64(size); {
			n, err := io.ReadFull(c, buf[:min(len(buf), size-int(off))])
			if err != nil {
				b.Fatal(err)
			}
			dst.WriteAt(buf[:n], off)
			h.Write(buf[:n])
			off += int64(n)
		}
		c.Close()
		ln.Close()
		wg.Wait()
		dst.Close()
		os.Remove(dst.Name())
		cpu += cpuTime() - before
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "cpu-s/GiB")
}
