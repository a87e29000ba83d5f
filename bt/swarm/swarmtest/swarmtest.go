// Package swarmtest helps tests run swarms on loopback: a Node is a blob
// store in a temporary directory, a registry and a listener on 127.0.0.1,
// plus the swarms started on it; CheckLeaks fails a test that leaves swarm
// goroutines behind.
package swarmtest

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/piece"
)

// Node is one node's worth of swarms on loopback.
type Node struct {
	Store    *piece.Store
	Registry *swarm.Registry
	Listener *swarm.Listener
	// Addr is the listener's address, for AddPeer.
	Addr string
	// Config is the base of every swarm started on the node (Store is
	// set by the node).
	Config swarm.Config

	tb     testing.TB
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex // guards runs
	runs   map[*swarm.Swarm]*run
}

type run struct {
	cancel context.CancelFunc
	done   chan error
}

// NewNode starts a node with a store in a temporary directory and a
// listener on 127.0.0.1. It stops with the test.
func NewNode(tb testing.TB, cfg swarm.Config) *Node {
	tb.Helper()
	st, err := piece.OpenStore(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = Logger(tb)
	}
	reg := swarm.NewRegistry()
	ln, err := swarm.Listen("127.0.0.1:0", reg, cfg.Logger)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{Store: st, Registry: reg, Listener: ln, Addr: ln.Addr().String(), Config: cfg, tb: tb, cancel: cancel, runs: map[*swarm.Swarm]*run{}}
	n.wg.Go(func() {
		if err := ln.Serve(ctx); err != nil {
			tb.Errorf("listener: %v", err)
		}
	})
	tb.Cleanup(n.Close)
	return n
}

// Seed stores data as a complete blob and returns its info.
func (n *Node) Seed(data []byte) *bt.Info {
	n.tb.Helper()
	f, err := n.Store.TempFile()
	if err != nil {
		n.tb.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		n.tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		n.tb.Fatal(err)
	}
	info, err := n.Store.Seal(f.Name(), nil)
	if err != nil {
		n.tb.Fatal(err)
	}
	os.Remove(f.Name())
	return info
}

// Start opens and runs the swarm of info on the node.
func (n *Node) Start(info *bt.Info) *swarm.Swarm {
	n.tb.Helper()
	cfg := n.Config
	cfg.Store = n.Store
	s, err := swarm.New(info, cfg)
	if err != nil {
		n.tb.Fatal(err)
	}
	n.run(s)
	return s
}

// StartMagnet runs a swarm that knows only h.
func (n *Node) StartMagnet(h bt.InfoHash) *swarm.Swarm {
	n.tb.Helper()
	cfg := n.Config
	cfg.Store = n.Store
	s, err := swarm.NewMagnet(h, cfg)
	if err != nil {
		n.tb.Fatal(err)
	}
	n.run(s)
	return s
}

func (n *Node) run(s *swarm.Swarm) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, done: make(chan error, 1)}
	n.mu.Lock()
	n.runs[s] = r
	n.mu.Unlock()
	n.Registry.Add(s)
	n.wg.Go(func() { r.done <- s.Serve(ctx) })
}

// Stop stops a swarm started on the node, waits for Serve to return and
// closes it. It returns Serve's error.
func (n *Node) Stop(s *swarm.Swarm) error {
	n.mu.Lock()
	r := n.runs[s]
	delete(n.runs, s)
	n.mu.Unlock()
	if r == nil {
		return nil
	}
	n.Registry.Remove(s)
	r.cancel()
	err := <-r.done
	if cerr := s.Close(); cerr != nil {
		n.tb.Errorf("close swarm: %v", cerr)
	}
	return err
}

// Close stops every swarm and the listener.
func (n *Node) Close() {
	n.mu.Lock()
	var all []*swarm.Swarm
	for s := range n.runs {
		all = append(all, s)
	}
	n.mu.Unlock()
	for _, s := range all {
		if err := n.Stop(s); err != nil {
			n.tb.Errorf("swarm: %v", err)
		}
	}
	n.cancel()
	n.wg.Wait()
}

// RandomData returns size pseudo-random bytes made from seed.
func RandomData(size int, seed uint64) []byte {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	r := rand.NewChaCha8(s)
	b := make([]byte, size)
	r.Read(b)
	return b
}

// Logger returns a logger writing to the test log (warnings and up, or
// everything with DELUGEFS_DEBUG set).
func Logger(tb testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("DELUGEFS_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: level}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// CheckLeaks registers a cleanup, run after the test's other cleanups,
// that fails the test if goroutines of package swarm are still running 5 s
// later. Call it first in a test.
func CheckLeaks(tb testing.TB) {
	tb.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := swarmGoroutines()
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				tb.Errorf("%d swarm goroutines leaked:\n%s", len(left), strings.Join(left, "\n\n"))
				return
			}
			runtime.Gosched()
			time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
		}
	})
}

func swarmGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "delugefs/bt/swarm.") {
			out = append(out, g)
		}
	}
	return out
}
