package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/mdns/v2"
	"golang.org/x/net/ipv4"
)

// Defaults for Config.
const (
	DefaultInterval = time.Second
	DefaultTTL      = 4 * time.Second
	FormatVersion   = 1
)

// Config describes the node discovery announces and how it listens.
type Config struct {
	Info // this node: volume id, node id, ports, format (0 means FormatVersion)
	Network

	// Interval is how often the LAN is asked for ServiceType; every live
	// node answers, which refreshes it. Default DefaultInterval.
	Interval time.Duration
	// TTL is how long a peer stays up without being heard; default
	// DefaultTTL, at least two Intervals. It is also the TTL of the records this node announces
	// (rounded up to whole seconds) and the hold-down after
	// PeerUnreachable.
	TTL time.Duration
	// StaticPeers are "host:port" of peers' APIs given by hand (--peer).
	// They are members from the start and never expire.
	StaticPeers []string

	// Logf, if set, receives diagnostics (malformed packets, send errors).
	Logf func(format string, args ...any)
}

func (c *Config) setDefaults() {
	if c.Format == 0 {
		c.Format = FormatVersion
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
}

// Discovery announces one node on the LAN by mDNS and keeps the table of
// the other live nodes of its volume. Create it with New and run Serve
// (it is a suture.Service); Snapshot, Subscribe, Volumes and
// PeerUnreachable may be called from any goroutine at any time.
//
// The table lives only while Serve runs: when Serve returns, every peer is
// reported down (CauseStopped), and a restart finds them again.
type Discovery struct {
	cfg      Config
	instance string
	host     string
	statics  []staticPeer

	// snap is the published member list (immutable slices), written by
	// the actor under mu, read lock-free by Snapshot.
	snap atomic.Pointer[[]Peer]
	// vols is the published map of every volume seen (immutable).
	vols atomic.Pointer[map[string][]Peer]

	// mu guards subs and orders publication: the actor holds it while it
	// stores snap and queues events, Subscribe while it reads snap and
	// registers, so a subscriber sees each change exactly once.
	mu   sync.Mutex
	subs map[*subscription]struct{}

	// unreachMu guards unreach, node ids reported by PeerUnreachable and
	// not yet taken by the actor; wake (1-buffered) tells the actor.
	unreachMu sync.Mutex
	unreach   []string
	wake      chan struct{}

	running atomic.Bool // one Serve at a time

	// ports carries SetPorts requests to the actor.
	ports chan portsReq
}

type portsReq struct {
	bt, api uint16
	reply   chan error // capacity 1
}

type staticPeer struct {
	host string
	port uint16
}

// New checks the configuration and returns a Discovery ready to Serve.
func New(cfg Config) (*Discovery, error) {
	cfg.setDefaults()
	if err := cfg.Info.validate(); err != nil {
		return nil, err
	}
	if cfg.TTL < 2*cfg.Interval {
		return nil, fmt.Errorf("%w: TTL %v is under two query intervals (%v)", ErrInvalid, cfg.TTL, cfg.Interval)
	}
	d := &Discovery{
		cfg:      cfg,
		instance: InstanceName(cfg.VolumeID, cfg.NodeID),
		host:     hostName(cfg.VolumeID, cfg.NodeID),
		subs:     map[*subscription]struct{}{},
		wake:     make(chan struct{}, 1),
		ports:    make(chan portsReq),
	}
	for _, hp := range cfg.StaticPeers {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return nil, fmt.Errorf("%w: static peer %q: %v", ErrInvalid, hp, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 || host == "" {
			return nil, fmt.Errorf("%w: static peer %q: bad host or port", ErrInvalid, hp)
		}
		d.statics = append(d.statics, staticPeer{host: host, port: uint16(p)})
	}
	empty := []Peer{}
	d.snap.Store(&empty)
	vols := map[string][]Peer{}
	d.vols.Store(&vols)
	return d, nil
}

// Instance returns the DNS-SD instance name this node announces.
func (d *Discovery) Instance() string { return d.instance }

// Snapshot returns the live members of the volume (peers of the same
// volume id, static peers included, this node excluded), sorted by node
// id. It never blocks.
func (d *Discovery) Snapshot() []Peer {
	return append([]Peer(nil), (*d.snap.Load())...)
}

// Volumes returns every live node heard by mDNS, by volume id, members
// and nodes of other volumes alike (static peers excluded).
func (d *Discovery) Volumes() map[string][]Peer {
	src := *d.vols.Load()
	out := make(map[string][]Peer, len(src))
	for k, v := range src {
		out[k] = append([]Peer(nil), v...)
	}
	return out
}

// PeerUnreachable tells discovery that connections to the node failed: if
// it is a member it is reported down at once (CauseUnreachable) and its
// announcements are ignored for the TTL, after which it comes back if it
// is still announcing (static peers come back after the TTL). It never
// blocks.
func (d *Discovery) PeerUnreachable(nodeID string) {
	d.unreachMu.Lock()
	d.unreach = append(d.unreach, nodeID)
	d.unreachMu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Subscribe returns a channel of member events. It starts with a PeerUp
// for each current member, then carries every change in order; events
// queue without bound, so a slow reader loses nothing. The channel is
// closed when ctx is done.
func (d *Discovery) Subscribe(ctx context.Context) <-chan Event {
	s := &subscription{out: make(chan Event), wake: make(chan struct{}, 1)}
	d.mu.Lock()
	for _, p := range *d.snap.Load() {
		s.queue = append(s.queue, Event{Type: PeerUp, Peer: p})
	}
	d.subs[s] = struct{}{}
	d.mu.Unlock()
	// The pump exits when ctx is done, after unregistering.
	go func() {
		defer close(s.out)
		defer func() {
			d.mu.Lock()
			delete(d.subs, s)
			d.mu.Unlock()
		}()
		s.pump(ctx)
	}()
	return s.out
}

type subscription struct {
	out  chan Event
	wake chan struct{} // 1-buffered: queue grew

	mu    sync.Mutex // guards queue
	queue []Event
}

func (s *subscription) push(evs []Event) {
	s.mu.Lock()
	s.queue = append(s.queue, evs...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) pump(ctx context.Context) {
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, ev := range batch {
			select {
			case s.out <- ev:
			case <-ctx.Done():
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return
		}
	}
}

// publish stores the new state and hands events to subscribers.
func (d *Discovery) publish(t *table, evs []Event) {
	members := t.members()
	if members == nil {
		members = []Peer{}
	}
	vols := t.volumes()
	d.mu.Lock()
	d.snap.Store(&members)
	d.vols.Store(&vols)
	if len(evs) > 0 {
		for s := range d.subs {
			s.push(evs)
		}
	}
	d.mu.Unlock()
}

func (d *Discovery) logf(format string, args ...any) {
	if d.cfg.Logf != nil {
		d.cfg.Logf(format, args...)
	}
}

// ErrRunning is returned by Serve when the same Discovery already serves.
var ErrRunning = errors.New("discovery: already serving")

// Serve announces this node and browses for the others until ctx is
// done; then it sends a goodbye (the records with TTL 0) so peers drop
// this node at once, reports every peer down, and returns ctx's error.
// It returns early with an error when the sockets cannot be opened.
func (d *Discovery) Serve(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer d.running.Store(false)

	ifs, err := d.cfg.Network.pick()
	if err != nil {
		return err
	}
	b, err := openBrowser(ifs, d.logf)
	if err != nil {
		return err
	}
	defer b.close()

	responder, err := d.openResponder(ifs)
	if err != nil {
		return err
	}

	t := newTable(d.cfg.VolumeID, instanceFQDN(d.instance), d.cfg.TTL, d.cfg.TTL)
	now := time.Now()
	var evs []Event
	for _, sp := range d.statics {
		evs = append(evs, t.addStatic(now, sp.host, sp.port)...)
	}
	d.publish(t, evs)

	d.takeUnreachable() // reports from before this run are stale
	info := d.cfg.Info  // owned by this loop; SetPorts changes it
	err = b.run(ctx, t, d.cfg.Interval, loopHooks{
		wake:            d.wake,
		takeUnreachable: d.takeUnreachable,
		publish:         d.publish,
		ports:           d.ports,
		setPorts: func(r portsReq) error {
			next := info
			next.BTPort, next.APIPort = r.bt, r.api
			if err := responder.UpdateTXT(d.instance, ServiceType, txtEntries(next)); err != nil {
				return fmt.Errorf("update txt: %w", err)
			}
			info = next
			return nil
		},
	})

	// Stop answering first, so no answer follows the goodbye.
	if cerr := responder.Close(); cerr != nil {
		d.logf("discovery: close responder: %v", cerr)
	}
	b.goodbye(d.instance, d.host, info)
	d.publish(t, t.stop())
	return err
}

// ErrNotRunning is returned by SetPorts when Serve is not running.
var ErrNotRunning = errors.New("discovery: not serving")

// SetPorts changes the BitTorrent and API ports announced in the TXT
// record, which is re-announced at once (pion's UpdateTXT) so peers see
// PeerChanged. The SRV record keeps the API port given at start (stock
// browsers only); DelugeFS peers read the TXT. The change lasts until
// Serve returns.
func (d *Discovery) SetPorts(ctx context.Context, bt, api uint16) error {
	if !d.running.Load() {
		return ErrNotRunning
	}
	r := portsReq{bt: bt, api: api, reply: make(chan error, 1)}
	select {
	case d.ports <- r:
	case <-ctx.Done():
		return fmt.Errorf("set ports: %w", ctx.Err())
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("set ports: %w", ctx.Err())
	}
}

func (d *Discovery) takeUnreachable() []string {
	d.unreachMu.Lock()
	defer d.unreachMu.Unlock()
	ids := d.unreach
	d.unreach = nil
	return ids
}

// openResponder starts the pion/mdns responder that answers PTR, SRV, TXT
// and A questions for this node's service instance.
func (d *Discovery) openResponder(ifs []net.Interface) (*mdns.Conn, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(224, 0, 0, 0), Port: mdnsPort})
	if err != nil {
		return nil, fmt.Errorf("listen mdns responder: %w", err)
	}
	loop := false
	for _, ifi := range ifs {
		loop = loop || ifi.Flags&net.FlagLoopback != 0
	}
	ttl := uint32((d.cfg.TTL + time.Second - 1) / time.Second)
	lf := logging.NewDefaultLoggerFactory()
	lf.Writer = io.Discard
	if d.cfg.Logf != nil {
		lf.Writer = logWriter(d.cfg.Logf)
	}
	conn, err := mdns.NewServer(ipv4.NewPacketConn(c), nil,
		mdns.WithName(d.instance),
		mdns.WithLocalNames(d.host),
		mdns.WithInterfaces(ifs...),
		mdns.WithIncludeLoopback(loop),
		mdns.WithResponseTTL(ttl),
		mdns.WithCacheRefresh(false),
		mdns.WithLoggerFactory(lf),
		mdns.WithService(mdns.ServiceInstance{
			Instance: d.instance,
			Service:  ServiceType,
			Port:     d.cfg.APIPort,
			Text:     txtEntries(d.cfg.Info),
		}),
	)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("start mdns responder: %w", err)
	}
	return conn, nil
}

func txtEntries(in Info) []mdns.TXTEntry {
	var out []mdns.TXTEntry
	for _, s := range in.txt() {
		k, v, _ := strings.Cut(s, "=")
		out = append(out, mdns.NewTXTString(k, v))
	}
	return out
}

type logWriter func(format string, args ...any)

func (w logWriter) Write(p []byte) (int, error) {
	w("%s", p)
	return len(p), nil
}

// browser owns the browse socket: it multicasts the PTR queries, reads
// every mDNS datagram on the chosen interfaces and feeds the table.
type browser struct {
	pc    *ipv4.PacketConn
	ifs   map[int]net.Interface
	query []byte
	logf  func(string, ...any)

	packets chan packet
	readErr chan error
	wg      sync.WaitGroup // the reader
}

func openBrowser(ifs []net.Interface, logf func(string, ...any)) (*browser, error) {
	q, err := buildQuery()
	if err != nil {
		return nil, err
	}
	pc, err := listenMulticast(ifs)
	if err != nil {
		return nil, err
	}
	b := &browser{
		pc:      pc,
		ifs:     map[int]net.Interface{},
		query:   q,
		logf:    logf,
		packets: make(chan packet, 64),
		readErr: make(chan error, 1),
	}
	for _, ifi := range ifs {
		b.ifs[ifi.Index] = ifi
	}
	b.wg.Add(1)
	go b.read() // exits when pc is closed
	return b, nil
}

func (b *browser) close() {
	b.pc.Close()
	b.wg.Wait()
}

// read hands datagrams received on our interfaces to the actor. Packets
// are dropped when the actor lags by more than the channel's buffer; the
// next query repairs that.
func (b *browser) read() {
	defer b.wg.Done()
	buf := make([]byte, 9000)
	for {
		n, cm, src, err := b.pc.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				b.readErr <- fmt.Errorf("read mdns: %w", err)
			}
			return
		}
		if cm == nil {
			continue
		}
		if _, ok := b.ifs[cm.IfIndex]; !ok {
			continue
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		select {
		case b.packets <- packet{data: append([]byte(nil), buf[:n]...), src: ua.AddrPort(), ifIndex: cm.IfIndex}:
		default:
		}
	}
}

// send multicasts b on one interface.
func (b *browser) send(ifi net.Interface, msg []byte) error {
	if err := b.pc.SetMulticastInterface(&ifi); err != nil {
		return fmt.Errorf("mdns send on %s: %w", ifi.Name, err)
	}
	if _, err := b.pc.WriteTo(msg, &ipv4.ControlMessage{IfIndex: ifi.Index}, mdnsGroup); err != nil {
		return fmt.Errorf("mdns send on %s: %w", ifi.Name, err)
	}
	return nil
}

// goodbye multicasts this node's records with TTL 0 on every interface.
func (b *browser) goodbye(instance, host string, in Info) {
	msg, err := buildResponse(instance, host, in.APIPort, in, netip.Addr{}, 0)
	if err != nil {
		b.logf("discovery: goodbye: %v", err)
		return
	}
	for _, ifi := range b.ifs {
		if err := b.send(ifi, msg); err != nil {
			b.logf("discovery: goodbye: %v", err)
		}
	}
}

// run is the actor loop. Queries go out every interval (with jitter) on
// each interface, unless a query that draws multicast answers was seen
// there in the last half interval: those answers refresh us too, so the
// LAN carries about one query per interval however many nodes listen.
// loopHooks connect the browse loop to its owner (nil fields: unused).
type loopHooks struct {
	wake            <-chan struct{}       // PeerUnreachable reports wait
	takeUnreachable func() []string       // takes them
	publish         func(*table, []Event) // after each change
	ports           <-chan portsReq       // SetPorts requests
	setPorts        func(portsReq) error  // applies one
}

func (b *browser) run(ctx context.Context, t *table, interval time.Duration, h loopHooks) error {
	lastQuery := map[int]time.Time{} // by interface index: last query sent or seen there
	queryTimer := time.NewTimer(0)
	defer queryTimer.Stop()
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	resetExpiry := func() {
		next := t.nextDeadline()
		d := time.Hour
		if !next.IsZero() {
			d = max(time.Until(next), 0)
		}
		expiry.Reset(d)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-b.readErr:
			return err
		case p := <-b.packets:
			msg, err := parseMessage(p.data, p.src)
			if err != nil {
				continue // not ours to fix; mDNS carries all sorts
			}
			now := time.Now()
			if msg.query {
				lastQuery[p.ifIndex] = now
			}
			var evs []Event
			for _, s := range msg.sightings {
				evs = append(evs, t.observe(now, s)...)
			}
			if len(msg.sightings) > 0 {
				h.publish(t, evs)
				resetExpiry()
			}
		case <-queryTimer.C:
			now := time.Now()
			for idx, ifi := range b.ifs {
				if now.Sub(lastQuery[idx]) < interval/2 {
					continue
				}
				if err := b.send(ifi, b.query); err != nil {
					b.logf("discovery: %v", err)
					continue
				}
				lastQuery[idx] = now
			}
			// 80–100% of the interval, so nodes drift apart and
			// one query serves all.
			queryTimer.Reset(interval - time.Duration(rand.Int64N(int64(interval)/5+1)))
		case <-expiry.C:
			h.publish(t, t.expire(time.Now()))
			resetExpiry()
		case <-h.wake:
			now := time.Now()
			var evs []Event
			for _, id := range h.takeUnreachable() {
				evs = append(evs, t.unreachable(now, id)...)
			}
			h.publish(t, evs)
			resetExpiry()
		case r := <-h.ports:
			r.reply <- h.setPorts(r)
		}
	}
}
