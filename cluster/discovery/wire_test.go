package discovery

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestInstanceName(t *testing.T) {
	for _, tc := range []struct{ vol, node, want string }{
		{"bigstore", "n1", "bigstore-n1"},
		{"a.b", "n1", "ab-n1-"},
		{strings.Repeat("v", 60), "node", strings.Repeat("v", 46) + "-"},
	} {
		got := InstanceName(tc.vol, tc.node)
		if !strings.HasPrefix(got, tc.want) || len(got) > maxInstanceLen || strings.ContainsAny(got, `.\`) {
			t.Errorf("InstanceName(%q, %q) = %q, want prefix %q", tc.vol, tc.node, got, tc.want)
		}
	}
	if InstanceName(strings.Repeat("v", 60), "a") == InstanceName(strings.Repeat("v", 60), "b") {
		t.Error("shortened names collide")
	}
}

func TestResponseRoundTrip(t *testing.T) {
	in := Info{VolumeID: "bigstore", NodeID: "n1", BTPort: 6881, APIPort: 8080, Format: 1}
	inst := InstanceName(in.VolumeID, in.NodeID)
	addr := netip.MustParseAddr("10.77.0.5")
	src := netip.MustParseAddrPort("10.77.0.5:5353")
	b, err := buildResponse(inst, hostName(in.VolumeID, in.NodeID), in.APIPort, in, addr, 120)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseMessage(b, src)
	if err != nil {
		t.Fatal(err)
	}
	if p.query || len(p.sightings) != 1 {
		t.Fatalf("parsed %+v", p)
	}
	s := p.sightings[0]
	if s.instance != instanceFQDN(inst) || s.goodbye || s.info == nil || *s.info != in || !s.hasSRV ||
		s.port != in.APIPort || !slices.Equal(s.addrs, []netip.Addr{addr}) {
		t.Errorf("sighting %+v", s)
	}

	// A goodbye carries no address record; the source stands in.
	b, err = buildResponse(inst, hostName(in.VolumeID, in.NodeID), in.APIPort, in, addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err = parseMessage(b, netip.MustParseAddrPort("10.77.0.6:5353"))
	if err != nil || len(p.sightings) != 1 || !p.sightings[0].goodbye ||
		p.sightings[0].addrs[0] != netip.MustParseAddr("10.77.0.6") {
		t.Errorf("goodbye parsed %+v, %v", p, err)
	}
}

func TestParseQuery(t *testing.T) {
	q, err := buildQuery()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{"10.0.0.1:5353", true},
		{"10.0.0.1:40000", false}, // legacy querier: answered by unicast
	} {
		p, err := parseMessage(q, netip.MustParseAddrPort(tc.src))
		if err != nil || p.query != tc.want || len(p.sightings) != 0 {
			t.Errorf("query from %s: %+v, %v", tc.src, p, err)
		}
	}
	// The QU bit asks for a unicast answer: it refreshes nobody else.
	msg := dnsmessage.Message{Questions: []dnsmessage.Question{{
		Name: dnsmessage.MustNewName(serviceName), Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET | 1<<15,
	}}}
	b, _ := msg.Pack()
	if p, _ := parseMessage(b, netip.MustParseAddrPort("10.0.0.1:5353")); p.query {
		t.Error("QU query counted")
	}
}

func TestParseIgnoresOthersAndBadTXT(t *testing.T) {
	name := func(s string) dnsmessage.Name { return dnsmessage.MustNewName(s) }
	hdr := func(n string, ty dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: name(n), Type: ty, Class: dnsmessage.ClassINET, TTL: 120}
	}
	inst := "v-n._delugefs._tcp.local."
	msg := dnsmessage.Message{
		Header: dnsmessage.Header{Response: true},
		Answers: []dnsmessage.Resource{
			{Header: hdr("_http._tcp.local.", dnsmessage.TypePTR), Body: &dnsmessage.PTRResource{PTR: name("web._http._tcp.local.")}},
			{Header: hdr(serviceName, dnsmessage.TypePTR), Body: &dnsmessage.PTRResource{PTR: name("x._http._tcp.local.")}},
			{Header: hdr(serviceName, dnsmessage.TypePTR), Body: &dnsmessage.PTRResource{PTR: name(inst)}},
			{Header: hdr("web._http._tcp.local.", dnsmessage.TypeTXT), Body: &dnsmessage.TXTResource{TXT: []string{"vol=v"}}},
			{Header: hdr(inst, dnsmessage.TypeTXT), Body: &dnsmessage.TXTResource{TXT: []string{"vol=v", "node=n", "bt=x", "api=1", "fmt=1"}}},
		},
	}
	b, err := msg.Pack()
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseMessage(b, netip.MustParseAddrPort("10.0.0.1:5353"))
	if err != nil || len(p.sightings) != 1 || p.sightings[0].info != nil || p.sightings[0].instance != inst {
		t.Errorf("parsed %+v, %v", p, err)
	}
	if _, err := parseMessage([]byte{1, 2, 3}, netip.AddrPort{}); err == nil {
		t.Error("garbage parsed")
	}
}

func TestParseTXT(t *testing.T) {
	full := []string{"vol=v", "node=n", "bt=1", "api=2", "fmt=3"}
	if in, ok := parseTXT(append(full, "future=x", "flag")); !ok || in != (Info{"v", "n", 1, 2, 3}) {
		t.Errorf("parseTXT = %+v, %v", in, ok)
	}
	for i := range full {
		if _, ok := parseTXT(slices.Delete(slices.Clone(full), i, i+1)); ok {
			t.Errorf("accepted without %s", full[i])
		}
	}
	for _, bad := range []string{"bt=65536", "api=-1", "fmt=x", "vol=", "node="} {
		txt := append(slices.Clone(full), bad)
		if _, ok := parseTXT(txt); ok {
			t.Errorf("accepted %s", bad)
		}
	}
}

// FuzzParseMessage checks that any datagram parses without panic, and
// that a response built from fuzzed fields parses back to them.
func FuzzParseMessage(f *testing.F) {
	q, _ := buildQuery()
	f.Add(q, "v", "n", uint16(1), uint16(2), uint16(1), uint32(120))
	r, _ := buildResponse("v-n", "dfs-0.local", 2, Info{"v", "n", 1, 2, 1}, netip.MustParseAddr("10.0.0.1"), 120)
	f.Add(r, "bigstore", "node=1", uint16(6881), uint16(8080), uint16(7), uint32(0))
	f.Fuzz(func(t *testing.T, raw []byte, vol, node string, bt, api, format uint16, ttl uint32) {
		src := netip.MustParseAddrPort("10.0.0.9:5353")
		_, _ = parseMessage(raw, src)

		in := Info{VolumeID: vol, NodeID: node, BTPort: bt, APIPort: api, Format: int(format)}
		if in.validate() != nil {
			return
		}
		inst := InstanceName(vol, node)
		b, err := buildResponse(inst, hostName(vol, node), api, in, netip.MustParseAddr("10.0.0.1"), ttl)
		if err != nil {
			t.Fatalf("build %+v: %v", in, err)
		}
		p, err := parseMessage(b, src)
		if err != nil {
			t.Fatalf("parse of built %+v: %v", in, err)
		}
		if len(p.sightings) != 1 {
			t.Fatalf("%+v: %d sightings", in, len(p.sightings))
		}
		s := p.sightings[0]
		if s.info == nil || *s.info != in || s.goodbye != (ttl == 0) || s.port != api {
			t.Fatalf("%+v came back as %+v (info %+v)", in, s, s.info)
		}
	})
}
