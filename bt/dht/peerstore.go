package dht

import (
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
)

// peerStore keeps the peers other nodes announce to us. Unlike anacrolix's
// InMemory store, which keeps one peer per IP, it keys peers by IP and port,
// so several DelugeFS nodes on one host all stay listed. It is bounded: per
// hash the oldest peer makes room, and a new hash is refused when full.
type peerStore struct {
	ttl       time.Duration
	perHash   int
	maxHashes int
	now       func() time.Time

	mu     sync.Mutex // guards byHash
	byHash map[peer_store.InfoHash]map[netip.AddrPort]time.Time
}

var _ peer_store.Interface = (*peerStore)(nil)

func newPeerStore(ttl time.Duration, perHash, maxHashes int, now func() time.Time) *peerStore {
	return &peerStore{ttl: ttl, perHash: perHash, maxHashes: maxHashes, now: now,
		byHash: make(map[peer_store.InfoHash]map[netip.AddrPort]time.Time)}
}

// AddPeer records na as a peer of ih (anacrolix calls it on announce_peer).
func (p *peerStore) AddPeer(ih peer_store.InfoHash, na krpc.NodeAddr) {
	ap := na.ToNodeAddrPort().AddrPort
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.IsValid() || ap.Port() == 0 {
		return
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	peers := p.byHash[ih]
	if peers == nil {
		if len(p.byHash) >= p.maxHashes {
			p.expireLocked(now)
			if len(p.byHash) >= p.maxHashes {
				return
			}
		}
		peers = make(map[netip.AddrPort]time.Time)
		p.byHash[ih] = peers
	}
	if _, ok := peers[ap]; !ok && len(peers) >= p.perHash {
		var oldest netip.AddrPort
		var oldestT time.Time
		for a, t := range peers {
			if oldestT.IsZero() || t.Before(oldestT) {
				oldest, oldestT = a, t
			}
		}
		delete(peers, oldest)
	}
	peers[ap] = now
}

// GetPeers returns the live peers of ih (anacrolix calls it on get_peers).
func (p *peerStore) GetPeers(ih peer_store.InfoHash) []krpc.NodeAddr {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []krpc.NodeAddr
	for a, t := range p.byHash[ih] {
		if now.Sub(t) > p.ttl {
			delete(p.byHash[ih], a)
			continue
		}
		var na krpc.NodeAddr
		na.FromAddrPort(a)
		out = append(out, na)
	}
	if len(p.byHash[ih]) == 0 {
		delete(p.byHash, ih)
	}
	return out
}

// Len returns the number of peers stored, expired ones included.
func (p *peerStore) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, peers := range p.byHash {
		n += len(peers)
	}
	return n
}

// expireLocked drops expired peers and empty hashes; p.mu must be held.
func (p *peerStore) expireLocked(now time.Time) {
	for ih, peers := range p.byHash {
		for a, t := range peers {
			if now.Sub(t) > p.ttl {
				delete(peers, a)
			}
		}
		if len(peers) == 0 {
			delete(p.byHash, ih)
		}
	}
}
