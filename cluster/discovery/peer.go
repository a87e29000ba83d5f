package discovery

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrInvalid is returned for a configuration discovery cannot announce.
var ErrInvalid = errors.New("discovery: invalid configuration")

// StaticPrefix starts the NodeID of a peer given by hand (--peer): its
// real node id is unknown until the node asks its API.
const StaticPrefix = "static:"

// Peer is one live node as discovery knows it. Peers are values: a Peer
// handed out never changes.
type Peer struct {
	NodeID   string       // the peer's node id; StaticPrefix+"host:port" for static peers
	VolumeID string       // the volume it serves
	Instance string       // its DNS-SD instance name ("" for static peers)
	Host     string       // SRV target ("dfs-….local."), or the host of a static peer
	Addrs    []netip.Addr // addresses it was seen at, sorted; may be empty for a static host name
	BTPort   uint16       // BitTorrent listen port (0 when unknown)
	APIPort  uint16       // HTTP API port
	Format   int          // on-disk and wire format version it speaks (0 when unknown)
	Static   bool         // given by hand, not found by mDNS
	LastSeen time.Time    // last mDNS record from it (start time for static peers)
}

// APIAddr returns host:port of the peer's API, using its first address
// when it has one and its host name otherwise.
func (p Peer) APIAddr() string {
	if len(p.Addrs) > 0 {
		return netip.AddrPortFrom(p.Addrs[0], p.APIPort).String()
	}
	return netJoin(p.Host, p.APIPort)
}

// BTAddr returns ip:port of the peer's BitTorrent listener, invalid when
// no address or port is known.
func (p Peer) BTAddr() netip.AddrPort {
	if len(p.Addrs) == 0 || p.BTPort == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(p.Addrs[0], p.BTPort)
}

func netJoin(host string, port uint16) string {
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a, port).String()
	}
	return host + ":" + strconv.Itoa(int(port))
}

func (p Peer) sameAs(q Peer) bool {
	return p.NodeID == q.NodeID && p.VolumeID == q.VolumeID && p.Instance == q.Instance &&
		p.Host == q.Host && slices.Equal(p.Addrs, q.Addrs) && p.BTPort == q.BTPort &&
		p.APIPort == q.APIPort && p.Format == q.Format && p.Static == q.Static
}

// EventType says what happened to a peer.
type EventType uint8

const (
	// PeerUp is sent when a member peer is first seen (or seen again after
	// it went down).
	PeerUp EventType = iota + 1
	// PeerDown is sent when a member peer goes away; Event.Cause says how.
	PeerDown
	// PeerChanged is sent when a live member's addresses, ports or format
	// change.
	PeerChanged
)

func (t EventType) String() string {
	switch t {
	case PeerUp:
		return "up"
	case PeerDown:
		return "down"
	case PeerChanged:
		return "changed"
	}
	return "EventType(" + strconv.Itoa(int(t)) + ")"
}

// Cause says why a peer went down.
type Cause uint8

const (
	// CauseNone is the cause of events other than PeerDown.
	CauseNone Cause = iota
	// CauseGoodbye: the peer withdrew its announcement (mDNS TTL 0).
	CauseGoodbye
	// CauseExpired: nothing was heard from the peer for the TTL.
	CauseExpired
	// CauseUnreachable: the node reported failed connections to it.
	CauseUnreachable
	// CauseStopped: discovery itself stopped; every peer is reported down.
	CauseStopped
)

func (c Cause) String() string {
	switch c {
	case CauseNone:
		return "none"
	case CauseGoodbye:
		return "goodbye"
	case CauseExpired:
		return "expired"
	case CauseUnreachable:
		return "unreachable"
	case CauseStopped:
		return "stopped"
	}
	return "Cause(" + strconv.Itoa(int(c)) + ")"
}

// Event is one change of the member set.
type Event struct {
	Type  EventType
	Peer  Peer  // the peer as it is now (as it was last, for PeerDown)
	Cause Cause // for PeerDown
}

func (e Event) String() string {
	s := e.Type.String() + " " + e.Peer.NodeID
	if e.Type == PeerDown {
		s += " (" + e.Cause.String() + ")"
	}
	return s
}

// maxEntries bounds the peer table against a hostile LAN.
const maxEntries = 4096

// table is the pure core of discovery: the peer table, fed with sightings
// and the time, answering with events. It is not safe for concurrent use;
// the Discovery actor owns it.
type table struct {
	volume   string        // only peers of this volume are members
	self     string        // our own instance FQDN, ignored
	ttl      time.Duration // expiry without records
	holdDown time.Duration // after PeerUnreachable, sightings are ignored this long

	entries map[string]*entry    // by instance FQDN (or "static:host:port")
	held    map[string]time.Time // instance FQDN → end of hold-down
}

type entry struct {
	peer     Peer
	addrs    map[netip.Addr]time.Time // last seen per address
	lastSeen time.Time
	static   bool
	down     bool // static entries only: held down after PeerUnreachable
	downEnd  time.Time
}

func newTable(volume, self string, ttl, holdDown time.Duration) *table {
	return &table{
		volume:   volume,
		self:     self,
		ttl:      ttl,
		holdDown: holdDown,
		entries:  map[string]*entry{},
		held:     map[string]time.Time{},
	}
}

func (t *table) member(e *entry) bool { return e.peer.VolumeID == t.volume && !e.down }

// addStatic adds a peer given by hand as host:port of its API.
func (t *table) addStatic(now time.Time, host string, port uint16) []Event {
	id := StaticPrefix + netJoin(host, port)
	if _, ok := t.entries[id]; ok {
		return nil
	}
	p := Peer{NodeID: id, VolumeID: t.volume, Host: host, APIPort: port, Static: true, LastSeen: now}
	if a, err := netip.ParseAddr(host); err == nil {
		p.Addrs = []netip.Addr{a.Unmap()}
	}
	t.entries[id] = &entry{peer: p, static: true, lastSeen: now}
	return []Event{{Type: PeerUp, Peer: p}}
}

// observe applies one sighting.
func (t *table) observe(now time.Time, s sighting) []Event {
	if s.instance == t.self {
		return nil
	}
	e, known := t.entries[s.instance]
	if s.goodbye {
		if !known {
			return nil
		}
		delete(t.entries, s.instance)
		if t.member(e) {
			return []Event{{Type: PeerDown, Peer: e.peer, Cause: CauseGoodbye}}
		}
		return nil
	}
	if end, ok := t.held[s.instance]; ok {
		if now.Before(end) {
			return nil
		}
		delete(t.held, s.instance)
	}
	if !known {
		if s.info == nil || len(t.entries) >= maxEntries {
			return nil // resolved by the next full answer
		}
		e = &entry{addrs: map[netip.Addr]time.Time{}}
		e.peer.Instance = strings.TrimSuffix(s.instance, "."+serviceName)
		t.entries[s.instance] = e
	}
	before := e.peer
	e.lastSeen = now
	if s.info != nil {
		e.peer.NodeID = s.info.NodeID
		e.peer.VolumeID = s.info.VolumeID
		e.peer.BTPort = s.info.BTPort
		e.peer.APIPort = s.info.APIPort
		e.peer.Format = s.info.Format
	}
	if s.hasSRV {
		e.peer.Host = s.host
	}
	for _, a := range s.addrs {
		e.addrs[a] = now
	}
	e.peer.Addrs = sortedAddrs(e.addrs)
	e.peer.LastSeen = now
	if !known {
		if t.member(e) {
			return []Event{{Type: PeerUp, Peer: e.peer}}
		}
		return nil
	}
	return t.changed(before, e)
}

func (t *table) changed(before Peer, e *entry) []Event {
	if !t.member(e) || before.sameAs(e.peer) {
		return nil
	}
	return []Event{{Type: PeerChanged, Peer: e.peer}}
}

func sortedAddrs(m map[netip.Addr]time.Time) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// expire drops entries and addresses not heard of for the TTL, ends
// hold-downs, and brings held-down static peers back.
func (t *table) expire(now time.Time) []Event {
	var evs []Event
	for _, k := range t.sortedKeys() {
		e := t.entries[k]
		if e.static {
			if e.down && !now.Before(e.downEnd) {
				e.down = false
				e.peer.LastSeen = now
				evs = append(evs, Event{Type: PeerUp, Peer: e.peer})
			}
			continue
		}
		if now.Sub(e.lastSeen) >= t.ttl {
			delete(t.entries, k)
			if t.member(e) {
				evs = append(evs, Event{Type: PeerDown, Peer: e.peer, Cause: CauseExpired})
			}
			continue
		}
		before := e.peer
		for a, seen := range e.addrs {
			if now.Sub(seen) >= t.ttl {
				delete(e.addrs, a)
			}
		}
		e.peer.Addrs = sortedAddrs(e.addrs)
		evs = append(evs, t.changed(before, e)...)
	}
	for k, end := range t.held {
		if !now.Before(end) {
			delete(t.held, k)
		}
	}
	return evs
}

// nextDeadline returns when expire next has something to do (zero when
// nothing is pending).
func (t *table) nextDeadline() time.Time {
	var next time.Time
	consider := func(d time.Time) {
		if next.IsZero() || d.Before(next) {
			next = d
		}
	}
	for _, e := range t.entries {
		if e.static {
			if e.down {
				consider(e.downEnd)
			}
			continue
		}
		for _, seen := range e.addrs {
			consider(seen.Add(t.ttl))
		}
		consider(e.lastSeen.Add(t.ttl))
	}
	return next
}

// unreachable drops the member with this node id at once and ignores its
// announcements for the hold-down, so it does not flap straight back.
func (t *table) unreachable(now time.Time, nodeID string) []Event {
	for _, k := range t.sortedKeys() {
		e := t.entries[k]
		if e.peer.NodeID != nodeID || !t.member(e) {
			continue
		}
		if e.static {
			e.down = true
			e.downEnd = now.Add(t.holdDown)
		} else {
			delete(t.entries, k)
			t.held[k] = now.Add(t.holdDown)
		}
		return []Event{{Type: PeerDown, Peer: e.peer, Cause: CauseUnreachable}}
	}
	return nil
}

// stop reports every member down and empties the table.
func (t *table) stop() []Event {
	var evs []Event
	for _, p := range t.members() {
		evs = append(evs, Event{Type: PeerDown, Peer: p, Cause: CauseStopped})
	}
	clear(t.entries)
	clear(t.held)
	return evs
}

// members returns the live members, sorted by node id.
func (t *table) members() []Peer {
	var out []Peer
	for _, e := range t.entries {
		if t.member(e) {
			out = append(out, e.peer)
		}
	}
	slices.SortFunc(out, func(a, b Peer) int {
		return cmp.Or(cmp.Compare(a.NodeID, b.NodeID), cmp.Compare(a.Instance, b.Instance))
	})
	return out
}

// volumes returns every live peer found by mDNS, members or not, by
// volume id.
func (t *table) volumes() map[string][]Peer {
	out := map[string][]Peer{}
	for _, k := range t.sortedKeys() {
		e := t.entries[k]
		if e.static || e.down {
			continue
		}
		out[e.peer.VolumeID] = append(out[e.peer.VolumeID], e.peer)
	}
	return out
}

func (t *table) sortedKeys() []string {
	keys := make([]string, 0, len(t.entries))
	for k := range t.entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
