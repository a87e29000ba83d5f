package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delugefs/delugefs/actors"
	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/piece"
)

// Swarms runs one swarm per blob the node reads from peers or serves to
// them, each a child of the node's supervisor, registered with the process's
// swarm registry so its listener routes inbound connections to it. It is the
// fs's Remote: a read of a blob that is not complete here joins the blob's
// swarm and returns as soon as the pieces it covers are verified.
//
// Its methods are safe for concurrent use.
type Swarms struct {
	store *piece.Store
	reg   *swarm.Registry
	dht   PeerFinder
	port  int // BitTorrent port announced on the DHT
	kids  *actors.Children[bt.InfoHash]
	cfg   swarm.Config
	log   *slog.Logger

	mu    sync.Mutex // guards peers and the creation of swarms
	peers []string   // BitTorrent addresses of the volume's other nodes

	// hosts holds the hosts of peers, read by the swarms' choking rounds
	// without taking mu (a swarm may be busy while AddPeer holds mu).
	hosts atomic.Pointer[map[string]bool]
}

// SwarmOptions configure a node's swarms.
type SwarmOptions struct {
	// Registry is the process's registry (one listener per process); nil
	// makes one for this node alone.
	Registry *swarm.Registry
	// ListenPort is the BitTorrent port announced to peers (0: none).
	ListenPort int
	// Peers are the BitTorrent addresses (host:port) of other nodes of the
	// volume, tried for every blob.
	Peers []string
	// NoPeerWait bounds a read no connected peer can serve (default 10 s).
	NoPeerWait time.Duration
	// DHT, when set, is asked for more peers of each blob fetched (peers
	// beyond the volume's nodes: stock clients, nodes not found yet) and
	// told of each blob that is complete here.
	DHT PeerFinder
}

// PeerFinder finds the peers of a blob (the mainline DHT: bt/dht.Server).
type PeerFinder interface {
	GetPeers(ctx context.Context, h bt.InfoHash, found func(netip.AddrPort)) error
	Announce(ctx context.Context, h bt.InfoHash, port int) error
}

func newSwarms(store *piece.Store, sup *actors.Supervisor, o SwarmOptions, log *slog.Logger) *Swarms {
	if o.Registry == nil {
		o.Registry = swarm.NewRegistry()
	}
	s := &Swarms{
		store: store,
		reg:   o.Registry,
		kids:  actors.NewChildren[bt.InfoHash](sup),
		cfg: swarm.Config{
			Store:      store,
			Logger:     log,
			ListenPort: o.ListenPort,
			NoPeerWait: o.NoPeerWait,
		},
		log:  log,
		dht:  o.DHT,
		port: o.ListenPort,
	}
	// The volume's own nodes are always unchoked: a stream from another
	// disk must never wait for a choke round.
	s.cfg.Trusted = s.isPeer
	s.hosts.Store(&map[string]bool{})
	for _, p := range o.Peers {
		s.AddPeer(p)
	}
	return s
}

// isPeer reports whether addr is on a host of the volume's nodes.
func (s *Swarms) isPeer(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && (*s.hosts.Load())[host]
}

// AddPeer adds the BitTorrent address of another node of the volume; every
// swarm, running or started later, tries it.
func (s *Swarms) AddPeer(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		if p == addr {
			return
		}
	}
	s.peers = append(s.peers, addr)
	hosts := map[string]bool{}
	for _, p := range s.peers {
		if h, _, err := net.SplitHostPort(p); err == nil {
			hosts[h] = true
		}
	}
	s.hosts.Store(&hosts)
	for _, h := range s.kids.Keys() {
		if sw := s.reg.Get(h); sw != nil {
			sw.AddPeer(addr)
		}
	}
}

// Ensure returns the running swarm of info's blob, starting one if there is
// none: a complete local blob is seeded, a partial one resumed, a missing
// one fetched from the peers.
func (s *Swarms) Ensure(info *bt.Info) (*swarm.Swarm, error) {
	h := info.Hash()
	if sw := s.ours(h); sw != nil {
		return sw, nil
	}
	if !s.store.Has(h) {
		// Another disk of this process may run the blob's swarm or hold
		// it complete (the registry's resolver then starts that node's
		// seed): the registry holds one swarm per blob per process, and
		// reading through a sibling's seed is a pread on its disk. Asked
		// without s.mu: the resolver takes the other node's.
		if sw := s.reg.Resolve(h); sw != nil {
			return sw, nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sw := s.ours(h); sw != nil {
		return sw, nil // started meanwhile
	}
	sw, err := swarm.New(info, s.cfg)
	if err != nil {
		return nil, fmt.Errorf("node: swarm %s: %w", h, err)
	}
	s.reg.Add(sw)
	s.kids.Ensure(h, func() actors.Service {
		return actors.Func("swarm "+h.String()[:12], func(ctx context.Context) error {
			if s.dht != nil {
				go s.useDHT(ctx, sw) // ends with ctx
			}
			return sw.Serve(ctx)
		})
	})
	for _, p := range s.peers {
		sw.AddPeer(p)
	}
	return sw, nil
}

// ours returns this node's running swarm of h, or nil.
func (s *Swarms) ours(h bt.InfoHash) *swarm.Swarm {
	if sw := s.reg.Get(h); sw != nil {
		if _, ok := s.kids.Get(h); ok {
			return sw
		}
	}
	return nil
}

// ReadAt reads len(p) bytes at off of info's blob through its swarm. It is
// the fs's Remote.
func (s *Swarms) ReadAt(ctx context.Context, info *bt.Info, p []byte, off int64) (int, error) {
	sw, err := s.Ensure(info)
	if err != nil {
		return 0, err
	}
	return sw.ReadAt(ctx, p, off)
}

// Len returns the number of running swarms.
func (s *Swarms) Len() int { return s.kids.Len() }

// Active returns the node's running swarms.
func (s *Swarms) Active() []*swarm.Swarm {
	var out []*swarm.Swarm
	for _, h := range s.kids.Keys() {
		if sw := s.reg.Get(h); sw != nil {
			out = append(out, sw)
		}
	}
	return out
}

// Peers returns the BitTorrent addresses every swarm tries.
func (s *Swarms) Peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.peers)
}

// OpenRemote returns a reader of info's blob through its swarm, for one
// open file: its sequential reads grow a read-ahead window, a seek moves
// it (fs.RemoteOpener).
func (s *Swarms) OpenRemote(info *bt.Info) (fs.RemoteReader, error) {
	sw, err := s.Ensure(info)
	if err != nil {
		return nil, err
	}
	return sw.NewReader(), nil
}

// useDHT asks the DHT for peers of sw's blob while it is incomplete, and
// announces it once complete; it runs until ctx ends or it has announced.
func (s *Swarms) useDHT(ctx context.Context, sw *swarm.Swarm) {
	h := sw.InfoHash()
	select {
	case <-sw.Done():
	default:
		err := s.dht.GetPeers(ctx, h, func(ap netip.AddrPort) {
			sw.AddPeer(ap.String())
		})
		if err != nil && ctx.Err() == nil {
			s.log.Debug("dht get_peers", "infohash", h, "err", err)
		}
	}
	select {
	case <-ctx.Done():
		return
	case <-sw.Done():
	}
	if s.port == 0 {
		return
	}
	if err := s.dht.Announce(ctx, h, s.port); err != nil && ctx.Err() == nil {
		s.log.Debug("dht announce", "infohash", h, "err", err)
	}
}
