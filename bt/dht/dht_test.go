package dht

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	anacdht "github.com/anacrolix/dht/v2"
	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/internal/testwait"
)

// recordingConn is a UDP socket that remembers where it sent packets.
type recordingConn struct {
	net.PacketConn
	mu   sync.Mutex // guards sent
	sent map[netip.AddrPort]int
}

func listenRecording(t *testing.T) *recordingConn {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &recordingConn{PacketConn: c, sent: make(map[netip.AddrPort]int)}
}

func (c *recordingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	c.mu.Lock()
	if ok {
		ap := ua.AddrPort()
		c.sent[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]++
	} else {
		c.sent[netip.AddrPort{}]++ // not UDP: never allowed
	}
	c.mu.Unlock()
	return c.PacketConn.WriteTo(p, addr)
}

func (c *recordingConn) destinations() map[netip.AddrPort]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[netip.AddrPort]int, len(c.sent))
	for k, v := range c.sent {
		m[k] = v
	}
	return m
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

// checkNoLeaks records the goroutine count and, at cleanup, waits for it to
// come back down.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		if !testwait.Until(5*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d before, %d after stop:\n%s", before, runtime.NumGoroutine(), buf[:n])
		}
	})
}

// testNode is one Server of a test DHT and its Serve's outcome.
type testNode struct {
	*Server
	conn *recordingConn
	done chan error
}

// start runs Serve until ctx ends; its result goes to n.done.
func (n *testNode) start(ctx context.Context) {
	go func() { n.done <- n.Serve(ctx) }()
}

// startNodes starts one node per entry of knows; knows[i] lists the indices
// of the nodes node i bootstraps from. Serve ends with ctx. The nodes listed
// in later are made but not started: the caller starts them.
func startNodes(t *testing.T, ctx context.Context, knows [][]int, later ...int) []*testNode {
	t.Helper()
	nodes := make([]*testNode, len(knows))
	for i := range knows {
		c := listenRecording(t)
		s, err := New(Config{Conn: c, QueryTimeout: time.Second, LookupTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &testNode{Server: s, conn: c, done: make(chan error, 1)}
	}
	for i, ks := range knows {
		for _, k := range ks {
			nodes[i].AddNode(nodes[k].Addr())
		}
	}
	for i, n := range nodes {
		if !slices.Contains(later, i) {
			n.start(ctx)
		}
	}
	return nodes
}

func stopNodes(t *testing.T, cancel context.CancelFunc, nodes []*testNode) {
	t.Helper()
	cancel()
	for i, n := range nodes {
		select {
		case err := <-n.done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("node %d: Serve returned %v, want context.Canceled", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("node %d: Serve did not return after cancel", i)
		}
	}
}

// TestFindAnnouncedPeer runs a DHT of six nodes on loopback: A announces an
// info-hash, then E joins knowing only D and finds A's address through
// get_peers; no node ever sends a packet to an address outside the test DHT.
func TestFindAnnouncedPeer(t *testing.T) {
	checkNoLeaks(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const A, B, C, D, E, F = 0, 1, 2, 3, 4, 5
	nodes := startNodes(t, ctx, [][]int{
		A: {B, C, D},
		B: {A, C},
		C: {A, D},
		D: {C},
		E: {D}, // E only knows D, and starts after the announce
		F: {A, B},
	}, E)
	waitFor(t, 5*time.Second, "every node to have another in its table", func() bool {
		for i, n := range nodes {
			if i != E && n.Stats().Nodes == 0 {
				return false
			}
		}
		return true
	})

	hash := bt.InfoHash{0xde, 0x1c, 0xe0, 0xf5}
	const port = 6881
	if err := nodes[A].Announce(ctx, hash, port); err != nil {
		t.Fatalf("A announce: %v", err)
	}
	if st := nodes[A].Stats(); st.Announces != 1 || st.AnnounceAcks == 0 {
		t.Fatalf("A stats after announce: %+v, want 1 announce with acks", st)
	}

	nodes[E].start(ctx)
	want := netip.AddrPortFrom(nodes[A].Addr().Addr(), port)
	var got []netip.AddrPort
	start := time.Now()
	for deadline := time.Now().Add(20 * time.Second); !slices.Contains(got, want); {
		if time.Now().After(deadline) {
			for i, n := range nodes {
				var b strings.Builder
				n.mu.Lock()
				if n.srv != nil {
					n.srv.WriteStatus(&b)
				}
				n.mu.Unlock()
				t.Logf("node %d: %+v\n%s", i, n.Stats(), b.String())
			}
			t.Fatalf("E did not find A (%v) through get_peers in 20s; got %v", want, got)
		}
		err := nodes[E].GetPeers(ctx, hash, func(p netip.AddrPort) { got = append(got, p) })
		if err != nil && !errors.Is(err, ErrNoResponse) {
			t.Fatalf("E get_peers: %v", err)
		}
	}
	t.Logf("E found %v in %v (peers %v)", want, time.Since(start).Round(time.Millisecond), got)

	// Each other node is told at most once, A never (not itself). anacrolix
	// counts a received announce in a goroutine of its own: wait for them.
	acks := nodes[A].Stats().AnnounceAcks
	var received []int64
	waitFor(t, 5*time.Second, "the received announces to add up to A's acks", func() bool {
		received = received[:0]
		var sum int64
		for _, n := range nodes {
			r := n.Stats().AnnouncesReceived
			received = append(received, r)
			sum += r
		}
		return sum == acks
	})
	for i, r := range received {
		if r > 1 || (i == A && r != 0) {
			t.Errorf("node %d received %d announces", i, r)
		}
	}
	if st := nodes[E].Stats(); st.Lookups == 0 || st.PeersFound == 0 || st.AnnouncesReceived != 0 {
		t.Errorf("E stats: %+v, want lookups, peers found, and no announce received", st)
	}

	// Only packets to the test's own nodes.
	allowed := make(map[netip.AddrPort]bool)
	for _, n := range nodes {
		allowed[n.Addr()] = true
	}
	for i, n := range nodes {
		for dst, count := range n.conn.destinations() {
			if !allowed[dst] {
				t.Errorf("node %d sent %d packets to %v, outside the test DHT", i, count, dst)
			}
		}
	}
	stopNodes(t, cancel, nodes)
}

// TestIsolatedNodeSendsNothing: with no bootstrap address and the public DHT
// off, the configuration handed to anacrolix starts from nothing, lookups
// fail with ErrNoNodes, and not one packet leaves the socket.
func TestIsolatedNodeSendsNothing(t *testing.T) {
	checkNoLeaks(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := listenRecording(t)
	s, err := New(Config{Conn: c})
	if err != nil {
		t.Fatal(err)
	}
	s.public = func() ([]anacdht.Addr, error) {
		t.Error("public bootstrap routers resolved with PublicBootstrap off")
		return nil, errors.New("not allowed")
	}
	n := &testNode{Server: s, conn: c, done: make(chan error, 1)}
	nodes := []*testNode{n}
	go func() { n.done <- n.Serve(ctx) }()

	cfg := n.serverConfig(nil)
	if cfg.StartingNodes == nil {
		t.Fatal("StartingNodes is nil: anacrolix would fall back on its own defaults")
	}
	if got, err := cfg.StartingNodes(); err != nil || len(got) != 0 {
		t.Fatalf("StartingNodes() = %v, %v; want none", got, err)
	}
	if cfg.SendLimiter == anacdht.DefaultSendLimiter || !cfg.NoSecurity || cfg.PeerStore == nil {
		t.Fatalf("server config: limiter shared %v, NoSecurity %v, PeerStore %v",
			cfg.SendLimiter == anacdht.DefaultSendLimiter, cfg.NoSecurity, cfg.PeerStore)
	}

	hash := bt.InfoHash{1}
	if err := n.GetPeers(ctx, hash, func(netip.AddrPort) {}); !errors.Is(err, ErrNoNodes) {
		t.Errorf("GetPeers: %v, want ErrNoNodes", err)
	}
	if err := n.Announce(ctx, hash, 6881); !errors.Is(err, ErrNoNodes) {
		t.Errorf("Announce: %v, want ErrNoNodes", err)
	}
	stopNodes(t, cancel, nodes)
	if sent := n.conn.destinations(); len(sent) != 0 {
		t.Errorf("isolated node sent packets: %v", sent)
	}
}

// TestStartingNodes: only the given addresses (deduplicated, invalid ones
// and our own dropped), then those added later; the public routers only with
// the opt-in.
func TestStartingNodes(t *testing.T) {
	x := netip.MustParseAddrPort("127.0.0.1:7001")
	y := netip.MustParseAddrPort("127.0.0.2:7002")
	z := netip.MustParseAddrPort("127.0.0.3:7003")
	pub := netip.MustParseAddrPort("127.0.0.9:6881") // stands in for the routers; never contacted
	for _, optIn := range []bool{false, true} {
		s, err := New(Config{
			Addr:            "127.0.0.1:0",
			PublicBootstrap: optIn,
			Bootstrap: []netip.AddrPort{x, y, x, {},
				netip.MustParseAddrPort("0.0.0.0:1"), netip.MustParseAddrPort("127.0.0.1:0")},
		})
		if err != nil {
			t.Fatal(err)
		}
		resolved := 0
		s.public = func() ([]anacdht.Addr, error) {
			resolved++
			return []anacdht.Addr{anacdht.NewAddr(net.UDPAddrFromAddrPort(pub))}, nil
		}
		s.AddNode(s.Addr()) // ourselves: ignored
		s.AddNode(z)
		s.AddNode(y)
		got, err := s.serverConfig(nil).StartingNodes()
		if err != nil {
			t.Fatal(err)
		}
		var gotAP []netip.AddrPort
		for _, a := range got {
			gotAP = append(gotAP, a.KRPC().ToNodeAddrPort().AddrPort)
		}
		want := []netip.AddrPort{x, y, z}
		if optIn {
			want = append(want, pub)
		}
		if !slices.Equal(gotAP, want) {
			t.Errorf("opt-in %v: StartingNodes = %v, want %v", optIn, gotAP, want)
		}
		if wantRes := map[bool]int{false: 0, true: 1}[optIn]; resolved != wantRes {
			t.Errorf("opt-in %v: public routers resolved %d times, want %d", optIn, resolved, wantRes)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestartAndClose: Serve runs again on the same address after it
// returns; after Close, Serve and lookups fail with ErrClosed.
func TestRestartAndClose(t *testing.T) {
	checkNoLeaks(t)
	s, err := New(Config{Addr: "127.0.0.1:0", NodeID: NodeIDFromString("node-1")})
	if err != nil {
		t.Fatal(err)
	}
	if s.ID() != NodeIDFromString("node-1") {
		t.Fatalf("ID = %x, want the configured one", s.ID())
	}
	addr := s.Addr()
	for round := range 2 {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx) }()
		waitFor(t, 5*time.Second, "Serve to run", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.srv != nil
		})
		if err := s.Serve(ctx); !errors.Is(err, ErrServing) {
			t.Errorf("round %d: second concurrent Serve: %v, want ErrServing", round, err)
		}
		if s.Addr() != addr {
			t.Errorf("round %d: address moved to %v from %v", round, s.Addr(), addr)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: Serve: %v", round, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close: %v, want ErrClosed", err)
	}
	if err := s.GetPeers(t.Context(), bt.InfoHash{}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("GetPeers after Close: %v, want ErrClosed", err)
	}
}

// TestLookupWaitsForServeAndStops: a lookup started before Serve waits for
// it; one running when Serve stops ends with ErrStopped.
func TestLookupWaitsForServe(t *testing.T) {
	checkNoLeaks(t)
	s, err := New(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	if err := s.GetPeers(short, bt.InfoHash{}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetPeers before Serve: %v, want the context's deadline", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	if err := s.GetPeers(t.Context(), bt.InfoHash{}, nil); !errors.Is(err, ErrNoNodes) {
		t.Errorf("GetPeers once serving, no nodes: %v, want ErrNoNodes", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve: %v", err)
	}
}

// TestLookupStopsWithServe: a lookup towards a node that never answers is
// cut short by Serve stopping, and Serve waits for it.
func TestLookupStopsWithServe(t *testing.T) {
	checkNoLeaks(t)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	s, err := New(Config{
		Addr:         "127.0.0.1:0",
		Bootstrap:    []netip.AddrPort{silent.LocalAddr().(*net.UDPAddr).AddrPort()},
		QueryTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	lookup := make(chan error, 1)
	go func() { lookup <- s.GetPeers(t.Context(), bt.InfoHash{7}, nil) }()
	waitFor(t, 5*time.Second, "the lookup to query the silent node", func() bool {
		return s.Stats().QueriesSent >= 3 // ping, bootstrap find_node, get_peers
	})
	cancel()
	select {
	case err := <-lookup:
		if !errors.Is(err, ErrStopped) {
			t.Errorf("lookup: %v, want ErrStopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lookup did not end when Serve stopped")
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve: %v", err)
	}
}

// TestAddNodeLater: two nodes that start knowing nobody; one learns the
// other through AddNode while serving (as from discovery), the other learns
// it from its query; then each finds what the other announced.
func TestAddNodeLater(t *testing.T) {
	checkNoLeaks(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	nodes := startNodes(t, ctx, [][]int{{}, {}})
	x, y := nodes[0], nodes[1]
	y.AddNode(x.Addr())
	waitFor(t, 5*time.Second, "both nodes to know each other", func() bool {
		return x.Stats().Nodes == 1 && y.Stats().Nodes == 1
	})
	hx, hy := bt.InfoHash{0xaa}, bt.InfoHash{0xbb}
	if err := x.Announce(ctx, hx, 1111); err != nil {
		t.Fatalf("x announce: %v", err)
	}
	if err := y.Announce(ctx, hy, 2222); err != nil {
		t.Fatalf("y announce: %v", err)
	}
	// anacrolix stores an announced peer in a goroutine of its own, so the
	// ack may come first.
	waitFor(t, 5*time.Second, "both announces stored", func() bool {
		return x.Stats().PeersStored == 1 && y.Stats().PeersStored == 1
	})
	for _, c := range []struct {
		who  *testNode
		hash bt.InfoHash
		want netip.AddrPort
	}{
		{y, hx, netip.AddrPortFrom(x.Addr().Addr(), 1111)},
		{x, hy, netip.AddrPortFrom(y.Addr().Addr(), 2222)},
	} {
		var got []netip.AddrPort
		if err := c.who.GetPeers(ctx, c.hash, func(p netip.AddrPort) { got = append(got, p) }); err != nil {
			t.Fatalf("get_peers %s: %v", c.hash, err)
		}
		if !slices.Equal(got, []netip.AddrPort{c.want}) {
			t.Errorf("get_peers %s = %v, want [%v]", c.hash, got, c.want)
		}
	}
	stopNodes(t, cancel, nodes)
}
