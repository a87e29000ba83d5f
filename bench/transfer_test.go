//go:build linux

package bench

// Transfer benchmarks of the BitTorrent core (issue 4): 1 GiB from one seed
// to one leech on loopback, two processes, beside anacrolix/torrent client
// to client on the same data in the same run; the first byte of a read of a
// blob the leech does not have, idle and while it downloads the rest; and
// the leech's peak memory.
//
//	MB/s                  delugefs bt seed → delugefs bt get (child processes)
//	ref-MB/s              anacrolix/torrent seed → leech, in this process
//	x-anacrolix           MB/s / ref-MB/s
//	MiB-peak-rss          peak resident memory of the leech process
//	ms/first-byte@0       median time of a 4 KiB ReadAt at offset 0 (swarm.ReadAt)
//	ms/first-byte@50%     the same at half the blob
//	ms/first-byte-busy@…  the same while the leech downloads the whole blob

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/client"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/internal/testwait"
	"github.com/delugefs/delugefs/piece"
)

// xferSize is the size of the blob every transfer benchmark moves.
const xferSize = 1 << 30

// xferData is a data file and its torrent.
type xferData struct {
	dir     string // holds the data and the torrent
	path    string // the data
	torrent string // the .torrent file
	mi      *bt.MetaInfo
}

// xferFixture writes xferSize pseudo-random bytes and their torrent (the
// default piece length) into a temporary directory.
func xferFixture(b *testing.B) *xferData {
	b.Helper()
	dir := b.TempDir()
	d := &xferData{dir: dir, path: filepath.Join(dir, "blob.bin")}
	f, err := os.Create(d.path)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{4})
	buf := make([]byte, 4<<20)
	for n := 0; n < xferSize; n += len(buf) {
		r.Read(buf)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	d.mi, err = client.Create(context.Background(), d.path, client.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	d.torrent = d.path + ".torrent"
	if err := os.WriteFile(d.torrent, d.mi.Bencode(), 0o644); err != nil {
		b.Fatal(err)
	}
	return d
}

// xferSeed runs `delugefs bt seed` on the fixture until the benchmark ends
// and returns the address it listens on.
func xferSeed(b *testing.B, d *xferData) string {
	b.Helper()
	cmd := exec.Command(delugefsBin(b), "bt", "seed", d.torrent, "--data", d.path, "--listen", "127.0.0.1:0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	addrs := make(chan string, 1)
	go func() { // reads stdout until the seed exits
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening:"); ok {
				addrs <- strings.TrimSpace(a)
			}
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
		close(exited)
	}()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case a := <-addrs:
		return a
	case <-exited:
		b.Fatalf("delugefs bt seed exited: %s", stderr.String())
	case <-time.After(60 * time.Second):
		b.Fatalf("delugefs bt seed did not listen within 60 s: %s", stderr.String())
	}
	return ""
}

// xferGet runs `delugefs bt get` into dir and returns how long it took and
// the leech's peak resident memory in MiB.
func xferGet(b *testing.B, d *xferData, seed, dir string) (time.Duration, float64) {
	b.Helper()
	out := filepath.Join(dir, "out.bin")
	cmd := exec.Command(delugefsBin(b), "bt", "get", d.torrent, "--peer", seed, "-o", out, "--timeout", "30s")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// The child's rusage would not do: its maxrss starts from this
	// process's, whose memory the child shares until it execs. VmHWM is
	// the high-water mark of the child's own memory; it only grows, so
	// polling it misses at most the last few milliseconds.
	exited := make(chan struct{})
	peak := make(chan float64, 1)
	go func() { // polls until the child has exited
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var hwm float64
		for {
			if v, ok := vmHWM(cmd.Process.Pid); ok {
				hwm = max(hwm, v)
			}
			select {
			case <-exited:
				peak <- hwm
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	took := time.Since(start)
	close(exited)
	rss := <-peak
	if err != nil {
		b.Fatalf("delugefs bt get: %v\n%s", err, stderr.String())
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Size() != xferSize {
		b.Fatalf("delugefs bt get left %v, %v", fi, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	return took, rss
}

// vmHWM returns the peak resident memory of process pid in MiB, while it
// runs.
func vmHWM(pid int) (float64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024, err == nil
		}
	}
	return 0, false
}

// xferAnacrolix starts an anacrolix/torrent client on loopback with its
// data in dir (file storage, piece completion in memory), discovery off and
// no header obfuscation.
func xferAnacrolix(b *testing.B, dir string) *torrent.Client {
	b.Helper()
	cfg := torrent.NewDefaultClientConfig()
	cfg.DataDir = dir
	cfg.Seed = true
	cfg.NoDHT = true
	cfg.DisableTrackers = true
	cfg.DisablePEX = true
	cfg.DisableUTP = true
	cfg.DisableIPv6 = true
	cfg.DisableWebtorrent = true
	cfg.DisableWebseeds = true
	cfg.NoDefaultPortForwarding = true
	cfg.ListenHost = func(string) string { return "127.0.0.1" }
	cfg.ListenPort = 0
	cfg.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{}
	cfg.Slogger = slog.New(slog.DiscardHandler)
	// Piece completion in memory: the default (bolt) commits each piece to
	// disk, which holds anacrolix near 100 MB/s here; in memory it does
	// 200-300 MB/s, the stronger reference.
	cfg.DefaultStorage = storage.NewFileOpts(storage.NewFileClientOpts{ClientBaseDir: dir, PieceCompletion: storage.NewMapPieceCompletion()})
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return cl
}

// xferAnacrolixSeed seeds the fixture from an anacrolix client.
func xferAnacrolixSeed(b *testing.B, d *xferData) (string, *metainfo.MetaInfo) {
	b.Helper()
	dir := b.TempDir()
	if err := os.Link(d.path, filepath.Join(dir, d.mi.Info.Name)); err != nil {
		b.Fatal(err)
	}
	cl := xferAnacrolix(b, dir)
	b.Cleanup(func() { cl.Close() })
	mi, err := metainfo.LoadFromFile(d.torrent)
	if err != nil {
		b.Fatal(err)
	}
	t, err := cl.AddTorrent(mi)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := t.VerifyDataContext(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case <-t.Complete().On():
	case <-ctx.Done():
		b.Fatal("anacrolix seed is not complete after verifying")
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(cl.LocalPort())), mi
}

// xferAnacrolixGet downloads the fixture with a fresh anacrolix client and
// returns how long it took.
func xferAnacrolixGet(b *testing.B, mi *metainfo.MetaInfo, seed, dir string) time.Duration {
	b.Helper()
	start := time.Now()
	cl := xferAnacrolix(b, dir)
	t, err := cl.AddTorrent(mi)
	if err != nil {
		b.Fatal(err)
	}
	t.AddPeers([]torrent.PeerInfo{{Addr: peerAddr(seed), Trusted: true}})
	t.DownloadAll()
	select {
	case <-t.Complete().On():
	case <-time.After(5 * time.Minute):
		b.Fatalf("anacrolix: %d of %d bytes after 5 min", t.BytesCompleted(), t.Length())
	}
	took := time.Since(start)
	cl.Close()
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	return took
}

// peerAddr is a host:port as anacrolix's PeerRemoteAddr.
type peerAddr string

func (a peerAddr) String() string { return string(a) }

// BenchmarkTransfer1GiB moves 1 GiB from `delugefs bt seed` to
// `delugefs bt get`, two processes on loopback; each iteration also moves it
// between two anacrolix/torrent clients (timer stopped) for the ratio.
func BenchmarkTransfer1GiB(b *testing.B) {
	d := xferFixture(b)
	seed := xferSeed(b, d)
	refSeed, refMI := xferAnacrolixSeed(b, d)
	b.SetBytes(xferSize)
	b.ReportAllocs()
	var ours, ref []float64
	var peak float64
	i := 0
	for b.Loop() {
		took, rss := xferGet(b, d, seed, filepath.Join(d.dir, fmt.Sprintf("get-%d", i)))
		ours = append(ours, mbps(xferSize, took))
		peak = max(peak, rss)
		b.StopTimer()
		ref = append(ref, mbps(xferSize, xferAnacrolixGet(b, refMI, refSeed, filepath.Join(d.dir, fmt.Sprintf("ref-%d", i)))))
		b.StartTimer()
		i++
	}
	o, r := median(ours), median(ref)
	b.ReportMetric(r, "ref-MB/s")
	if r > 0 {
		b.ReportMetric(o/r, "x-anacrolix")
	}
	b.ReportMetric(peak, "MiB-peak-rss")
}

// BenchmarkTransfer1GiBInProcess is BenchmarkTransfer1GiB with the leech
// (client.Get) in the benchmark process, so that -cpuprofile and
// -memprofile see it; the seed is still a child process.
func BenchmarkTransfer1GiBInProcess(b *testing.B) {
	d := xferFixture(b)
	seed := xferSeed(b, d)
	b.SetBytes(xferSize)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		dir := filepath.Join(d.dir, fmt.Sprintf("get-%d", i))
		out := filepath.Join(dir, "out.bin")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err := client.Get(ctx, client.GetConfig{Source: client.Source{MetaInfo: d.mi}, Out: out, Peers: []string{seed},
			Logger: slog.New(slog.DiscardHandler)})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		i++
	}
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// xferLeech is an in-process leech swarm on a fresh store.
type xferLeech struct {
	sw     *swarm.Swarm
	st     *piece.Store
	cancel context.CancelFunc
	done   chan error
}

// startLeech runs a swarm for info on a new store in dir, connected to
// seed, and waits until the seed has unchoked it or (streamOnly) until it
// is connected with the seed's bitfield in.
func startLeech(b *testing.B, info *bt.Info, seed, dir string, streamOnly bool) *xferLeech {
	b.Helper()
	st, err := piece.OpenStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	sw, err := swarm.New(info, swarm.Config{Store: st, StreamOnly: streamOnly, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &xferLeech{sw: sw, st: st, cancel: cancel, done: make(chan error, 1)}
	go func() { l.done <- sw.Serve(ctx) }() // ends with cancel, in stop
	if err := sw.AddPeer(seed); err != nil {
		b.Fatal(err)
	}
	var ps []swarm.PeerInfo
	if !testwait.Until(10*time.Second, func() bool {
		ps, err = sw.Peers(ctx)
		return err != nil || len(ps) > 0 && ps[0].Have == info.NumPieces()
	}) || err != nil {
		b.Fatalf("leech not connected to the seed after 10 s: %+v, %v", ps, err)
	}
	return l
}

// stop ends the leech and removes its store.
func (l *xferLeech) stop(b *testing.B) {
	l.cancel()
	if err := <-l.done; err != nil {
		b.Error(err)
	}
	l.sw.Close()
	os.RemoveAll(l.st.Root())
}

// firstByte times a 4 KiB ReadAt at the first piece at or after off that
// the leech does not have.
func (l *xferLeech) firstByte(b *testing.B, off int64) time.Duration {
	b.Helper()
	info := l.sw.Info()
	blob, err := l.st.OpenBlob(info)
	if err != nil {
		b.Fatal(err)
	}
	defer blob.Close()
	i := int(off / info.PieceLength)
	for i < info.NumPieces() && blob.HasPiece(i) {
		i++
	}
	if i == info.NumPieces() {
		b.Fatalf("the leech has every piece from offset %d", off)
	}
	p := make([]byte, 4096)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := l.sw.ReadAt(ctx, p, info.PieceOffset(i)); err != nil {
		b.Fatalf("ReadAt piece %d: %v", i, err)
	}
	return time.Since(start)
}

// BenchmarkFirstByte1GiB times the first byte of reads of a 1 GiB blob the
// leech does not have, at offset 0 and 50 %: on an idle leech that fetches
// only what is read, and on a leech busy downloading the whole blob. Each
// iteration takes xferSamples samples of each and reports the medians.
func BenchmarkFirstByte1GiB(b *testing.B) {
	const xferSamples = 7
	d := xferFixture(b)
	seed := xferSeed(b, d)
	info := d.mi.Info
	var idle0, idle50, busy0, busy50 []float64
	ms := func(t time.Duration) float64 { return float64(t) / float64(time.Millisecond) }
	for b.Loop() {
		for k := range xferSamples {
			l := startLeech(b, info, seed, filepath.Join(d.dir, fmt.Sprintf("idle-%d", k)), true)
			idle0 = append(idle0, ms(l.firstByte(b, 0)))
			idle50 = append(idle50, ms(l.firstByte(b, xferSize/2)))
			l.stop(b)
		}
		for k := range xferSamples {
			l := startLeech(b, info, seed, filepath.Join(d.dir, fmt.Sprintf("busy-%d", k)), false)
			// Busy: the pipeline to the seed is full of the download's
			// requests before the read comes.
			waitBytes(b, l.sw, 32<<20)
			busy0 = append(busy0, ms(l.firstByte(b, 0)))
			busy50 = append(busy50, ms(l.firstByte(b, xferSize/2)))
			l.stop(b)
		}
	}
	b.ReportMetric(median(idle0), "ms/first-byte@0")
	b.ReportMetric(median(idle50), "ms/first-byte@50%")
	b.ReportMetric(median(busy0), "ms/first-byte-busy@0")
	b.ReportMetric(median(busy50), "ms/first-byte-busy@50%")
}

// waitBytes waits until the swarm has verified at least n bytes.
func waitBytes(b *testing.B, sw *swarm.Swarm, n int64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if !testwait.UntilEvery(30*time.Second, time.Millisecond, func() bool {
		var p swarm.Progress
		p, err = sw.Progress(ctx)
		return err != nil || p.Bytes >= n
	}) || err != nil {
		b.Fatalf("leech: %d bytes not verified: %v", n, err)
	}
}
