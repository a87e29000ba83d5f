//go:build linux

package discovery_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/delugefs/delugefs/cluster/discovery"
	"github.com/delugefs/delugefs/cluster/discovery/netnstest"
)

func TestCleanStopIsGoodbye(t *testing.T) {
	vol := randomID(t, "vol")
	a := startNode(t, cfg(t, vol, "a", 1, 2))
	b := startNode(t, cfg(t, vol, "b", 3, 4))
	a.waitEvent(t, 5*time.Second, "b up", isUp("b"))
	b.waitEvent(t, 5*time.Second, "a up", isUp("a"))

	// A long TTL: only the goodbye can explain a quick PeerDown.
	c := cfg(t, vol, "c", 5, 6)
	c.TTL = time.Minute
	a2 := startNode(t, c)
	waitMembers(t, a2, 5*time.Second, "a", "b")

	start := time.Now()
	b.stop(t)
	ev := a2.waitEvent(t, time.Second, "b's goodbye", func(ev discovery.Event) bool {
		return ev.Type == discovery.PeerDown && ev.Peer.NodeID == "b"
	})
	if ev.Cause != discovery.CauseGoodbye {
		t.Errorf("b down: %v", ev)
	}
	a.waitEvent(t, time.Second, "b's goodbye", isDown("b", discovery.CauseGoodbye))
	t.Logf("clean stop noticed after %v", time.Since(start))
	waitMembers(t, a2, time.Second, "a")

	// The stopped node's own subscribers saw everything go down.
	drained := 0
	for ev := range b.events {
		if ev.Type == discovery.PeerDown && ev.Cause != discovery.CauseStopped {
			t.Errorf("b after stop: %v", ev)
		}
		drained++
	}
	if got := b.d.Snapshot(); len(got) != 0 {
		t.Errorf("stopped node still has members %v", got)
	}

	// A restart is seen again at once, though it announces the same.
	b2 := startNode(t, cfg(t, vol, "b", 3, 4))
	a2.waitEvent(t, 5*time.Second, "b up again", isUp("b"))
	_ = b2
}

// TestKilledPeerExpires runs a node in a child process, kills it (no
// goodbye), and waits for it to expire within the TTL.
func TestKilledPeerExpires(t *testing.T) {
	vol := randomID(t, "vol")
	a := startNode(t, cfg(t, vol, "a", 1, 2))
	child := netnstest.StartLocal(t, netnstest.ChildCommand(nil, "discovery",
		"-vol", vol, "-node", "k", "-lo", "-interval", testInterval.String(), "-ttl", testTTL.String()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := child.WaitLine(ctx, func(l string) bool { return strings.Contains(l, `"NodeID":"a"`) }); err != nil {
		t.Fatalf("child never saw a: %v", err)
	}
	a.waitEvent(t, 5*time.Second, "k up", isUp("k"))
	child.Kill()
	killed := time.Now()
	a.waitEvent(t, testTTL+700*time.Millisecond, "k expired", isDown("k", discovery.CauseExpired))
	t.Logf("killed peer expired after %v (TTL %v)", time.Since(killed), testTTL)
}

func TestChildSeesEventsAsJSON(t *testing.T) {
	vol := randomID(t, "vol")
	startNode(t, cfg(t, vol, "a", 11, 12))
	child := netnstest.StartLocal(t, netnstest.ChildCommand(nil, "discovery", "-vol", vol, "-node", "c", "-lo"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	line, err := child.WaitLine(ctx, func(l string) bool { return strings.HasPrefix(l, "{") })
	if err != nil {
		t.Fatal(err)
	}
	var ev discovery.Event
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if ev.Type != discovery.PeerUp || ev.Peer.NodeID != "a" || ev.Peer.BTPort != 11 || ev.Peer.APIPort != 12 {
		t.Errorf("child saw %+v", ev)
	}
	if err := child.Stop(ctx); err != nil {
		t.Errorf("child stop: %v", err)
	}
}

func TestPeerUnreachable(t *testing.T) {
	vol := randomID(t, "vol")
	a := startNode(t, cfg(t, vol, "a", 1, 2))
	startNode(t, cfg(t, vol, "b", 3, 4))
	a.waitEvent(t, 5*time.Second, "b up", isUp("b"))
	a.d.PeerUnreachable("b")
	a.d.PeerUnreachable("nobody")
	a.waitEvent(t, 200*time.Millisecond, "b unreachable", isDown("b", discovery.CauseUnreachable))
	if got := a.d.Snapshot(); len(got) != 0 {
		t.Errorf("members after unreachable: %v", got)
	}
	// Still announcing: back after the hold-down (one TTL), not before.
	start := time.Now()
	a.waitEvent(t, testTTL+time.Second, "b back", isUp("b"))
	if d := time.Since(start); d < testTTL-100*time.Millisecond {
		t.Errorf("b back after %v, before the hold-down", d)
	}
}

func TestStaticPeers(t *testing.T) {
	c := cfg(t, randomID(t, "vol"), "a", 1, 2)
	c.StaticPeers = []string{"10.9.9.9:7000", "peer.example:7001", "[fd00::1]:7002"}
	a := startNode(t, c)
	peers := waitMembers(t, a, 2*time.Second, "static:10.9.9.9:7000", "static:[fd00::1]:7002", "static:peer.example:7001")
	for _, p := range peers {
		if !p.Static || p.VolumeID != c.VolumeID {
			t.Errorf("static peer %+v", p)
		}
	}
	if got := peers[2].APIAddr(); got != "peer.example:7001" {
		t.Errorf("APIAddr %q", got)
	}
	a.d.PeerUnreachable("static:10.9.9.9:7000")
	a.waitEvent(t, time.Second, "static down", isDown("static:10.9.9.9:7000", discovery.CauseUnreachable))
	a.waitEvent(t, testTTL+time.Second, "static back", isUp("static:10.9.9.9:7000"))

	for _, bad := range []string{"nohost", "h:0", "h:99999", ":80"} {
		c.StaticPeers = []string{bad}
		if _, err := discovery.New(c); err == nil {
			t.Errorf("static peer %q accepted", bad)
		}
	}
}

func TestProbe(t *testing.T) {
	vol := randomID(t, "vol")
	a := startNode(t, cfg(t, vol, "a", 1, 2))
	startNode(t, cfg(t, vol, "b", 3, 4))
	waitMembers(t, a, 5*time.Second, "b")

	ctx := context.Background()
	start := time.Now()
	res, err := discovery.Probe(ctx, vol, 500*time.Millisecond, loopback(t))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 2*time.Second {
		t.Errorf("probe took %v", d)
	}
	if !res.InUse() || len(res.Members) != 2 || res.Members[0].NodeID != "a" || res.Members[1].NodeID != "b" {
		t.Errorf("probe of %s: %+v", vol, res)
	}
	res, err = discovery.Probe(ctx, randomID(t, "free"), 500*time.Millisecond, loopback(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.InUse() || len(res.Volumes[vol]) != 2 {
		t.Errorf("probe of a free id: %+v", res)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := discovery.Probe(cctx, vol, time.Second, loopback(t)); err != context.Canceled {
		t.Errorf("canceled probe: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []discovery.Config{
		{Info: discovery.Info{NodeID: "n"}},
		{Info: discovery.Info{VolumeID: "v"}},
		{Info: discovery.Info{VolumeID: "v\x00", NodeID: "n"}},
		{Info: discovery.Info{VolumeID: strings.Repeat("v", 201), NodeID: "n"}},
	} {
		if _, err := discovery.New(c); err == nil {
			t.Errorf("New(%+v) accepted", c.Info)
		}
	}
	d, err := discovery.New(discovery.Config{
		Info:    discovery.Info{VolumeID: "v", NodeID: "n"},
		Network: discovery.Network{Interfaces: []string{"no-such-if0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Serve(context.Background()); err == nil {
		t.Errorf("Serve on a missing interface succeeded")
	}
}

func TestSetPorts(t *testing.T) {
	vol := randomID(t, "vol")
	a := startNode(t, cfg(t, vol, "a", 1, 2))
	b := startNode(t, cfg(t, vol, "b", 3, 4))
	a.waitEvent(t, 5*time.Second, "b up", isUp("b"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.d.SetPorts(ctx, 6881, 8080); err != nil {
		t.Fatal(err)
	}
	ev := a.waitEvent(t, time.Second, "b changed", func(ev discovery.Event) bool {
		return ev.Type == discovery.PeerChanged && ev.Peer.NodeID == "b"
	})
	if ev.Peer.BTPort != 6881 || ev.Peer.APIPort != 8080 {
		t.Errorf("b changed to %+v", ev.Peer)
	}
	b.stop(t)
	if err := b.d.SetPorts(ctx, 1, 1); err != discovery.ErrNotRunning {
		t.Errorf("SetPorts after stop: %v", err)
	}
}
