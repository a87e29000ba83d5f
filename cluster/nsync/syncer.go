package nsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/delugefs/delugefs/actors"
	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/meta"
)

// IntegrateResult is what Repo.Integrate reports: our head afterwards,
// whether it moved, and whether it is a merge we made that peers should
// hear of (false for a fast-forward to the peer's head).
type IntegrateResult = meta.IntegrateResult

// Repo is what a Syncer needs of the node's namespace; *meta.Repo
// implements it.
type Repo interface {
	// Head is our namespace commit.
	Head() plumbing.Hash
	// Watch signals (coalesced) after our head changed and git readers
	// of the repository see the change.
	Watch() <-chan struct{}
	// Integrate joins a peer's head, whose history is readable from src
	// (objects received over ours), into our namespace.
	Integrate(ctx context.Context, head plumbing.Hash, src storer.EncodedObjectStorer) (IntegrateResult, error)
}

var _ Repo = (*meta.Repo)(nil)

// Defaults of Config's zero fields.
const (
	DefaultInterval      = 5 * time.Second
	DefaultNotifyTimeout = 2 * time.Second
	DefaultMinBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff    = time.Minute
)

// maxMissed bounds the fetches made again, MinBackoff apart, when a peer
// advertises another head than the one it just announced.
const maxMissed = 3

// maxNotices bounds the peers whose notices wait in the inbox; notices
// from further node ids are dropped (anti-entropy catches up).
const maxNotices = 4096

// rememberHeads is how many heads learned from peers are remembered (for
// "announce only what you made" and to skip notices of heads we hold).
const rememberHeads = 256

// Config configures a Syncer.
type Config struct {
	// Node is this node's id, sent in notices; notices from it are ignored.
	Node string
	// Addr is this node's API address ("host:port") sent in notices, so
	// that peers that do not know us yet can fetch from us; may be empty.
	Addr string
	// Volume and Key are the volume id and key (base64, from node.json);
	// the key gives the API token.
	Volume, Key string
	// GitDir is the repository Repo owns; fetches read it (never write).
	GitDir string
	// Repo is the node's namespace.
	Repo Repo

	// Interval is the anti-entropy period: every Interval each peer is
	// fetched from (one GET when in sync) [DefaultInterval].
	Interval time.Duration
	// NotifyTimeout bounds each notice sent [DefaultNotifyTimeout].
	NotifyTimeout time.Duration
	// FetchTimeout bounds each fetch and integration [DefaultFetchTimeout].
	FetchTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before fetching again from a
	// peer whose fetch failed (doubling, with jitter) [DefaultMinBackoff,
	// DefaultMaxBackoff]. A notice from the peer ends the wait.
	MinBackoff, MaxBackoff time.Duration
	// Limits bound each fetch; zero fields take DefaultLimits.
	Limits Limits
	// MaxHaves bounds the "have" lines of a fetch [DefaultMaxHaves].
	MaxHaves int

	// OnFailure, when set, is told of each failed fetch, integration or
	// notice (e.g. discovery's PeerUnreachable). It is called from the
	// Syncer's loop and must not block.
	OnFailure func(node string, err error)
	// HTTP is the client of the calls to peers; nil means one without
	// proxies that keeps connections alive.
	HTTP *http.Client
	// Logger receives peer changes, merge events and failures (debug);
	// nil means slog.Default().
	Logger *slog.Logger
}

// Stats are a Syncer's counters, for /status.
type Stats struct {
	Fetches      int64 // fetches that succeeded, skipped ones included
	Skipped      int64 // fetches that stopped after the advertisement
	Bytes        int64 // HTTP response bytes of fetches
	Objects      int64 // objects received
	Integrations int64 // integrations that moved our head
	Failures     int64 // fetches or integrations that failed
	Received     int64 // notices received
	Dropped      int64 // notices dropped (inbox full or unknown node without address)
	Sent         int64 // notices sent
	SendFailures int64 // notices that failed
	Peers        []PeerStats
}

// PeerStats are the counters and state of one peer.
type PeerStats struct {
	Node string
	Base string // API base URL
	// Head is the last head the peer advertised or announced.
	Head         plumbing.Hash
	Fetches      int64
	Skipped      int64
	Bytes        int64
	Objects      int64
	Integrations int64
	Failures     int64
	Sent         int64
	SendFailures int64
	// LastSync is when a fetch from the peer last succeeded.
	LastSync time.Time
	// LastError is the last failure and when it happened.
	LastError   string
	LastErrorAt time.Time
	// RetryAt is when a failed peer is fetched from again (zero if none).
	RetryAt time.Time
}

// Syncer keeps a node's namespace in sync with its peers: it tells every
// peer when our head changes (only for commits we made), and fetches from a
// peer and integrates its head when the peer tells us of a change and every
// Interval (anti-entropy). It is an actor: Serve runs its loop (under a
// supervisor); Notice, AddPeer, RemovePeer and Stats may be called from any
// goroutine at any time, before Serve too, and never block.
type Syncer struct {
	cfg   Config
	log   *slog.Logger
	token string
	httpc *http.Client

	// mu guards ops, notices and stats.
	mu      sync.Mutex
	ops     []peerOp              // AddPeer/RemovePeer, in order
	notices map[string]api.Notice // latest notice per node
	stats   Stats                 // Peers unused: see peerStats
	pstats  map[string]*PeerStats
	wake    actors.Signal

	// heardMu guards heard and heardRing: heads learned from peers (set
	// by fetch workers before they integrate, read by the loop when it
	// decides whether to announce our head).
	heardMu   sync.Mutex
	heard     map[plumbing.Hash]bool
	heardRing []plumbing.Hash

	watch <-chan struct{} // Repo.Watch, taken once (meta keeps every watcher)

	// Owned by the Serve loop.
	peers     map[string]*peerState
	held      map[plumbing.Hash]bool // peer heads fetched and integrated (or held)
	heldRing  []plumbing.Hash
	announced plumbing.Hash // last head announced
}

// peerOp is a queued AddPeer (base set) or RemovePeer.
type peerOp struct {
	node, base string
	remove     bool
}

// peerState is the loop's state of one peer.
type peerState struct {
	node   string
	base   string
	client *api.Client

	fetching bool // a fetch is in flight
	again    bool // fetch again when the one in flight ends, or at retryAt
	retryAt  time.Time
	backoff  actors.Backoff

	notifying  bool          // a notice is in flight
	notifyNext plumbing.Hash // notice to send when it ends

	head       plumbing.Hash // last head advertised or announced
	integrated plumbing.Hash // last head fetched and integrated (or held)
	want       plumbing.Hash // head of the last notice, until we hold it
	missed     int           // fetches since that notice that did not bring it
}

// New returns a Syncer with no peers.
func New(cfg Config) (*Syncer, error) {
	switch {
	case cfg.Node == "":
		return nil, errors.New("nsync: Config.Node is empty")
	case cfg.Volume == "":
		return nil, errors.New("nsync: Config.Volume is empty")
	case cfg.GitDir == "":
		return nil, errors.New("nsync: Config.GitDir is empty")
	case cfg.Repo == nil:
		return nil, errors.New("nsync: Config.Repo is nil")
	}
	token, err := api.Token(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("nsync: %w", err)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.NotifyTimeout <= 0 {
		cfg.NotifyTimeout = DefaultNotifyTimeout
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	httpc := cfg.HTTP
	if httpc == nil {
		httpc = &http.Client{Transport: defaultTransport}
	}
	return &Syncer{
		cfg:     cfg,
		log:     cfg.Logger.With("volume", cfg.Volume, "node", cfg.Node),
		token:   token,
		httpc:   httpc,
		notices: map[string]api.Notice{},
		pstats:  map[string]*PeerStats{},
		wake:    actors.NewSignal(),
		heard:   map[plumbing.Hash]bool{},
		peers:   map[string]*peerState{},
		held:    map[plumbing.Hash]bool{},
		watch:   cfg.Repo.Watch(),
	}, nil
}

// String names the service for the supervisor's log.
func (s *Syncer) String() string { return "nsync " + s.cfg.Volume + "/" + s.cfg.Node }

// AddPeer adds (or moves) the peer node whose API is at apiBase
// ("http://host:port"); Serve fetches from it at once and tells it our
// head.
func (s *Syncer) AddPeer(node, apiBase string) error {
	if node == "" || node == s.cfg.Node {
		return fmt.Errorf("nsync: bad peer node id %q", node)
	}
	u, err := url.Parse(apiBase)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("nsync: bad peer API base %q", apiBase)
	}
	s.mu.Lock()
	s.ops = append(s.ops, peerOp{node: node, base: apiBase})
	s.mu.Unlock()
	s.wake.Notify()
	return nil
}

// RemovePeer forgets the peer node; a fetch in flight from it is ignored.
func (s *Syncer) RemovePeer(node string) {
	s.mu.Lock()
	s.ops = append(s.ops, peerOp{node: node, remove: true})
	s.mu.Unlock()
	s.wake.Notify()
}

// Notice tells the Syncer that peer n.Node's head is now n.Head (what the
// node's api.Handler.Notify receives). A notice from an unknown node that
// gives its address adds the node as a peer. It never blocks: notices
// waiting for the loop coalesce per node.
func (s *Syncer) Notice(n api.Notice) {
	if n.Node == "" || n.Node == s.cfg.Node {
		return
	}
	s.mu.Lock()
	s.stats.Received++
	if _, ok := s.notices[n.Node]; !ok && len(s.notices) >= maxNotices {
		s.stats.Dropped++
		s.mu.Unlock()
		return
	}
	s.notices[n.Node] = n
	s.mu.Unlock()
	s.wake.Notify()
}

// Stats returns a copy of the counters, peers sorted by node id.
func (s *Syncer) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Peers = make([]PeerStats, 0, len(s.pstats))
	for _, p := range s.pstats {
		st.Peers = append(st.Peers, *p)
	}
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Node < st.Peers[j].Node })
	return st
}

// fetchDone is what a fetch worker reports.
type fetchDone struct {
	p          *peerState
	head       plumbing.Hash // the peer's head
	skipped    bool
	integrated bool
	res        IntegrateResult
	bytes      int64
	objects    int
	want       plumbing.Hash // the announced head the fetch was for
	missed     bool          // the peer advertised another head; we lack want
	err        error
}

// notifyDone is what a notice worker reports.
type notifyDone struct {
	p    *peerState
	head plumbing.Hash
	err  error
}

// Serve runs the Syncer until ctx ends: it applies peer changes and
// notices, announces our head changes, fetches on notices and every
// Interval, and retries failed peers with backoff. At start it announces
// our head to every peer and fetches from each (a restarted node catches
// up). Fetches and notices run in goroutines of their own, at most one
// fetch and one notice per peer at a time; Serve waits for them before it
// returns.
func (s *Syncer) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	l := &loop{s: s, ctx: ctx, wg: &wg,
		fetched:  make(chan fetchDone),
		notified: make(chan notifyDone),
	}
	for _, p := range s.peers { // workers of a previous Serve are gone
		p.fetching, p.notifying, p.notifyNext = false, false, plumbing.ZeroHash
	}
	l.inbox()
	// Our head may have changed while no Serve ran. Announce it, but
	// forget having done so: Repo.Head may be ahead of what git readers
	// see until the repository flushes, and the Watch that follows the
	// flush must announce it again.
	s.announced = plumbing.ZeroHash
	l.announce()
	s.announced = plumbing.ZeroHash
	for _, p := range s.peers {
		if !p.fetching { // peers added just now are
			l.want(p)
		}
	}

	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		l.armRetry(retry)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake.C():
			l.inbox()
		case <-s.watch:
			l.announce()
		case <-tick.C:
			now := time.Now()
			for _, p := range s.peers {
				if !p.fetching && !now.Before(p.retryAt) {
					l.start(p)
				}
			}
		case <-retry.C:
			l.retryAt = time.Time{}
			now := time.Now()
			for _, p := range s.peers {
				if p.again && !p.fetching && !now.Before(p.retryAt) {
					l.start(p)
				}
			}
		case d := <-l.fetched:
			l.fetchEnded(d)
		case d := <-l.notified:
			l.notifyEnded(d)
		}
	}
}

// loop is the state of one Serve run.
type loop struct {
	s        *Syncer
	ctx      context.Context
	wg       *sync.WaitGroup
	fetched  chan fetchDone
	notified chan notifyDone
	retryAt  time.Time // what the retry timer is set to (zero: not set)
}

// inbox applies queued peer changes, then notices.
func (l *loop) inbox() {
	s := l.s
	s.mu.Lock()
	ops, notices := s.ops, s.notices
	s.ops, s.notices = nil, map[string]api.Notice{}
	s.mu.Unlock()
	for _, op := range ops {
		if op.remove {
			l.removePeer(op.node)
		} else {
			l.addPeer(op.node, op.base)
		}
	}
	nodes := make([]string, 0, len(notices))
	for n := range notices {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, node := range nodes {
		l.notice(notices[node])
	}
}

// addPeer adds a peer or moves it to a new address.
func (l *loop) addPeer(node, base string) *peerState {
	s := l.s
	if p, ok := s.peers[node]; ok {
		if p.base == base {
			return p
		}
		s.log.Info("nsync: peer moved", "peer", node, "from", p.base, "to", base)
		p.base, p.client = base, s.client(base)
		s.mu.Lock()
		s.pstats[node].Base = base
		s.mu.Unlock()
		p.backoff.Reset()
		p.retryAt = time.Time{}
		l.want(p)
		return p
	}
	p := &peerState{
		node: node, base: base, client: s.client(base),
		backoff: actors.Backoff{Min: s.cfg.MinBackoff, Max: s.cfg.MaxBackoff, Jitter: jitter},
	}
	s.peers[node] = p
	s.mu.Lock()
	s.pstats[node] = &PeerStats{Node: node, Base: base}
	s.mu.Unlock()
	s.log.Info("nsync: peer added", "peer", node, "api", base)
	l.want(p)
	if h := s.cfg.Repo.Head(); !h.IsZero() {
		l.notify(p, h)
	}
	return p
}

func (l *loop) removePeer(node string) {
	s := l.s
	if _, ok := s.peers[node]; !ok {
		return
	}
	delete(s.peers, node)
	s.mu.Lock()
	delete(s.pstats, node)
	s.mu.Unlock()
	s.log.Info("nsync: peer removed", "peer", node)
}

// client returns an API client of the peer at base.
func (s *Syncer) client(base string) *api.Client {
	return &api.Client{
		Base: base, Token: s.token, Volume: s.cfg.Volume, User: s.cfg.Node,
		HTTP: s.httpc, Timeout: s.cfg.NotifyTimeout,
	}
}

// notice handles a peer's "my head is now n.Head".
func (l *loop) notice(n api.Notice) {
	s := l.s
	p := s.peers[n.Node]
	wasFetching := p != nil && p.fetching
	switch {
	case p == nil && n.Addr == "":
		s.mu.Lock()
		s.stats.Dropped++
		s.mu.Unlock()
		s.log.Debug("nsync: notice from an unknown node without an address", "peer", n.Node)
		return
	case p == nil:
		p = l.addPeer(n.Node, "http://"+n.Addr)
	case n.Addr != "" && p.base != "http://"+n.Addr && !p.retryAt.IsZero():
		// The address we have fails; the peer says where it is now.
		// (While it works, keep it: discovery may name the host
		// differently from the address the peer sees itself at.)
		l.addPeer(n.Node, "http://"+n.Addr)
	}
	p.head = n.Head
	s.mu.Lock()
	s.pstats[p.node].Head = n.Head
	s.mu.Unlock()
	if n.Head.IsZero() || n.Head == p.integrated || n.Head == s.cfg.Repo.Head() || s.held[n.Head] {
		return // nothing new
	}
	p.want, p.missed = n.Head, 0
	if p.fetching && !wasFetching {
		return // adding or moving the peer just started a fetch: it sees the head
	}
	// The peer just called us: it is alive, whatever failed before.
	p.backoff.Reset()
	p.retryAt = time.Time{}
	l.want(p)
}

// want fetches from p now, or once the fetch in flight ends.
func (l *loop) want(p *peerState) {
	if p.fetching || time.Now().Before(p.retryAt) {
		p.again = true
		return
	}
	l.start(p)
}

// start launches a fetch from p.
func (l *loop) start(p *peerState) {
	s := l.s
	p.fetching, p.again = true, false
	known := []plumbing.Hash{s.cfg.Repo.Head()}
	if !p.integrated.IsZero() {
		known = append(known, p.integrated)
	}
	known = append(known, s.heldRing...)
	var haves []plumbing.Hash
	if !p.integrated.IsZero() {
		haves = []plumbing.Hash{p.integrated}
	}
	opts := Options{
		Known: known, Haves: haves, Limits: s.cfg.Limits,
		MaxHaves: s.cfg.MaxHaves, Timeout: s.cfg.FetchTimeout,
	}
	client, want := p.client, p.want
	l.wg.Add(1)
	go func() { // ends when the fetch ends (bounded by FetchTimeout and ctx)
		defer l.wg.Done()
		d := s.fetch(l.ctx, p.node, client, opts, want)
		d.p, d.want = p, want
		select {
		case l.fetched <- d:
		case <-l.ctx.Done():
		}
	}()
}

// fetch fetches from a peer and integrates its head (in a worker). want
// is the head the peer last announced: when the peer advertised another
// one, missed says whether our repository lacks want afterwards.
func (s *Syncer) fetch(ctx context.Context, node string, c *api.Client, opts Options, want plumbing.Hash) (d fetchDone) {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	f, err := Fetch(ctx, c, s.cfg.GitDir, opts)
	if err != nil {
		return fetchDone{err: err}
	}
	defer f.Close()
	defer func() {
		if d.err == nil && !want.IsZero() && want != f.Head && want != s.cfg.Repo.Head() {
			d.missed = !holds(s.cfg.GitDir, want)
		}
	}()
	d = fetchDone{head: f.Head, skipped: f.Skipped, bytes: f.Bytes, objects: f.Objects}
	if f.Skipped {
		return d
	}
	// Before Integrate, so that the head change it causes is known as
	// the peer's when Watch fires.
	s.hear(f.Head)
	res, err := s.cfg.Repo.Integrate(ctx, f.Head, f.Store)
	if err != nil {
		d.err = fmt.Errorf("nsync: integrate %s from %s: %w", f.Head, node, err)
		return d
	}
	if res.Changed && !res.Announce {
		s.hear(res.Head)
	}
	d.integrated, d.res = true, res
	return d
}

// hear remembers h as a head learned from a peer.
func (s *Syncer) hear(h plumbing.Hash) {
	s.heardMu.Lock()
	defer s.heardMu.Unlock()
	if s.heard[h] {
		return
	}
	s.heard[h] = true
	s.heardRing = append(s.heardRing, h)
	if len(s.heardRing) > rememberHeads {
		delete(s.heard, s.heardRing[0])
		s.heardRing = s.heardRing[1:]
	}
}

func (s *Syncer) heardOf(h plumbing.Hash) bool {
	s.heardMu.Lock()
	defer s.heardMu.Unlock()
	return s.heard[h]
}

// hold remembers h as a peer head we hold (fetched and integrated).
func (l *loop) hold(h plumbing.Hash) {
	s := l.s
	if h.IsZero() || s.held[h] {
		return
	}
	s.held[h] = true
	s.heldRing = append(s.heldRing, h)
	if len(s.heldRing) > rememberHeads {
		delete(s.held, s.heldRing[0])
		s.heldRing = s.heldRing[1:]
	}
}

// fetchEnded records a fetch's outcome and starts the next one if wanted.
func (l *loop) fetchEnded(d fetchDone) {
	s := l.s
	p := d.p
	p.fetching = false
	if s.peers[p.node] != p {
		return // removed meanwhile
	}
	now := time.Now()
	s.mu.Lock()
	ps := s.pstats[p.node]
	if d.err != nil {
		s.stats.Failures++
		ps.Failures++
		ps.LastError, ps.LastErrorAt = d.err.Error(), now
	} else {
		s.stats.Fetches++
		ps.Fetches++
		s.stats.Bytes += d.bytes
		ps.Bytes += d.bytes
		s.stats.Objects += int64(d.objects)
		ps.Objects += int64(d.objects)
		if d.skipped {
			s.stats.Skipped++
			ps.Skipped++
		}
		if d.integrated && d.res.Changed {
			s.stats.Integrations++
			ps.Integrations++
		}
		ps.LastSync = now
		if !d.head.IsZero() {
			ps.Head = d.head
		}
	}
	s.mu.Unlock()

	if d.err != nil {
		wait := p.backoff.Next()
		p.retryAt = now.Add(wait)
		p.again = true
		s.mu.Lock()
		ps.RetryAt = p.retryAt
		s.mu.Unlock()
		s.log.Debug("nsync: fetch failed", "peer", p.node, "retry_in", wait, "err", d.err)
		if s.cfg.OnFailure != nil {
			s.cfg.OnFailure(p.node, d.err)
		}
		return
	}
	p.backoff.Reset()
	p.retryAt = time.Time{}
	s.mu.Lock()
	ps.RetryAt = time.Time{}
	s.mu.Unlock()
	if !d.head.IsZero() {
		p.head = d.head
		p.integrated = d.head
		l.hold(d.head)
	}
	switch {
	case d.want != p.want:
	case !d.missed:
		p.want = plumbing.ZeroHash
	case p.missed < maxMissed:
		// The peer announced a head it did not advertise yet (its
		// repository had not written it): look again soon.
		p.missed++
		p.again, p.retryAt = true, now.Add(s.cfg.MinBackoff)
	default:
		p.want = plumbing.ZeroHash // anti-entropy will do
	}
	if d.integrated {
		for _, e := range d.res.Events {
			s.log.Info("nsync: merge", "peer", p.node, "event", e.String())
		}
	}
	if p.again && !now.Before(p.retryAt) {
		l.start(p)
	}
}

// announce tells every peer our head when it changed and is not a head
// learned from a peer.
func (l *loop) announce() {
	s := l.s
	h := s.cfg.Repo.Head()
	if h.IsZero() || h == s.announced {
		return
	}
	s.announced = h
	if s.heardOf(h) {
		return // a peer's head: the peer that made it announces it
	}
	for _, p := range s.peers {
		l.notify(p, h)
	}
}

// notify sends p a notice of h, or queues it behind the one in flight.
func (l *loop) notify(p *peerState, h plumbing.Hash) {
	s := l.s
	if p.notifying {
		p.notifyNext = h
		return
	}
	p.notifying = true
	n := api.Notice{Node: s.cfg.Node, Head: h, Addr: s.cfg.Addr}
	c := p.client
	l.wg.Add(1)
	go func() { // ends when the call ends (bounded by NotifyTimeout)
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(l.ctx, s.cfg.NotifyTimeout)
		err := c.Notify(ctx, n)
		cancel()
		if err != nil {
			err = fmt.Errorf("nsync: notify %s of %s: %w", p.node, h, err)
		}
		select {
		case l.notified <- notifyDone{p: p, head: h, err: err}:
		case <-l.ctx.Done():
		}
	}()
}

// notifyEnded records a notice's outcome and sends the next one.
func (l *loop) notifyEnded(d notifyDone) {
	s := l.s
	p := d.p
	p.notifying = false
	if s.peers[p.node] != p {
		return
	}
	s.mu.Lock()
	ps := s.pstats[p.node]
	if d.err != nil {
		s.stats.SendFailures++
		ps.SendFailures++
		ps.LastError, ps.LastErrorAt = d.err.Error(), time.Now()
	} else {
		s.stats.Sent++
		ps.Sent++
	}
	s.mu.Unlock()
	if d.err != nil {
		s.log.Debug("nsync: notify failed", "peer", p.node, "err", d.err)
		if s.cfg.OnFailure != nil {
			s.cfg.OnFailure(p.node, d.err)
		}
	}
	if next := p.notifyNext; !next.IsZero() {
		p.notifyNext = plumbing.ZeroHash
		if next != d.head || d.err != nil {
			l.notify(p, next)
		}
	}
}

// armRetry sets the retry timer to the earliest retry due.
func (l *loop) armRetry(t *time.Timer) {
	var next time.Time
	found := false
	for _, p := range l.s.peers {
		if p.again && !p.fetching && (!found || p.retryAt.Before(next)) {
			next, found = p.retryAt, true
		}
	}
	if !found || next.Equal(l.retryAt) {
		return
	}
	l.retryAt = next
	t.Reset(max(time.Until(next), 0))
}

// jitter adds up to d of random delay, so failed peers are not retried in
// step.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// holds says whether the repository at gitDir holds the object h.
func holds(gitDir string, h plumbing.Hash) bool {
	sto := filesystem.NewStorage(osfs.New(gitDir), cache.NewObjectLRU(1<<20))
	defer sto.Close()
	return sto.HasEncodedObject(h) == nil
}
