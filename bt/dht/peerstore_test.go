package dht

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
)

func nodeAddr(s string) krpc.NodeAddr {
	var na krpc.NodeAddr
	na.FromAddrPort(netip.MustParseAddrPort(s))
	return na
}

func peersOf(p *peerStore, ih peer_store.InfoHash) []string {
	var out []string
	for _, na := range p.GetPeers(ih) {
		out = append(out, na.String())
	}
	slices.Sort(out)
	return out
}

func TestPeerStore(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPeerStore(time.Minute, 2, 2, func() time.Time { return now })
	h1, h2, h3 := peer_store.InfoHash{1}, peer_store.InfoHash{2}, peer_store.InfoHash{3}

	// Same IP, two ports: both kept (anacrolix's store keeps one per IP).
	p.AddPeer(h1, nodeAddr("10.0.0.1:6881"))
	now = now.Add(time.Second)
	p.AddPeer(h1, nodeAddr("10.0.0.1:6882"))
	if got, want := peersOf(p, h1), []string{"10.0.0.1:6881", "10.0.0.1:6882"}; !slices.Equal(got, want) {
		t.Fatalf("peers = %v, want %v", got, want)
	}
	// A third peer pushes out the oldest; a port-0 peer is refused.
	now = now.Add(time.Second)
	p.AddPeer(h1, nodeAddr("10.0.0.2:6881"))
	p.AddPeer(h1, nodeAddr("10.0.0.3:0"))
	if got, want := peersOf(p, h1), []string{"10.0.0.1:6882", "10.0.0.2:6881"}; !slices.Equal(got, want) {
		t.Fatalf("after bound: peers = %v, want %v", got, want)
	}
	// Two hashes at most: the third is refused while the others live.
	p.AddPeer(h2, nodeAddr("10.0.0.4:1"))
	p.AddPeer(h3, nodeAddr("10.0.0.5:1"))
	if got := peersOf(p, h3); got != nil {
		t.Fatalf("third hash stored: %v", got)
	}
	if p.Len() != 3 {
		t.Fatalf("Len = %d, want 3", p.Len())
	}
	// After the TTL every peer is gone, and room is made for new hashes.
	now = now.Add(2 * time.Minute)
	p.AddPeer(h3, nodeAddr("10.0.0.5:1"))
	if got, want := peersOf(p, h3), []string{"10.0.0.5:1"}; !slices.Equal(got, want) {
		t.Fatalf("after expiry: h3 peers = %v, want %v", got, want)
	}
	if got := peersOf(p, h1); got != nil {
		t.Fatalf("expired peers returned: %v", got)
	}
}
