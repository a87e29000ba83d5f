package client_test

// Stock BitTorrent clients as test peers, on loopback only, with every
// means of discovery off: anacrolix/torrent in-process and aria2c as a
// child process.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/delugefs/delugefs/bt"
)

// newAnacrolix starts an anacrolix/torrent client on 127.0.0.1 with its
// data in dir: no DHT, trackers, PEX, uTP, port forwarding, IPv6,
// webtorrent or webseeds; no header obfuscation, which we do not speak.
// It is closed with the test.
func newAnacrolix(t testing.TB, dir string) *torrent.Client {
	t.Helper()
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
	if os.Getenv("DELUGEFS_DEBUG") != "" {
		cfg.Slogger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		t.Fatalf("anacrolix client: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// anacrolixAddr is the address an anacrolix client accepts peers on.
func anacrolixAddr(cl *torrent.Client) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(cl.LocalPort()))
}

// theirMetaInfo converts our torrent to anacrolix's.
func theirMetaInfo(t testing.TB, mi *bt.MetaInfo) *metainfo.MetaInfo {
	t.Helper()
	m, err := metainfo.Load(bytes.NewReader(mi.Bencode()))
	if err != nil {
		t.Fatalf("anacrolix loads our torrent: %v", err)
	}
	if m.HashInfoBytes() != metainfo.Hash(mi.Info.Hash()) {
		t.Fatalf("anacrolix info-hash %v, ours %v", m.HashInfoBytes(), mi.Info.Hash())
	}
	return m
}

// waitFlag waits for an anacrolix event with a deadline.
func waitFlag(t testing.TB, what string, on <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-on:
	case <-time.After(d):
		t.Fatalf("%s: not after %v", what, d)
	}
}

// anacrolixSeed makes an anacrolix client seed data under the torrent mi.
func anacrolixSeed(t testing.TB, mi *bt.MetaInfo, data []byte) *torrent.Client {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, mi.Info.Name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cl := newAnacrolix(t, dir)
	tt, err := cl.AddTorrent(theirMetaInfo(t, mi))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tt.VerifyDataContext(ctx); err != nil {
		t.Fatalf("anacrolix verifies its data: %v", err)
	}
	waitFlag(t, "anacrolix seed complete", tt.Complete().On(), 30*time.Second)
	return cl
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// for aria2c, which must be told its port.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// logBuffer collects a child's output and wakes waiters on every write.
type logBuffer struct {
	mu   sync.Mutex // guards b and wake
	b    bytes.Buffer
	wake chan struct{} // closed and replaced on every write
}

func newLogBuffer() *logBuffer { return &logBuffer{wake: make(chan struct{})} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	close(l.wake)
	l.wake = make(chan struct{})
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor waits until the output contains every string in want, or the
// process ends, or d passes.
func (l *logBuffer) waitFor(exited <-chan struct{}, d time.Duration, want ...string) error {
	deadline := time.After(d)
	for {
		l.mu.Lock()
		s, wake := l.b.String(), l.wake
		l.mu.Unlock()
		all := true
		for _, w := range want {
			all = all && strings.Contains(s, w)
		}
		if all {
			return nil
		}
		select {
		case <-wake:
		case <-exited:
			return fmt.Errorf("exited before printing %q", want)
		case <-deadline:
			return fmt.Errorf("did not print %q in %v", want, d)
		}
	}
}

// aria2 is an aria2c child process.
type aria2 struct {
	cmd    *exec.Cmd
	addr   string // where it accepts peers
	out    *logBuffer
	exited chan struct{} // closed when it has exited; err is set then
	err    error
}

// aria2Base are the options of every aria2c we run: loopback only, no
// DHT, local peer discovery, peer exchange or trackers, no config file.
func aria2Base(port int) []string {
	return []string{
		"--no-conf=true",
		"--enable-dht=false", "--enable-dht6=false",
		"--bt-enable-lpd=false", "--enable-peer-exchange=false",
		"--bt-exclude-tracker=*", "--bt-tracker-connect-timeout=1", "--bt-tracker-timeout=1",
		"--disable-ipv6=true", "--interface=127.0.0.1",
		"--listen-port=" + strconv.Itoa(port),
		"--bt-require-crypto=false", "--bt-min-crypto-level=plain",
		"--console-log-level=notice", "--summary-interval=0", "--show-console-readout=false",
		"--file-allocation=none", "--bt-save-metadata=false", "--auto-save-interval=0",
		"--allow-overwrite=true", "--enable-color=false",
	}
}

// startAria2 runs aria2c with args after the base options. It is ended
// (SIGTERM, then SIGKILL) when ctx ends or the test does.
func startAria2(ctx context.Context, t testing.TB, args ...string) *aria2 {
	t.Helper()
	if _, err := exec.LookPath("aria2c"); err != nil {
		t.Fatalf("aria2c is not installed (make test-deps installs it): %v", err)
	}
	port := freePort(t)
	a := &aria2{addr: "127.0.0.1:" + strconv.Itoa(port), out: newLogBuffer(), exited: make(chan struct{})}
	a.cmd = exec.CommandContext(ctx, "aria2c", append(aria2Base(port), args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.cmd.Cancel = func() error { return a.cmd.Process.Signal(syscall.SIGTERM) }
	a.cmd.WaitDelay = 5 * time.Second
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start aria2c: %v", err)
	}
	go func() { // the waiter; ends when aria2c exits
		a.err = a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			a.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-a.exited:
			case <-time.After(5 * time.Second):
				a.cmd.Process.Kill()
				<-a.exited
			}
		}
		if t.Failed() {
			t.Logf("aria2c output:\n%s", a.out)
		}
	})
	return a
}

// wait waits for aria2c to exit by itself within d and returns its error.
func (a *aria2) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case <-a.exited:
		return a.err
	case <-time.After(d):
		return fmt.Errorf("aria2c still running after %v", d)
	}
}

// copyTo is a small helper for tests that hand a stock client a file.
func copyTo(t testing.TB, dst string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
