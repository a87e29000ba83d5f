package discovery

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func seen(vol, node string, addrs ...string) sighting {
	s := sighting{
		instance: instanceFQDN(InstanceName(vol, node)),
		info:     &Info{VolumeID: vol, NodeID: node, BTPort: 1, APIPort: 2, Format: 1},
		hasSRV:   true,
		port:     2,
		host:     hostName(vol, node) + ".",
	}
	for _, a := range addrs {
		s.addrs = append(s.addrs, netip.MustParseAddr(a))
	}
	return s
}

func bye(vol, node string) sighting {
	s := seen(vol, node)
	s.goodbye = true
	return s
}

// evs renders events compactly: "up b", "down b (goodbye)", "changed b".
func evs(es []Event) string {
	var out []string
	for _, e := range es {
		out = append(out, e.String())
	}
	return strings.Join(out, "; ")
}

func TestTable(t *testing.T) {
	const ttl = time.Second
	type step struct {
		ms     int
		do     func(tb *table, now time.Time) []Event
		want   string
		member string // members after the step, comma-separated
	}
	obs := func(s sighting) func(*table, time.Time) []Event {
		return func(tb *table, now time.Time) []Event { return tb.observe(now, s) }
	}
	expire := func(tb *table, now time.Time) []Event { return tb.expire(now) }
	unreach := func(id string) func(*table, time.Time) []Event {
		return func(tb *table, now time.Time) []Event { return tb.unreachable(now, id) }
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"up, refresh, goodbye", []step{
			{0, obs(seen("v", "b", "10.0.0.2")), "up b", "b"},
			{500, obs(seen("v", "b", "10.0.0.2")), "", "b"},
			{1400, expire, "", "b"},
			{1450, obs(bye("v", "b")), "down b (goodbye)", ""},
			{1460, obs(bye("v", "b")), "", ""},
			{1470, obs(seen("v", "b", "10.0.0.2")), "up b", "b"},
		}},
		{"expiry at exactly the TTL", []step{
			{0, obs(seen("v", "b", "10.0.0.2")), "up b", "b"},
			{999, expire, "", "b"},
			{1000, expire, "down b (expired)", ""},
			{1001, obs(seen("v", "b", "10.0.0.2")), "up b", "b"},
		}},
		{"self and other volumes are not members", []step{
			{0, obs(seen("v", "self", "10.0.0.1")), "", ""},
			{0, obs(seen("w", "b", "10.0.0.2")), "", ""},
			{0, obs(bye("w", "b")), "", ""},
			{0, obs(seen("v", "c", "10.0.0.3")), "up c", "c"},
		}},
		{"unknown instance without TXT is ignored", []step{
			{0, obs(sighting{instance: instanceFQDN("v-b"), addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}), "", ""},
			{0, obs(bye("v", "b")), "", ""},
		}},
		{"addresses come and go", []step{
			{0, obs(seen("v", "b", "10.0.0.2")), "up b", "b"},
			{100, obs(seen("v", "b", "10.0.1.2")), "changed b", "b"},
			{200, obs(seen("v", "b", "10.0.1.2", "10.0.0.2")), "", "b"},
			{900, obs(seen("v", "b", "10.0.1.2")), "", "b"},
			{1200, expire, "changed b", "b"},
			{1900, expire, "down b (expired)", ""},
		}},
		{"ports change", []step{
			{0, obs(seen("v", "b", "10.0.0.2")), "up b", "b"},
			{10, obs(func() sighting { s := seen("v", "b", "10.0.0.2"); s.info.BTPort = 9; return s }()), "changed b", "b"},
		}},
		{"unreachable holds down for the TTL", []step{
			{0, obs(seen("v", "b", "10.0.0.2")), "up b", "b"},
			{0, obs(seen("v", "c", "10.0.0.3")), "up c", "b,c"},
			{100, unreach("b"), "down b (unreachable)", "c"},
			{100, unreach("b"), "", "c"},
			{100, unreach("x"), "", "c"},
			{500, obs(seen("v", "b", "10.0.0.2")), "", "c"},
			{1099, obs(seen("v", "b", "10.0.0.2")), "", "c"},
			{1100, obs(seen("v", "b", "10.0.0.2")), "up b", "b,c"},
		}},
		{"goodbye during hold-down is quiet", []step{
			{0, obs(seen("v", "b", "10.0.0.2")), "up b", "b"},
			{100, unreach("b"), "down b (unreachable)", ""},
			{200, obs(bye("v", "b")), "", ""},
		}},
		{"static peers", []step{
			{0, func(tb *table, now time.Time) []Event { return tb.addStatic(now, "10.0.0.9", 7000) }, "up static:10.0.0.9:7000", "static:10.0.0.9:7000"},
			{0, func(tb *table, now time.Time) []Event { return tb.addStatic(now, "10.0.0.9", 7000) }, "", "static:10.0.0.9:7000"},
			{60000, expire, "", "static:10.0.0.9:7000"},
			{60000, unreach("static:10.0.0.9:7000"), "down static:10.0.0.9:7000 (unreachable)", ""},
			{60500, expire, "", ""},
			{61000, expire, "up static:10.0.0.9:7000", "static:10.0.0.9:7000"},
		}},
		{"stop", []step{
			{0, obs(seen("v", "b", "10.0.0.2")), "up b", "b"},
			{0, obs(seen("w", "c", "10.0.0.3")), "", "b"},
			{0, func(tb *table, _ time.Time) []Event { return tb.stop() }, "down b (stopped)", ""},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable("v", instanceFQDN(InstanceName("v", "self")), ttl, ttl)
			for i, st := range tc.steps {
				got := evs(st.do(tb, at(st.ms)))
				if got != st.want {
					t.Fatalf("step %d at %dms: events %q, want %q", i, st.ms, got, st.want)
				}
				var ids []string
				for _, p := range tb.members() {
					ids = append(ids, p.NodeID)
				}
				if m := strings.Join(ids, ","); m != st.member {
					t.Fatalf("step %d at %dms: members %q, want %q", i, st.ms, m, st.member)
				}
			}
		})
	}
}

func TestTableDeadlineAndVolumes(t *testing.T) {
	tb := newTable("v", "", time.Second, time.Second)
	if !tb.nextDeadline().IsZero() {
		t.Fatal("deadline on an empty table")
	}
	tb.observe(at(0), seen("v", "b", "10.0.0.2"))
	tb.observe(at(300), seen("w", "c", "10.0.0.3"))
	tb.observe(at(400), seen("v", "b", "10.0.0.2"))
	if got := tb.nextDeadline(); !got.Equal(at(1300)) {
		t.Errorf("deadline %v, want %v", got, at(1300))
	}
	vols := tb.volumes()
	if len(vols) != 2 || len(vols["v"]) != 1 || vols["w"][0].NodeID != "c" {
		t.Errorf("volumes %v", vols)
	}
	p := tb.members()[0]
	if p.Instance != InstanceName("v", "b") || p.Host != hostName("v", "b")+"." ||
		!slices.Equal(p.Addrs, []netip.Addr{netip.MustParseAddr("10.0.0.2")}) || !p.LastSeen.Equal(at(400)) {
		t.Errorf("member %+v", p)
	}
	if got := p.BTAddr().String(); got != "10.0.0.2:1" {
		t.Errorf("BTAddr %s", got)
	}
}

func TestTableBounded(t *testing.T) {
	tb := newTable("v", "", time.Second, time.Second)
	for i := range maxEntries + 10 {
		tb.observe(at(0), seen("w", strings.Repeat("n", 1+i%7)+string(rune('a'+i%26))+strconv.Itoa(i)))
	}
	if len(tb.entries) != maxEntries {
		t.Errorf("%d entries", len(tb.entries))
	}
}
