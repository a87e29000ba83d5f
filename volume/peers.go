package volume

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/cluster/discovery"
	"github.com/delugefs/delugefs/meta"
)

// peer is another process serving the volume, known by its API address.
type peer struct {
	api      string // host:port
	node     string // node id of its primary ("" until known)
	static   bool   // given by hand
	alive    bool
	lastSeen time.Time
	client   *api.Client
	bts      []string // BitTorrent addresses of its nodes
	disks    []api.Disk
	head     string
	have     map[string]map[bt.InfoHash]bool // node id -> complete blobs
	failures int
}

// peerTable holds the volume's peers; safe for concurrent use.
type peerTable struct {
	mu      sync.Mutex
	m       map[string]*peer // by API address
	changed chan struct{}    // poked when a peer is added
}

func newPeerTable() *peerTable {
	return &peerTable{m: map[string]*peer{}, changed: make(chan struct{}, 1)}
}

// add records a peer at API address addr; it reports whether it is new.
func (t *peerTable) add(addr, nodeID string, static bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.m[addr]
	if !ok {
		p = &peer{api: addr, static: static}
		t.m[addr] = p
	}
	if nodeID != "" {
		p.node = nodeID
	}
	p.static = p.static || static
	wasAlive := p.alive
	p.alive = true
	p.lastSeen = time.Now()
	if !ok || !wasAlive {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
	return !ok
}

// down marks the peer at addr gone.
func (t *peerTable) down(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.m[addr]; ok {
		p.alive = false
	}
}

// list returns copies of the peers.
func (t *peerTable) list() []peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]peer, 0, len(t.m))
	for _, p := range t.m {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].api < out[j].api })
	return out
}

// update runs fn on the peer at addr under the lock.
func (t *peerTable) update(addr string, fn func(p *peer)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.m[addr]; ok {
		fn(p)
	}
}

// copies counts the live remote nodes holding h complete, and names them.
func (t *peerTable) copies(h bt.InfoHash) (int, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var holders []string
	for _, p := range t.m {
		if !p.alive {
			continue
		}
		for id, set := range p.have {
			if set[h] {
				holders = append(holders, id)
			}
		}
	}
	slices.Sort(holders)
	return len(holders), holders
}

// client returns the API client of the peer at addr.
func (v *Volume) client(addr string) (*api.Client, error) {
	c, err := api.NewClient("http://"+addr, v.opts.ID, v.Key())
	if err != nil {
		return nil, err
	}
	c.User = v.Nodes[0].Config.NodeID
	return c, nil
}

// runPeers keeps the peer table: discovery's events, a poll of each
// peer's status (its nodes' BitTorrent addresses, space, head) and
// have-list, and the hand-over of peers to the syncer and the swarms.
func (v *Volume) runPeers(ctx context.Context) error {
	var events <-chan discovery.Event
	if v.disc != nil {
		events = v.disc.Subscribe(ctx)
	}
	tick := time.NewTicker(v.opts.PeerPoll)
	defer tick.Stop()
	v.pollPeers(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			v.discoveryEvent(ev)
			v.pollPeers(ctx)
		case <-v.peers.changed:
			v.pollPeers(ctx)
		case <-tick.C:
			v.pollPeers(ctx)
		}
	}
}

func (v *Volume) discoveryEvent(ev discovery.Event) {
	p := ev.Peer
	if p.VolumeID != "" && p.VolumeID != v.opts.ID {
		return
	}
	addr := p.APIAddr()
	if addr == "" || p.NodeID == v.Nodes[0].Config.NodeID {
		return
	}
	nodeID := p.NodeID
	if p.Static {
		nodeID = ""
	}
	switch ev.Type {
	case discovery.PeerUp, discovery.PeerChanged:
		v.peers.add(addr, nodeID, p.Static)
		if bta := p.BTAddr(); bta.IsValid() {
			v.addBT(bta.String())
		}
	case discovery.PeerDown:
		v.peers.down(addr)
		v.log.Info("peer gone", "peer", p.NodeID, "api", addr, "cause", ev.Cause)
	}
}

// addBT gives a peer's BitTorrent address to every swarm of every node,
// and to the DHT as a node to bootstrap from (it listens on UDP at the
// same port).
func (v *Volume) addBT(addr string) {
	for _, n := range v.Nodes {
		n.Swarms.AddPeer(addr)
	}
	if v.dht != nil {
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			v.dht.AddNode(ap)
		}
	}
}

// pollPeers refreshes every live peer's status and have-list, in
// parallel, each bounded; a peer that fails is marked down after a few
// failures in a row (discovery is told).
func (v *Volume) pollPeers(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range v.peers.list() {
		if !p.alive && !p.static {
			continue
		}
		wg.Go(func() { v.pollPeer(ctx, p) })
	}
	wg.Wait()
}

func (v *Volume) pollPeer(ctx context.Context, p peer) {
	c := p.client
	if c == nil {
		var err error
		if c, err = v.client(p.api); err != nil {
			v.log.Warn("peer", "api", p.api, "err", err)
			return
		}
		c.Timeout = 5 * time.Second
	}
	// The whole status (which walks the peer's namespace) only until the
	// peer's nodes and BitTorrent addresses are known; then its disks.
	known := len(p.bts) > 0 && p.node != ""
	var st *api.VolumeStatus
	var err error
	if known {
		var disks []api.Disk
		if disks, err = c.Space(ctx); err == nil {
			st = &api.VolumeStatus{Head: v.peerHead(p.node, p.head)}
			for _, d := range disks {
				st.Nodes = append(st.Nodes, api.NodeStatus{ID: d.Node, Root: d.Root, Total: d.Total, Free: d.Free})
			}
		}
	} else {
		st, err = c.VolumeStatus(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		v.peers.update(p.api, func(q *peer) {
			q.client = c
			q.failures++
			if q.failures >= 3 && q.alive {
				q.alive = false
				v.log.Info("peer unreachable", "api", p.api, "err", err)
				if v.disc != nil && q.node != "" {
					v.disc.PeerUnreachable(q.node)
				}
			}
		})
		if errors.Is(err, api.ErrUnauthorized) {
			v.log.Warn("peer refuses our volume key", "api", p.api)
		}
		return
	}
	haves, herr := c.Have(ctx)
	host, _, _ := net.SplitHostPort(p.api)
	var bts []string
	var disks []api.Disk
	for _, n := range st.Nodes {
		disks = append(disks, api.Disk{Node: n.ID, Root: n.Root, Total: n.Total, Free: n.Free})
		if n.BT == "" {
			continue
		}
		h, port, err := net.SplitHostPort(n.BT)
		if err != nil {
			continue
		}
		if h == "" || h == "::" || h == "0.0.0.0" {
			h = host
		}
		bts = append(bts, net.JoinHostPort(h, port))
	}
	if known {
		bts = p.bts
	}
	var primary string
	if len(st.Nodes) > 0 {
		primary = st.Nodes[0].ID
	}
	isNew := false
	v.peers.update(p.api, func(q *peer) {
		q.client = c
		q.failures = 0
		q.alive = true
		q.lastSeen = time.Now()
		q.bts = bts
		q.disks = disks
		q.head = st.Head
		if primary != "" {
			isNew = q.node == ""
			q.node = primary
		}
		if herr == nil {
			q.have = map[string]map[bt.InfoHash]bool{}
			for _, nh := range haves {
				set := make(map[bt.InfoHash]bool, len(nh.Hashes))
				for _, h := range nh.Hashes {
					set[h] = true
				}
				q.have[nh.Node] = set
			}
		}
	})
	for _, b := range bts {
		v.addBT(b)
	}
	if primary != "" && primary != v.Nodes[0].Config.NodeID {
		v.syncers[0].AddPeer(primary, "http://"+p.api)
		if isNew {
			v.log.Info("peer", "node", primary, "api", p.api, "bt", bts)
			// Say hello: a peer we found (by hand or by a clone) learns of
			// us from our notice even before we change anything.
			if err := c.Notify(ctx, api.Notice{Node: v.Nodes[0].Config.NodeID, Head: v.Nodes[0].Repo.Head(), Addr: v.advertised}); err != nil {
				v.log.Debug("hello", "peer", p.api, "err", err)
			}
		}
	}
}

// peerHead returns the head the namespace sync last heard from node, or
// old when it heard none.
func (v *Volume) peerHead(node, old string) string {
	for _, ps := range v.syncers[0].Stats().Peers {
		if ps.Node == node && !ps.Head.IsZero() {
			return ps.Head.String()
		}
	}
	return old
}

// Notify is the API's notify call: a peer's head moved.
func (v *Volume) Notify(ctx context.Context, n api.Notice) error {
	if n.Node == v.Nodes[0].Config.NodeID {
		return nil
	}
	if n.Addr != "" {
		if v.peers.add(n.Addr, n.Node, false) {
			v.syncers[0].AddPeer(n.Node, "http://"+n.Addr)
		}
	}
	v.syncers[0].Notice(n)
	return nil
}

// Have is the API's have call: the complete blobs of each local node.
func (v *Volume) Have(ctx context.Context) ([]api.NodeHave, error) {
	var out []api.NodeHave
	for _, n := range v.Nodes {
		hs, err := n.Store.Complete()
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Config.NodeID, err)
		}
		out = append(out, api.NodeHave{Node: n.Config.NodeID, Hashes: hs})
	}
	return out, nil
}

// Space is the API's space call.
func (v *Volume) Space(ctx context.Context) ([]api.Disk, error) {
	var out []api.Disk
	for _, n := range v.Nodes {
		total, free, err := n.Store.Space()
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Config.NodeID, err)
		}
		out = append(out, api.Disk{Node: n.Config.NodeID, Root: n.Root, Total: total, Free: free})
	}
	return out, nil
}

// Copies returns how many live nodes (of this process and of peers) hold
// a complete copy of h, and their node ids.
func (v *Volume) Copies(h bt.InfoHash) (int, []string) {
	_, holders := v.peers.copies(h)
	for _, n := range v.Nodes {
		if n.Store.Has(h) {
			holders = append(holders, n.Config.NodeID)
		}
	}
	slices.Sort(holders)
	holders = slices.Compact(holders)
	return len(holders), holders
}

// Status is the API's status call: the namespace, the local nodes, the
// peers, the active swarms and the files' copies (all of them when there
// are at most maxListed files, else those with fewer than two copies).
func (v *Volume) Status(ctx context.Context) (*api.VolumeStatus, error) {
	snap := v.Nodes[0].Repo.Snapshot()
	st := &api.VolumeStatus{Head: hexOrEmpty(snap.Head().String(), snap.Head().IsZero())}
	// The local copies from one listing of each disk's blobs (not a stat
	// per file: peers ask for this every few seconds).
	local := map[bt.InfoHash][]string{}
	blobs := make([]int, len(v.Nodes))
	for i, n := range v.Nodes {
		hs, _ := n.Store.Complete()
		blobs[i] = len(hs)
		for _, h := range hs {
			local[h] = append(local[h], n.Config.NodeID)
		}
	}
	paths := map[bt.InfoHash]string{}
	var all, under []api.FileCopies // every file, and those with fewer than two copies
	snap.Walk(func(p string, e *meta.Entry) bool {
		if e.Kind != meta.KindFile {
			return true
		}
		st.Files++
		st.Bytes += e.Size
		if e.Info == nil {
			return true
		}
		if _, ok := paths[e.Hash]; !ok {
			paths[e.Hash] = p
		}
		if len(all) <= maxListed || len(under) < maxListed {
			_, holders := v.peers.copies(e.Hash)
			holders = append(holders, local[e.Hash]...)
			slices.Sort(holders)
			holders = slices.Compact(holders)
			fc := api.FileCopies{Path: p, InfoHash: e.Hash.String(), Size: e.Size, Copies: len(holders), Holders: holders}
			if len(all) <= maxListed {
				all = append(all, fc)
			}
			if len(holders) < 2 && len(under) < maxListed {
				under = append(under, fc)
			}
		}
		return true
	})
	st.Copies = under
	if st.Files <= maxListed {
		st.Copies = all
	}
	for i, n := range v.Nodes {
		total, free, _ := n.Store.Space()
		h := n.Repo.Head()
		ns := api.NodeStatus{
			ID: n.Config.NodeID, Root: n.Root, Head: hexOrEmpty(h.String(), h.IsZero()),
			Blobs: blobs[i], Total: total, Free: free, BT: ":" + strconv.Itoa(v.btPort),
		}
		if err := n.Repo.Err(); err != nil {
			ns.Error = err.Error()
		}
		st.Nodes = append(st.Nodes, ns)
		for _, sw := range n.Swarms.Active() {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			pr, err := sw.Progress(pctx)
			cancel()
			if err != nil {
				continue
			}
			ss := api.SwarmStatus{InfoHash: sw.InfoHash().String(), Path: paths[sw.InfoHash()], Size: pr.Length,
				Pieces: pr.Total, Have: pr.Pieces, Peers: pr.Peers, Seeding: pr.Total > 0 && pr.Pieces == pr.Total,
				Down: pr.Down, Up: pr.Up}
			if pr.Total > 0 {
				ss.Progress = float64(pr.Pieces) / float64(pr.Total)
			}
			st.Swarm = append(st.Swarm, ss)
		}
	}
	for _, p := range v.peers.list() {
		ps := api.PeerStatus{Node: p.node, Addr: p.api, Alive: p.alive, LastSeen: p.lastSeen, Head: p.head}
		if len(p.bts) > 0 {
			ps.BTAddr = p.bts[0]
		}
		ps.Host, _, _ = net.SplitHostPort(p.api)
		for _, d := range p.disks {
			ps.Total += d.Total
			ps.Free += d.Free
		}
		st.Peers = append(st.Peers, ps)
	}
	return st, nil
}

// maxListed bounds the files listed in a status.
const maxListed = 1000

func hexOrEmpty(s string, zero bool) string {
	if zero {
		return ""
	}
	return s
}

// Progress returns the fraction of h's pieces verified on this process's
// disks: 1 for a complete copy on any of them, else its swarm's progress.
func (v *Volume) Progress(h bt.InfoHash) float64 {
	for _, n := range v.Nodes {
		if n.Store.Has(h) {
			return 1
		}
	}
	sw := v.reg.Get(h)
	if sw == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p, err := sw.Progress(ctx)
	if err != nil || p.Total == 0 {
		return 0
	}
	return float64(p.Pieces) / float64(p.Total)
}
