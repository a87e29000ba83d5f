package dht

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	anacdht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/time/rate"
)

// Errors callers branch on (errors.Is).
var (
	// ErrClosed is returned by Serve and the lookups after Close.
	ErrClosed = errors.New("dht: closed")
	// ErrServing is returned by Serve when it is already running.
	ErrServing = errors.New("dht: already serving")
	// ErrStopped is returned by a lookup cut short because Serve stopped.
	ErrStopped = errors.New("dht: server stopped")
	// ErrNoNodes is returned by a lookup when the DHT knows no node to ask:
	// nothing was given, nothing learned yet, and the public DHT is off.
	ErrNoNodes = errors.New("dht: no nodes to start from")
	// ErrNoResponse is returned by a lookup that no node answered.
	ErrNoResponse = errors.New("dht: no node answered")
)

// Config configures a Server. The zero value of every field but Addr (or
// Conn) is a sensible default.
type Config struct {
	// Addr is the UDP address to listen on, such as "0.0.0.0:6881" or, in
	// tests, "127.0.0.1:0".
	Addr string
	// Conn, if set, is used instead of listening on Addr. The Server closes
	// it when Serve returns; a Server with a Conn cannot Serve twice. Do not
	// close it yourself while Serve runs (anacrolix panics on a read error).
	Conn net.PacketConn
	// NodeID is this node's DHT id. Zero picks a random one at New, kept for
	// the Server's life. Pass NodeIDFromString(nodeID) for an id that
	// survives restarts.
	NodeID [20]byte
	// Bootstrap lists the UDP addresses of DHT nodes to start from: cluster
	// peers, or a test's own nodes. They are the only starting points unless
	// PublicBootstrap is set.
	Bootstrap []netip.AddrPort
	// PublicBootstrap adds the public mainline DHT routers
	// (router.bittorrent.com and others, resolved by DNS) to the starting
	// points. Off by default; never set it in tests.
	PublicBootstrap bool
	// LookupTimeout bounds every Announce and GetPeers (default 30 s).
	LookupTimeout time.Duration
	// QueryTimeout is how long one query waits for its answer (default 2 s).
	QueryTimeout time.Duration
	// SendRate caps outgoing queries and replies, in packets per second
	// (default 100), with a burst of the same size.
	SendRate float64
	// Logger receives anacrolix's log lines at Info and above (default: none).
	Logger *slog.Logger
	// PeerTTL is how long a peer announced to this node stays listed
	// (default 30 min, as BEP 5 suggests).
	PeerTTL time.Duration
	// MaxPeersPerHash and MaxHashes bound the peers this node stores for
	// others (defaults 200 and 10000).
	MaxPeersPerHash, MaxHashes int
}

// NodeIDFromString derives a stable DHT node id from a string, such as a
// DelugeFS node id: the SHA-1 of its bytes.
func NodeIDFromString(s string) [20]byte { return sha1.Sum([]byte(s)) }

// Server is one DHT node. Create it with New, run it with Serve.
type Server struct {
	cfg    Config         // defaults applied; read-only after New
	id     [20]byte       // read-only after New
	addr   netip.AddrPort // the bound address; read-only after New
	peers  *peerStore     // peers announced to us; outlives restarts of Serve
	public func() ([]anacdht.Addr, error)

	mu      sync.Mutex       // guards the fields below
	conn    net.PacketConn   // the socket for the next Serve; nil while serving
	serving bool             // between the start and the end of Serve
	srv     *anacdht.Server  // the running anacrolix server; nil when not serving
	srvCtx  context.Context  // Serve's context while srv is set
	up      chan struct{}    // closed when srv is set (or on Close)
	kick    chan struct{}    // 1-buffered: Serve has a node to maintain its table with
	closed  bool             // Close was called
	nodes   []netip.AddrPort // starting points: Bootstrap then AddNode, no duplicates, not s.addr
	ops     sync.WaitGroup   // lookups and pings running on srv; Add only while srv != nil

	announces, lookups, found, acks, received atomic.Int64
}

// New binds the UDP socket (so Addr is known at once) and returns a Server
// ready to Serve.
func New(cfg Config) (*Server, error) {
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 30 * time.Second
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 2 * time.Second
	}
	if cfg.SendRate <= 0 {
		cfg.SendRate = 100
	}
	if cfg.PeerTTL <= 0 {
		cfg.PeerTTL = 30 * time.Minute
	}
	if cfg.MaxPeersPerHash <= 0 {
		cfg.MaxPeersPerHash = 200
	}
	if cfg.MaxHashes <= 0 {
		cfg.MaxHashes = 10000
	}
	s := &Server{
		cfg:    cfg,
		id:     cfg.NodeID,
		up:     make(chan struct{}),
		kick:   make(chan struct{}, 1),
		public: func() ([]anacdht.Addr, error) { return anacdht.GlobalBootstrapAddrs("udp") },
	}
	s.peers = newPeerStore(cfg.PeerTTL, cfg.MaxPeersPerHash, cfg.MaxHashes, time.Now)
	if s.id == ([20]byte{}) {
		rand.Read(s.id[:])
	}
	conn := cfg.Conn
	if conn == nil {
		var err error
		conn, err = net.ListenPacket("udp", cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("dht: listen on %q: %w", cfg.Addr, err)
		}
	}
	ua, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("dht: socket address %v is not UDP", conn.LocalAddr())
	}
	s.addr = ua.AddrPort()
	s.conn = conn
	for _, a := range cfg.Bootstrap {
		s.addNodeLocked(a)
	}
	return s, nil
}

// Addr returns the UDP address the Server listens on.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// ID returns the Server's DHT node id.
func (s *Server) ID() [20]byte { return s.id }

// Serve runs the DHT node until ctx ends, then stops every lookup in flight,
// closes the socket and returns ctx.Err() once none of its queries is
// outstanding. It may be called again after it returns (the same address is
// bound again), but not concurrently.
func (s *Server) Serve(ctx context.Context) error {
	conn, err := s.takeSocket()
	if err != nil {
		return err
	}
	srv, err := anacdht.NewServer(s.serverConfig(conn))
	if err != nil {
		conn.Close()
		s.mu.Lock()
		s.serving = false
		s.mu.Unlock()
		return fmt.Errorf("dht: start server: %w", err)
	}
	s.mu.Lock()
	if s.closed { // Close ran since takeSocket
		s.serving = false
		s.mu.Unlock()
		srv.Close()
		conn.Close()
		return ErrClosed
	}
	s.srv, s.srvCtx = srv, ctx
	close(s.up)
	nodes := slices.Clone(s.nodes)
	s.mu.Unlock()

	for _, n := range nodes {
		s.pingAsync(n)
	}
	// anacrolix's table maintainer (bootstrap every 30 min, ping questionable
	// nodes, refresh buckets) starts once there is a node to talk to: its
	// bootstrap leaks a goroutine whenever it finds no starting node.
	var maint sync.WaitGroup
	maintaining := false
	startMaintainer := func() {
		if maintaining {
			return
		}
		maintaining = true
		maint.Add(1)
		go func() { // returns once srv is closed, at the end of its current round
			defer maint.Done()
			srv.TableMaintainer()
		}()
	}
	if len(nodes) > 0 || s.cfg.PublicBootstrap {
		startMaintainer()
	}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-s.kick: // a node was added, or another node queried us
			startMaintainer()
		}
	}
	s.mu.Lock()
	s.srv, s.srvCtx = nil, nil
	if !s.closed {
		s.up = make(chan struct{})
	}
	s.mu.Unlock()
	srv.Close()
	conn.Close() // anacrolix closes it in a goroutine; a restart must find the port free
	s.ops.Wait()
	maint.Wait()
	// Queries anacrolix runs with no context of ours (bootstrap, bucket
	// refresh) end within QueryTimeout once the socket is closed.
	deadline := time.Now().Add(s.cfg.QueryTimeout + time.Second)
	for srv.Stats().OutstandingTransactions > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	s.serving = false
	s.mu.Unlock()
	return ctx.Err()
}

// takeSocket hands the socket to a starting Serve, binding s.addr again
// after a previous Serve closed it.
func (s *Server) takeSocket() (net.PacketConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, ErrClosed
	case s.serving:
		return nil, ErrServing
	}
	if s.conn == nil {
		if s.cfg.Conn != nil {
			return nil, fmt.Errorf("dht: serve again: the given socket is closed: %w", ErrClosed)
		}
		conn, err := net.ListenPacket("udp", s.addr.String())
		if err != nil {
			return nil, fmt.Errorf("dht: listen again on %s: %w", s.addr, err)
		}
		s.conn = conn
	}
	conn := s.conn
	s.conn = nil
	s.serving = true
	return conn, nil
}

// Close releases the socket of a Server that is not serving and makes later
// calls fail with ErrClosed. To stop a running Server, end Serve's context.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.srv == nil {
		close(s.up) // wakes lookups waiting for Serve; they see closed
	}
	if s.conn != nil {
		err := s.conn.Close()
		s.conn = nil
		if err != nil {
			return fmt.Errorf("dht: close socket: %w", err)
		}
	}
	return nil
}

// serverConfig is the whole configuration handed to anacrolix: every field
// that could make it contact a node it was not given is set here.
func (s *Server) serverConfig(conn net.PacketConn) *anacdht.ServerConfig {
	return &anacdht.ServerConfig{
		NodeId: s.id,
		Conn:   conn,
		// Node ids are stable and chosen by us, not derived from public IPs
		// (BEP 42); cluster peers sit on private addresses anyway.
		NoSecurity: true,
		// Without this anacrolix falls back on the public routers.
		StartingNodes: s.startingNodes,
		PeerStore:     s.peers,
		OnQuery: func(*krpc.Msg, net.Addr) bool {
			s.wake() // the querier is in our table now
			return true
		},
		OnAnnouncePeer: func(_ metainfo.Hash, _ net.IP, _ int, portOk bool) {
			if portOk {
				s.received.Add(1)
			}
		},
		QueryResendDelay: func() time.Duration { return s.cfg.QueryTimeout },
		DefaultWant:      []krpc.Want{krpc.WantNodes, krpc.WantNodes6},
		// Our own limiter: anacrolix's default is one global for the process.
		SendLimiter: rate.NewLimiter(rate.Limit(s.cfg.SendRate), int(s.cfg.SendRate)),
		Logger:      newLogger(s.cfg.Logger),
	}
}

// startingNodes is anacrolix's StartingNodes: the nodes we were given, and
// the public routers only when the operator opted in.
func (s *Server) startingNodes() ([]anacdht.Addr, error) {
	s.mu.Lock()
	nodes := slices.Clone(s.nodes)
	s.mu.Unlock()
	addrs := make([]anacdht.Addr, 0, len(nodes))
	for _, n := range nodes {
		addrs = append(addrs, anacdht.NewAddr(net.UDPAddrFromAddrPort(n)))
	}
	if s.cfg.PublicBootstrap {
		pub, err := s.public()
		if err != nil && len(addrs) == 0 {
			return nil, fmt.Errorf("dht: resolve public bootstrap routers: %w", err)
		}
		addrs = append(addrs, pub...)
	}
	return addrs, nil
}

// AddNode adds a DHT node learned later (a cluster peer found by discovery)
// to the starting points and, while serving, pings it so it enters the
// routing table once it answers. Invalid addresses and our own are ignored.
func (s *Server) AddNode(addr netip.AddrPort) {
	s.mu.Lock()
	added := s.addNodeLocked(addr)
	s.mu.Unlock()
	if added {
		s.wake()
		s.pingAsync(addr)
	}
}

// wake tells Serve that there is a node to talk to (coalesced).
func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// addNodeLocked records addr as a starting point; it reports whether addr
// was new. s.mu must be held (or s not yet shared).
func (s *Server) addNodeLocked(addr netip.AddrPort) bool {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !addr.IsValid() || addr.Port() == 0 || addr.Addr().IsUnspecified() || addr == s.addr ||
		slices.Contains(s.nodes, addr) {
		return false
	}
	s.nodes = append(s.nodes, addr)
	return true
}

// pingAsync pings addr on the running server, if any, in a goroutine that
// Serve waits for (s.ops); the answer puts the node in the routing table.
func (s *Server) pingAsync(addr netip.AddrPort) {
	o, ok := s.tryBegin()
	if !ok {
		return // not serving: Serve pings every starting point when it starts
	}
	go func() { // ends with the ping: an answer, QueryTimeout or Serve stopping
		defer o.end()
		o.srv.Query(o.ctx, anacdht.NewAddr(net.UDPAddrFromAddrPort(addr)), "ping", anacdht.QueryInput{NumTries: 2})
	}()
}

// op is one operation (lookup or ping) on the running anacrolix server.
type op struct {
	s      *Server
	srv    *anacdht.Server
	srvCtx context.Context    // Serve's context
	ctx    context.Context    // ends with srvCtx, after LookupTimeout, or by cancel
	cancel context.CancelFunc // ends ctx
}

// end releases the operation; Serve stops only after every op has ended.
func (o *op) end() {
	o.cancel()
	o.s.ops.Done()
}

// tryBegin registers an operation on the running server, if there is one.
func (s *Server) tryBegin() (*op, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil, false
	}
	s.ops.Add(1)
	ctx, cancel := context.WithTimeout(s.srvCtx, s.cfg.LookupTimeout)
	return &op{s: s, srv: s.srv, srvCtx: s.srvCtx, ctx: ctx, cancel: cancel}, true
}

// Stats is a snapshot of a Server's counters.
type Stats struct {
	Nodes     int // nodes in the routing table
	GoodNodes int // of which answered lately
	// Outbound.
	Announces    int64 // Announce calls
	Lookups      int64 // GetPeers calls
	PeersFound   int64 // distinct peers reported to GetPeers and Announce callers
	AnnounceAcks int64 // announce_peer queries acknowledged by other nodes
	QueriesSent  int64 // queries attempted
	// Inbound.
	AnnouncesReceived int64 // valid announce_peer queries from other nodes
	PeersStored       int   // peers we keep for others
}

// Stats returns the Server's counters. Table figures are zero when not
// serving.
func (s *Server) Stats() Stats {
	st := Stats{
		Announces:         s.announces.Load(),
		Lookups:           s.lookups.Load(),
		PeersFound:        s.found.Load(),
		AnnounceAcks:      s.acks.Load(),
		AnnouncesReceived: s.received.Load(),
		PeersStored:       s.peers.Len(),
	}
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		ss := srv.Stats()
		st.Nodes, st.GoodNodes = ss.Nodes, ss.GoodNodes
		st.QueriesSent = ss.OutboundQueriesAttempted
	}
	return st
}
