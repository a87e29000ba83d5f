//go:build linux

package discovery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/delugefs/delugefs/cluster/discovery"
	"github.com/delugefs/delugefs/cluster/discovery/netnstest"
)

// hostView follows one child's events and keeps its member table.
type hostView struct {
	name    string
	p       *netnstest.Proc
	members map[string]discovery.Peer
}

// until reads the child's events until cond holds for its members, for at
// most d, and returns the event that made it hold (zero if it held
// already).
func (v *hostView) until(t *testing.T, d time.Duration, what string, cond func(map[string]discovery.Peer, discovery.Event) bool) discovery.Event {
	t.Helper()
	if cond(v.members, discovery.Event{}) {
		return discovery.Event{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		line, err := v.p.WaitLine(ctx, func(l string) bool { return strings.HasPrefix(l, "{") })
		if err != nil {
			t.Fatalf("%s: no %s within %v (members %v): %v", v.name, what, d, keys(v.members), err)
		}
		var ev discovery.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%s: bad event %q: %v", v.name, line, err)
		}
		switch ev.Type {
		case discovery.PeerUp, discovery.PeerChanged:
			v.members[ev.Peer.NodeID] = ev.Peer
		case discovery.PeerDown:
			delete(v.members, ev.Peer.NodeID)
		}
		if cond(v.members, ev) {
			return ev
		}
	}
}

func keys(m map[string]discovery.Peer) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func hasExactly(ids ...string) func(map[string]discovery.Peer, discovery.Event) bool {
	return func(m map[string]discovery.Peer, _ discovery.Event) bool {
		if len(m) != len(ids) {
			return false
		}
		for _, id := range ids {
			if _, ok := m[id]; !ok {
				return false
			}
		}
		return true
	}
}

func downEvent(id string) func(map[string]discovery.Peer, discovery.Event) bool {
	return func(_ map[string]discovery.Peer, ev discovery.Event) bool {
		return ev.Type == discovery.PeerDown && ev.Peer.NodeID == id
	}
}

// TestRealHosts runs one discovery child in each of three network
// namespaces on a bridge, with the default interface choice (so eth0
// only), and checks discovery by real multicast, a host cut off, its
// return, a killed host and a clean stop.
func TestRealHosts(t *testing.T) {
	nw := netnstest.New(t, 3)
	vol := randomID(t, "vol")
	ids := []string{"n0", "n1", "n2"}
	views := make([]*hostView, 3)
	for i, h := range nw.Hosts {
		p := h.StartChild("discovery", "-vol", vol, "-node", ids[i],
			"-bt", fmt.Sprint(6880+i), "-api", fmt.Sprint(7000+i),
			"-interval", testInterval.String(), "-ttl", testTTL.String())
		views[i] = &hostView{name: h.NS, p: p, members: map[string]discovery.Peer{}}
	}
	others := func(i int) []string {
		var out []string
		for j, id := range ids {
			if j != i {
				out = append(out, id)
			}
		}
		return out
	}

	start := time.Now()
	for i, v := range views {
		v.until(t, 10*time.Second, "the other two", hasExactly(others(i)...))
		for j, id := range ids {
			if j == i {
				continue
			}
			p := v.members[id]
			if len(p.Addrs) != 1 || p.Addrs[0] != nw.Hosts[j].Addr || p.BTPort != uint16(6880+j) ||
				p.APIPort != uint16(7000+j) || p.VolumeID != vol {
				t.Errorf("%s sees %s as %+v", v.name, id, p)
			}
		}
	}
	t.Logf("three hosts found each other in %v", time.Since(start))

	// Cut host 2 off: both sides expire the other within the TTL.
	if err := nw.Hosts[2].Cut(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	limit := testTTL + 700*time.Millisecond
	for _, i := range []int{0, 1} {
		ev := views[i].until(t, limit, "n2 down", downEvent("n2"))
		if ev.Cause != discovery.CauseExpired {
			t.Errorf("%s: n2 down by %v", views[i].name, ev.Cause)
		}
	}
	views[2].until(t, limit, "n0 and n1 gone", hasExactly())
	t.Logf("cut-off host noticed after %v (TTL %v)", time.Since(cut), testTTL)

	// Back on the network: found again.
	if err := nw.Hosts[2].Restore(); err != nil {
		t.Fatal(err)
	}
	for i, v := range views {
		v.until(t, 10*time.Second, "all again", hasExactly(others(i)...))
	}

	// Kill host 1's node: no goodbye, it expires.
	views[1].p.Kill()
	killed := time.Now()
	for _, i := range []int{0, 2} {
		ev := views[i].until(t, limit, "n1 down", downEvent("n1"))
		if ev.Cause != discovery.CauseExpired {
			t.Errorf("%s: n1 down by %v", views[i].name, ev.Cause)
		}
	}
	t.Logf("killed host noticed after %v", time.Since(killed))

	// Stop host 2's node cleanly: its goodbye is heard at once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stopped := time.Now()
	stopErr := make(chan error, 1)
	go func() { stopErr <- views[2].p.Stop(ctx) }() // a -race child lingers 1 s at exit
	ev := views[0].until(t, time.Second, "n2's goodbye", downEvent("n2"))
	if ev.Cause != discovery.CauseGoodbye {
		t.Errorf("n2 down by %v", ev.Cause)
	}
	noticed := time.Since(stopped)
	if err := <-stopErr; err != nil {
		t.Errorf("stop n2: %v", err)
	}
	t.Logf("clean stop noticed after %v", noticed)
}

// TestNetnsCleanup checks that a Net leaves nothing behind, and that
// Clean removes the namespaces of dead runs and only those.
func TestNetnsCleanup(t *testing.T) {
	var names []string
	t.Run("net", func(t *testing.T) {
		nw := netnstest.New(t, 2)
		names = append(names, nw.Switch)
		for _, h := range nw.Hosts {
			names = append(names, h.NS)
		}
		out, err := nw.Hosts[0].Run(context.Background(), "ping", "-c1", "-W2", nw.Hosts[1].Addr.String())
		if err != nil {
			// ping may be missing; the discovery test covers reachability.
			if _, lerr := exec.LookPath("ping"); lerr == nil {
				t.Errorf("ping across the bridge: %v\n%s", err, out)
			}
		}
		routes, err := nw.Hosts[0].Run(context.Background(), "ip", "route")
		if err != nil || strings.Contains(string(routes), "default") {
			t.Errorf("routes in a host: %s %v", routes, err)
		}
		// A process left running is killed by the cleanup.
		nw.Start(nw.Hosts[1].Command(context.Background(), "sleep", "600"))
	})
	list := netnsList(t)
	for _, n := range names {
		if strings.Contains(list, n) {
			t.Errorf("namespace %s left behind", n)
		}
	}

	// A dead run's leftover (pid above any pid_max) goes; a live one stays.
	dead := netnstest.Prefix + "999999999-1-h0"
	live := netnstest.Prefix + fmt.Sprint(1) + "-424242-h0" // pid 1 is alive
	for _, n := range []string{dead, live} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", live).Run() })
	if err := netnstest.Clean(); err != nil {
		t.Fatal(err)
	}
	list = netnsList(t)
	if strings.Contains(list, dead) || !strings.Contains(list, live) {
		t.Errorf("after Clean: %s", list)
	}
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v %s", err, out)
	}
	return string(out)
}

// TestRealHostsSharedHost runs two nodes on one host (as one process
// with two disks would) and one on another: all find each other, the
// two neighbours through the multicast loopback of their real link.
func TestRealHostsSharedHost(t *testing.T) {
	nw := netnstest.New(t, 2)
	vol := randomID(t, "vol")
	type run struct {
		host int
		id   string
	}
	runs := []run{{0, "n0"}, {0, "n0b"}, {1, "n1"}}
	var views []*hostView
	for _, r := range runs {
		p := nw.Hosts[r.host].StartChild("discovery", "-vol", vol, "-node", r.id,
			"-interval", testInterval.String(), "-ttl", testTTL.String())
		views = append(views, &hostView{name: r.id, p: p, members: map[string]discovery.Peer{}})
	}
	for i, v := range views {
		var want []string
		for j, r := range runs {
			if j != i {
				want = append(want, r.id)
			}
		}
		v.until(t, 10*time.Second, "the other two", hasExactly(want...))
		for j, r := range runs {
			if j == i {
				continue
			}
			if p := v.members[r.id]; len(p.Addrs) != 1 || p.Addrs[0] != nw.Hosts[r.host].Addr {
				t.Errorf("%s sees %s at %v, want %v", v.name, r.id, p.Addrs, nw.Hosts[r.host].Addr)
			}
		}
	}
}
