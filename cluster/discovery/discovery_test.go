//go:build linux

package discovery_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/delugefs/delugefs/cluster/discovery"
	"github.com/delugefs/delugefs/cluster/discovery/netnstest"
	"github.com/delugefs/delugefs/internal/testwait"
)

func TestMain(m *testing.M) {
	netnstest.Main(m, map[string]func([]string) int{"discovery": childDiscovery, "stockbrowse": childStockBrowse})
}

// Short timings for tests: a peer is heard every ~200 ms and expires
// after a second of silence.
const (
	testInterval = 200 * time.Millisecond
	testTTL      = time.Second
)

func randomID(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// loopback is the network of tests within this host: the loopback
// interface only, so nothing leaves the machine.
func loopback(t testing.TB) discovery.Network {
	ifs, err := net.Interfaces()
	if err != nil {
		panic(err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			return discovery.Network{Interfaces: []string{ifi.Name}, IncludeLoopback: true}
		}
	}
	panic("no loopback interface")
}

type node struct {
	d      *discovery.Discovery
	cancel context.CancelFunc
	done   chan error
	events <-chan discovery.Event
}

func startNode(t *testing.T, cfg discovery.Config) *node {
	t.Helper()
	if cfg.Interval == 0 {
		cfg.Interval = testInterval
	}
	if cfg.TTL == 0 {
		cfg.TTL = testTTL
	}
	cfg.Logf = t.Logf
	d, err := discovery.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{d: d, cancel: cancel, done: make(chan error, 1)}
	n.events = d.Subscribe(ctx)
	go func() { n.done <- d.Serve(ctx) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop cancels Serve (a clean stop, with goodbye) and waits for it.
func (n *node) stop(t *testing.T) {
	t.Helper()
	n.cancel()
	select {
	case err, ok := <-n.done:
		if ok && err != nil && err != context.Canceled {
			t.Errorf("Serve: %v", err)
		}
		if ok {
			close(n.done)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Serve did not return")
	}
}

// waitEvent returns the first event matching pred within d.
func (n *node) waitEvent(t *testing.T, d time.Duration, what string, pred func(discovery.Event) bool) discovery.Event {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-n.events:
			if !ok {
				t.Fatalf("events closed waiting for %s", what)
			}
			if pred(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s within %v; members %v", what, d, n.d.Snapshot())
		}
	}
}

func isUp(node string) func(discovery.Event) bool {
	return func(ev discovery.Event) bool { return ev.Type == discovery.PeerUp && ev.Peer.NodeID == node }
}

func isDown(node string, c discovery.Cause) func(discovery.Event) bool {
	return func(ev discovery.Event) bool {
		return ev.Type == discovery.PeerDown && ev.Peer.NodeID == node && ev.Cause == c
	}
}

func cfg(t testing.TB, vol, nodeID string, bt, api uint16) discovery.Config {
	return discovery.Config{
		Info:    discovery.Info{VolumeID: vol, NodeID: nodeID, BTPort: bt, APIPort: api},
		Network: loopback(t),
	}
}

// waitMembers waits until the node's snapshot holds exactly want.
func waitMembers(t *testing.T, n *node, d time.Duration, want ...string) []discovery.Peer {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		snap := n.d.Snapshot()
		var got []string
		for _, p := range snap {
			got = append(got, p.NodeID)
		}
		if strings.Join(got, ",") == strings.Join(want, ",") {
			return snap
		}
		if time.Now().After(deadline) {
			t.Fatalf("members %v, want %v", got, want)
		}
		<-tick.C
	}
}

func TestThreeNodesFindEachOther(t *testing.T) {
	vol := randomID(t, "vol")
	a := startNode(t, cfg(t, vol, "a", 6001, 7001))
	b := startNode(t, cfg(t, vol, "b", 6002, 7002))
	c := startNode(t, cfg(t, vol, "c", 6003, 7003))
	other := startNode(t, cfg(t, randomID(t, "othervol"), "x", 6009, 7009))

	for _, n := range []*node{a, b, c} {
		self := n.d.Instance()
		var want []string
		for _, id := range []string{"a", "b", "c"} {
			if discovery.InstanceName(vol, id) != self {
				want = append(want, id)
			}
		}
		peers := waitMembers(t, n, 5*time.Second, want...)
		for _, p := range peers {
			port := map[string]uint16{"a": 1, "b": 2, "c": 3}[p.NodeID]
			if p.VolumeID != vol || p.BTPort != 6000+port || p.APIPort != 7000+port ||
				p.Format != discovery.FormatVersion || p.Static ||
				p.Instance == "" || len(p.Addrs) == 0 || !p.Addrs[0].IsLoopback() {
				t.Errorf("%s sees %+v", self, p)
			}
			if got, want := p.APIAddr(), fmt.Sprintf("127.0.0.1:%d", 7000+port); got != want {
				t.Errorf("APIAddr %s, want %s", got, want)
			}
		}
	}
	// The node of another volume is seen but is not a member.
	eventually(t, 5*time.Second, "a sees both volumes", func() bool {
		vols := a.d.Volumes()
		return len(vols[vol]) == 2 && len(vols) == 2
	})
	_ = other
}

// eventually waits until cond holds, checking every 20 ms, for at most d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

// childDiscovery is the child role "discovery": it runs one Discovery
// with the flags given, prints "ready" and then each event as JSON on a
// line, and stops cleanly (goodbye) when its stdin closes.
func childDiscovery(args []string) int {
	fs := flag.NewFlagSet("discovery", flag.ContinueOnError)
	vol := fs.String("vol", "", "volume id")
	nodeID := fs.String("node", "", "node id")
	bt := fs.Uint("bt", 6881, "bt port")
	api := fs.Uint("api", 7000, "api port")
	lo := fs.Bool("lo", false, "loopback only")
	interval := fs.Duration("interval", testInterval, "query interval")
	ttl := fs.Duration("ttl", testTTL, "ttl")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := discovery.Config{
		Info:     discovery.Info{VolumeID: *vol, NodeID: *nodeID, BTPort: uint16(*bt), APIPort: uint16(*api)},
		Interval: *interval,
		TTL:      *ttl,
		Logf: func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, *nodeID+": "+f+"\n", a...)
		},
	}
	if *lo {
		c.Network = loopback(nil)
	}
	d, err := discovery.New(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := d.Subscribe(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := os.Stdin.Read(buf); err != nil {
				cancel()
				return
			}
		}
	}()
	fmt.Println("ready")
	enc := json.NewEncoder(os.Stdout)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				// Closed when ctx ends: Serve's return follows. (Reading
				// it on wrote zero events until stdout's pipe was full and
				// the child hung instead of exiting.)
				events = nil
				continue
			}
			if err := enc.Encode(ev); err != nil {
				return 1
			}
		case err := <-done:
			if err != nil && err != context.Canceled {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			return 0
		}
	}
}
