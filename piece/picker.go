package piece

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Picker decides which blocks of one blob to request from which peer, and
// when to cancel duplicate requests. It is a pure state machine in the style
// of etcd-io/raft: no goroutines, no clock, no I/O. The caller (the swarm
// actor) feeds it events (peers, their bitfields and choke state, blocks
// received, pieces verified, reads registered by the filesystem) and calls
// Step with the current time; Step returns the cancels and requests to send,
// in a deterministic total order. Randomness (the tie-break between pieces
// equally rare) comes from Options.Seed, so the same events give the same
// output.
//
// Order of urgency, from most to least urgent:
//
//  0. A block outstanding on a peer for longer than that peer's timeout
//     (Options.LateFactor times its smoothed latency, at least
//     Options.LateMin) is requested from one more peer, unless
//     Options.MaxCopies-1 requests for it are in flight and not late yet: it
//     is older than anything asked for now and holds back its piece.
//  1. Blocks of the pieces covering pending reads (AddRead), earliest
//     deadline first. A read's blocks are spread over all free peers, one
//     block at a time, so a read completes as fast as the swarm allows. When
//     no peer that has the piece has a free slot, a read jumps the queue:
//     the newest request on such a peer that serves no read is cancelled to
//     make room (the peer with the fewest read requests out, then the
//     fastest). A block of a read past its deadline is also requested from a
//     second peer.
//  2. The first and last pieces of the blob while a reader is open
//     (OpenReader), then each reader's read-ahead window (readers in id
//     order): the bytes after its latest sequential read (ReaderAt). The
//     window starts at the reader's ReadAheadMin (ReaderOptions, given to
//     OpenReader or SetReadAhead; default Options.ReadAheadMin), doubles on
//     each sequential read up to its ReadAheadMax, and shrinks back to the
//     minimum on a seek.
//     A piece goes to one peer where it can.
//  3. Only with Options.WantAll (or SetWantAll): rarest-first for the rest
//     of the blob, whole pieces from one peer where possible (a peer keeps
//     filling the piece it started; pieces left half-done by a peer that
//     went away are finished first), at most Options.MaxActive pieces in
//     flight.
//  4. Endgame (WantAll, every missing block requested): a peer with free
//     slots also requests blocks outstanding on other peers, at most
//     Options.MaxCopies copies of a block in flight.
//
// Free peers are served fastest first (smoothed latency; peers not measured
// yet last; then by id), and a block goes to the free peer with the most
// room.
//
// Whenever a block arrives, the other requests for it are cancelled (Step
// returns the cancels first).
//
// Pipeline depth: each peer has a capacity (SetPipeline, default
// Options.Pipeline) and Step never lets a peer's outstanding requests exceed
// it. The picker does not adapt the depth itself: the peer connection sees
// the bytes flow and knows best (its rate times a target latency, the peer's
// reqq); it calls SetPipeline whenever its estimate changes. The picker does
// measure each peer's latency (request to block, smoothed) for the late-block
// timeout, and reports it with Latency.
//
// Choke: while a peer chokes us nothing is requested from it, and when it
// chokes us its outstanding requests are dropped (BEP 3: a choke discards
// them); a block that arrives anyway is still accepted.
//
// A Picker is not safe for concurrent use: its owner is one actor.
type Picker struct {
	geo     Geometry
	opts    Options
	n       int // pieces
	bpp     int // blocks per full piece
	nblocks int // blocks in the blob

	have   bitset       // verified pieces
	nhave  int          // count of have
	pieces []pieceState // per piece
	reqs   []uint8      // per block: outstanding requests
	from   []PeerID     // per block: the peer that delivered it, or noPeer
	unreq  int          // blocks of missing pieces neither received nor requested
	avail  []int32      // per piece: partial peers that have it (have-all peers not counted)

	// The rarest-first order (picker_order.go).
	order   []int32    // pieces, we lack first, by availability
	opos    []int32    // per piece: index in order
	bstart  []int32    // per availability: first index in order
	live    int        // pieces we lack: order[:live]
	partial []int32    // pieces we lack with blocks received or requested
	rng     *rand.Rand // from Options.Seed: places pieces in their bucket
	ppos    []int32    // per piece: index in partial, or -1
	wantAll bool

	peers []*peer // sorted by id
	free  []*peer // scratch for Step: peers that may take requests
	nfree int     // scratch for Step: how many of free have room left

	reads   []*read // sorted by (deadline, id)
	readers []*reader
	out     []Action // returned by Step
	done    []ReadID // returned by PieceVerified
	cancels []Action // queued by events, sent first by the next Step
}

// Options tune a Picker. The zero value of each field selects its default.
type Options struct {
	Seed         uint64        // seeds the tie-break between pieces equally rare
	WantAll      bool          // fetch the whole blob (rarest-first), not only what readers need
	Pipeline     int           // default outstanding requests per peer; default 16
	ReadAheadMin int64         // first read-ahead window; default 256 KiB
	ReadAheadMax int64         // largest read-ahead window; default 64 MiB
	LateMin      time.Duration // a request is never late sooner than this; default 250 ms
	LateFactor   int           // late after LateFactor × the peer's latency; default 4
	MaxCopies    int           // most requests in flight for one block that are not late; default 2
	// MaxActive bounds the pieces rarest-first (tier 3) keeps in flight:
	// while this many pieces we lack have blocks received or requested, it
	// only continues those (peers share them) and starts no new one. The
	// caller that assembles pieces in memory bounds its buffers with it.
	// Reads and read-ahead windows are not bound. 0: no bound.
	MaxActive int
}

func (o *Options) defaults() {
	if o.Pipeline <= 0 {
		o.Pipeline = 16
	}
	if o.ReadAheadMin <= 0 {
		o.ReadAheadMin = 256 << 10
	}
	if o.ReadAheadMax <= 0 {
		o.ReadAheadMax = 64 << 20
	}
	o.ReadAheadMax = max(o.ReadAheadMax, o.ReadAheadMin)
	if o.LateMin <= 0 {
		o.LateMin = 250 * time.Millisecond
	}
	if o.LateFactor <= 0 {
		o.LateFactor = 4
	}
	if o.MaxCopies <= 1 {
		o.MaxCopies = 2
	}
	o.MaxCopies = min(o.MaxCopies, maxReqs)
}

// PeerID is the caller's name for one peer connection. Keep it unique for
// the life of the Picker: PieceFailed reports contributors by PeerID, also
// of peers removed since.
type PeerID uint32

const noPeer = PeerID(1<<32 - 1)

// maxReqs bounds the requests in flight for one block (Picker.reqs is a
// uint8).
const maxReqs = 255

// ReadID names one pending read (AddRead).
type ReadID uint64

// ReaderID names one open reader, a file handle (OpenReader).
type ReaderID uint64

// ActionKind says what an Action asks the caller to send.
type ActionKind uint8

// The kinds of Action.
const (
	Request ActionKind = iota + 1 // send a request for Block to Peer
	Cancel                        // send a cancel for Block to Peer
)

// String returns "request" or "cancel".
func (k ActionKind) String() string {
	switch k {
	case Request:
		return "request"
	case Cancel:
		return "cancel"
	}
	return fmt.Sprintf("ActionKind(%d)", uint8(k))
}

// Action is one message for the caller to send to a peer.
type Action struct {
	Kind  ActionKind
	Peer  PeerID
	Block Block
}

// String formats a as "request 3 5.1" (kind, peer, piece.block).
func (a Action) String() string {
	return fmt.Sprintf("%s %d %s", a.Kind, a.Peer, a.Block)
}

type pieceState struct {
	received  int32  // blocks received, not yet verified
	requested int32  // blocks not received with at least one request out
	owner     PeerID // the peer filling this piece in rarest-first mode, or noPeer
}

type peer struct {
	id       PeerID
	haveAll  bool
	bits     bitset // when !haveAll
	nbits    int    // pieces it has (when !haveAll)
	lack     int    // pieces it has that we do not
	choked   bool   // the peer chokes us
	capacity int
	inflight []flight // oldest first
	urgent   int      // flights with urgent set
	srtt     int64    // smoothed latency in ns; 0 before the first sample
	cur      int      // the piece it is filling in rarest-first mode, or -1
}

type flight struct {
	blk     int32
	late    bool  // found late once: stays late though the timeout may grow
	urgent  bool  // asked for a pending read: never cancelled to make room
	covered bool  // late, and a copy made since is not (cleared when a copy goes away unanswered)
	sentAt  int64 // unix ns
}

type read struct {
	id          ReadID
	first, last int // pieces
	deadline    int64
	missing     int // pieces of first..last not verified
}

type reader struct {
	id       ReaderID
	start    bool  // it has read something
	pos      int64 // offset of its latest read
	next     int64 // end of its latest read: the window starts here
	win      int64 // window length
	min, max int64 // its window bounds; max 0: no read-ahead
}

// ReaderOptions is one reader's read-ahead setting. The zero value takes
// the Picker's Options.
type ReaderOptions struct {
	// ReadAheadMin is the window after the first read and after a seek;
	// ReadAheadMax the largest window sequential reads grow it to. Zero
	// selects Options.ReadAheadMin and ReadAheadMax; Min == Max gives a
	// fixed window.
	ReadAheadMin, ReadAheadMax int64
	// NoReadAhead fetches only what the reader reads (a random-access
	// reader, a database file). The first and last pieces are still
	// fetched early while it is open.
	NoReadAhead bool
}

// NewPicker returns a Picker for a blob of geometry g that has no piece yet.
// Mark pieces already on disk with PieceVerified.
func NewPicker(g Geometry, opts Options) (*Picker, error) {
	if err := g.Check(); err != nil {
		return nil, err
	}
	opts.defaults()
	n := g.NumPieces()
	bpp := int((g.PieceLength + BlockSize - 1) / BlockSize)
	nblocks := (n-1)*bpp + g.NumBlocks(n-1)
	p := &Picker{
		geo:     g,
		opts:    opts,
		n:       n,
		bpp:     bpp,
		nblocks: nblocks,
		have:    newBitset(n),
		pieces:  make([]pieceState, n),
		reqs:    make([]uint8, nblocks),
		from:    make([]PeerID, nblocks),
		unreq:   nblocks,
		avail:   make([]int32, n),
		wantAll: opts.WantAll,
	}
	for i := range p.pieces {
		p.pieces[i].owner = noPeer
	}
	for i := range p.from {
		p.from[i] = noPeer
	}
	p.rng = rand.New(rand.NewPCG(opts.Seed, 0x64656c756765))
	p.initOrder(p.rng.Perm(n))
	return p, nil
}

// Geometry returns the blob's geometry.
func (p *Picker) Geometry() Geometry { return p.geo }

// SetWantAll says whether the whole blob is wanted (rarest-first for what no
// reader needs) or only what readers need.
func (p *Picker) SetWantAll(all bool) { p.wantAll = all }

// Have reports whether piece i is verified.
func (p *Picker) Have(i int) bool { return i >= 0 && i < p.n && p.have.has(i) }

// Count returns the number of verified pieces.
func (p *Picker) Count() int { return p.nhave }

// Complete reports whether every piece is verified.
func (p *Picker) Complete() bool { return p.nhave == p.n }

// blocks of piece i: global ids [base, base+count).
func (p *Picker) blockRange(i int) (base, count int) {
	base = i * p.bpp
	if i == p.n-1 {
		return base, p.nblocks - base
	}
	return base, p.bpp
}

func (p *Picker) blockOf(id int32) Block {
	i := int(id) / p.bpp
	return p.geo.Block(i, int(id)-i*p.bpp)
}

// blockID returns the global id of b, or -1 when b is not an aligned block
// of the blob.
func (p *Picker) blockID(b Block) int32 {
	if b.Piece < 0 || b.Piece >= p.n || b.Begin < 0 || b.Begin%BlockSize != 0 {
		return -1
	}
	k := b.Begin / BlockSize
	if k >= p.geo.NumBlocks(b.Piece) || p.geo.Block(b.Piece, k).Length != b.Length {
		return -1
	}
	return int32(b.Piece*p.bpp + k)
}

// requestable reports whether piece i has blocks neither received nor
// requested.
func (p *Picker) requestable(i int) bool {
	if p.have.has(i) {
		return false
	}
	_, c := p.blockRange(i)
	ps := &p.pieces[i]
	return int(ps.received+ps.requested) < c
}

// ---- peers ----

func (p *Picker) peer(id PeerID) *peer {
	i, ok := slices.BinarySearchFunc(p.peers, id, func(q *peer, id PeerID) int { return cmp.Compare(q.id, id) })
	if !ok {
		return nil
	}
	return p.peers[i]
}

func (q *peer) has(i int) bool { return q.haveAll || q.bits.has(i) }

// AddPeer adds a peer that has nothing yet and chokes us, as every
// BitTorrent connection starts (BEP 3); PeerChoked(id, false) when it
// unchokes us (at once for a cluster peer that never chokes). Adding a peer
// already present does nothing.
func (p *Picker) AddPeer(id PeerID) {
	i, ok := slices.BinarySearchFunc(p.peers, id, func(q *peer, id PeerID) int { return cmp.Compare(q.id, id) })
	if ok {
		return
	}
	q := &peer{id: id, bits: newBitset(p.n), capacity: p.opts.Pipeline, cur: -1, choked: true}
	p.peers = slices.Insert(p.peers, i, q)
	p.growBuckets()
}

// RemovePeer forgets a peer and its outstanding requests (they become
// pending again; no cancels are sent to a peer that is gone).
func (p *Picker) RemovePeer(id PeerID) {
	q := p.peer(id)
	if q == nil {
		return
	}
	p.dropAll(q)
	p.setHaveNone(q)
	p.peers = slices.DeleteFunc(p.peers, func(x *peer) bool { return x == q })
	p.unqueueCancels(id, -1)
}

// Peers returns the number of peers.
func (p *Picker) Peers() int { return len(p.peers) }

// PeerHave records that a peer has piece i (a have message).
func (p *Picker) PeerHave(id PeerID, i int) {
	q := p.peer(id)
	if q == nil || i < 0 || i >= p.n || q.has(i) {
		return
	}
	q.bits.set(i)
	q.nbits++
	p.availInc(i)
	if !p.have.has(i) {
		q.lack++
	}
}

// PeerBitfield replaces a peer's pieces with bf (a bitfield message). A
// full bitfield counts as have-all.
func (p *Picker) PeerBitfield(id PeerID, bf Bitfield) error {
	q := p.peer(id)
	if q == nil {
		return fmt.Errorf("piece: bitfield for unknown peer %d", id)
	}
	if bf.Len() != p.n {
		return fmt.Errorf("%w: %d pieces for a blob of %d", ErrBitfield, bf.Len(), p.n)
	}
	if bf.Full() {
		p.PeerHaveAll(id)
		return nil
	}
	p.setHaveNone(q)
	for i := bf.NextSet(0); i >= 0; i = bf.NextSet(i + 1) {
		p.PeerHave(id, i)
	}
	return nil
}

// PeerHaveAll records that a peer has every piece (BEP 6 have all, or a
// full bitfield).
func (p *Picker) PeerHaveAll(id PeerID) {
	q := p.peer(id)
	if q == nil || q.haveAll {
		return
	}
	p.setHaveNone(q)
	q.haveAll = true
	q.lack = p.n - p.nhave
}

// PeerHaveNone records that a peer has no piece (BEP 6 have none).
func (p *Picker) PeerHaveNone(id PeerID) {
	if q := p.peer(id); q != nil {
		p.setHaveNone(q)
	}
}

func (p *Picker) setHaveNone(q *peer) {
	if q.haveAll {
		q.haveAll = false
	} else if q.nbits > 0 {
		for i := range p.n {
			if q.bits.has(i) {
				p.availDec(i)
			}
		}
		q.bits.clearAll()
	}
	q.nbits = 0
	q.lack = 0
}

// PeerChoked records whether a peer chokes us. A choke drops the peer's
// outstanding requests: they become pending again.
func (p *Picker) PeerChoked(id PeerID, choked bool) {
	q := p.peer(id)
	if q == nil || q.choked == choked {
		return
	}
	q.choked = choked
	if choked {
		p.dropAll(q)
		p.unqueueCancels(id, -1)
	}
}

// SetPipeline sets how many requests may be outstanding on a peer (at least
// 1). Lowering it cancels nothing; Step waits until the peer drains.
func (p *Picker) SetPipeline(id PeerID, n int) {
	if q := p.peer(id); q != nil {
		q.capacity = max(n, 1)
	}
}

// Interesting reports whether a peer has a piece we lack (whether to send it
// interested).
func (p *Picker) Interesting(id PeerID) bool {
	q := p.peer(id)
	return q != nil && q.lack > 0
}

// Outstanding returns the number of requests outstanding on a peer.
func (p *Picker) Outstanding(id PeerID) int {
	if q := p.peer(id); q != nil {
		return len(q.inflight)
	}
	return 0
}

// Latency returns a peer's smoothed latency, request to block (0 before the
// first block).
func (p *Picker) Latency(id PeerID) time.Duration {
	if q := p.peer(id); q != nil {
		return time.Duration(q.srtt)
	}
	return 0
}

// RequestRejected records that a peer rejected a request (BEP 6); the block
// becomes pending again.
func (p *Picker) RequestRejected(id PeerID, b Block) {
	q := p.peer(id)
	blk := p.blockID(b)
	if q == nil || blk < 0 {
		return
	}
	if k := q.find(blk); k >= 0 {
		p.unrequest(q, k)
	} else {
		p.unqueueCancels(id, blk)
	}
}

// unqueueCancels drops the queued cancels for a peer (for one block, or all
// when blk is -1): the peer is gone, choked us, or answered already.
func (p *Picker) unqueueCancels(id PeerID, blk int32) {
	if len(p.cancels) == 0 {
		return
	}
	var b Block
	if blk >= 0 {
		b = p.blockOf(blk)
	}
	p.cancels = slices.DeleteFunc(p.cancels, func(a Action) bool { return a.Peer == id && (blk < 0 || a.Block == b) })
}

// ---- requests ----

// remove forgets q's k-th outstanding request and returns it.
func (q *peer) remove(k int) flight {
	f := q.inflight[k]
	q.inflight = slices.Delete(q.inflight, k, k+1)
	if f.urgent {
		q.urgent--
	}
	return f
}

func (q *peer) find(blk int32) int {
	for k := range q.inflight {
		if q.inflight[k].blk == blk {
			return k
		}
	}
	return -1
}

func (p *Picker) request(q *peer, blk int32, now int64, urgent bool) {
	q.inflight = append(q.inflight, flight{blk: blk, sentAt: now, urgent: urgent})
	if urgent {
		q.urgent++
	}
	p.reqs[blk]++
	if p.reqs[blk] == 1 {
		i := int(blk) / p.bpp
		p.pieces[i].requested++
		p.unreq--
		p.touch(i)
	}
	p.out = append(p.out, Action{Kind: Request, Peer: q.id, Block: p.blockOf(blk)})
}

// unrequest forgets q's k-th outstanding request.
func (p *Picker) unrequest(q *peer, k int) {
	blk := q.remove(k).blk
	p.reqs[blk]--
	if p.reqs[blk] > 0 {
		// Copies left elsewhere may need a new cover.
		for _, o := range p.peers {
			if k := o.find(blk); k >= 0 {
				o.inflight[k].covered = false
			}
		}
	}
	if p.reqs[blk] == 0 && p.from[blk] == noPeer {
		i := int(blk) / p.bpp
		p.pieces[i].requested--
		if !p.have.has(i) {
			p.unreq++
		}
		p.touch(i)
	}
}

func (p *Picker) dropAll(q *peer) {
	for len(q.inflight) > 0 {
		p.unrequest(q, len(q.inflight)-1)
	}
	if q.cur >= 0 && p.pieces[q.cur].owner == q.id {
		p.pieces[q.cur].owner = noPeer
	}
	q.cur = -1
}

// cancelOthers cancels every outstanding request for blk (the caller has
// removed the one that was answered).
func (p *Picker) cancelOthers(blk int32) {
	for _, o := range p.peers {
		if p.reqs[blk] == 0 {
			return
		}
		if k := o.find(blk); k >= 0 {
			o.remove(k)
			p.reqs[blk]--
			p.cancels = append(p.cancels, Action{Kind: Cancel, Peer: o.id, Block: p.blockOf(blk)})
		}
	}
}

// BlockReceived records that a peer delivered block b at now. It returns
// useful=false when the block is not needed (already received or verified,
// or not an aligned block of the blob: drop the data), and pieceDone=true
// when this block completes its piece: the caller verifies it and reports
// PieceVerified or PieceFailed. Requests for b on other peers are cancelled
// by the next Step.
func (p *Picker) BlockReceived(id PeerID, b Block, now time.Time) (useful, pieceDone bool) {
	blk := p.blockID(b)
	if blk < 0 {
		return false, false
	}
	t := now.UnixNano()
	if q := p.peer(id); q != nil {
		if k := q.find(blk); k >= 0 {
			if d := t - q.inflight[k].sentAt; d >= 0 {
				if q.srtt == 0 {
					q.srtt = max(d, 1)
				} else {
					q.srtt += (d - q.srtt) / 8
				}
			}
			p.unrequest(q, k)
		}
	}
	i := b.Piece
	if p.have.has(i) || p.from[blk] != noPeer {
		return false, false
	}
	ps := &p.pieces[i]
	if p.reqs[blk] > 0 {
		ps.requested--
		p.cancelOthers(blk)
	} else {
		p.unreq--
	}
	p.from[blk] = id
	ps.received++
	p.touch(i)
	_, c := p.blockRange(i)
	return true, int(ps.received) == c
}

// PieceVerified records that piece i passed its hash check (or was found on
// disk at start). It returns the reads this completes (they are forgotten);
// the slice is valid until the next call.
// Requests still out for the piece's blocks are cancelled by the next Step.
func (p *Picker) PieceVerified(i int) []ReadID {
	if i < 0 || i >= p.n || p.have.has(i) {
		return nil
	}
	base, c := p.blockRange(i)
	ps := &p.pieces[i]
	for blk := base; blk < base+c; blk++ {
		if p.reqs[blk] > 0 {
			p.cancelOthers(int32(blk))
		}
	}
	p.unreq -= c - int(ps.received) - int(ps.requested)
	for blk := base; blk < base+c; blk++ {
		p.from[blk] = noPeer
	}
	*ps = pieceState{owner: noPeer}
	p.have.set(i)
	p.nhave++
	p.touch(i)
	p.removeOrder(i)
	for _, q := range p.peers {
		if q.has(i) {
			q.lack--
		}
	}
	done := p.done[:0]
	p.reads = slices.DeleteFunc(p.reads, func(r *read) bool {
		if i < r.first || i > r.last {
			return false
		}
		r.missing--
		if r.missing == 0 {
			done = append(done, r.id)
			return true
		}
		return false
	})
	p.done = done
	return done
}

// PieceFailed records that piece i failed its hash check: its blocks are
// pending again. It returns the peers that delivered its blocks, sorted, so
// the caller can blame them.
func (p *Picker) PieceFailed(i int) []PeerID {
	if i < 0 || i >= p.n || p.have.has(i) {
		return nil
	}
	base, c := p.blockRange(i)
	var blame []PeerID
	for blk := base; blk < base+c; blk++ {
		if f := p.from[blk]; f != noPeer {
			if !slices.Contains(blame, f) {
				blame = append(blame, f)
			}
			p.from[blk] = noPeer
			p.unreq++
		}
	}
	p.pieces[i].received = 0
	p.pieces[i].owner = noPeer
	p.touch(i)
	slices.Sort(blame)
	return blame
}

// ---- reads ----

// AddRead registers a pending read of the bytes [off, off+n) that should be
// served by deadline. It returns true when the pieces covering it are
// already verified (nothing is registered then); otherwise PieceVerified
// reports id once they are. Adding an id again replaces the read.
func (p *Picker) AddRead(id ReadID, off, n int64, deadline time.Time) (done bool) {
	p.CancelRead(id)
	if off < 0 {
		n += off
		off = 0
	}
	n = min(n, p.geo.Length-off)
	if n <= 0 {
		return true
	}
	r := &read{
		id:       id,
		first:    int(off / p.geo.PieceLength),
		last:     int((off + n - 1) / p.geo.PieceLength),
		deadline: deadline.UnixNano(),
	}
	for i := r.first; i <= r.last; i++ {
		if !p.have.has(i) {
			r.missing++
		}
	}
	if r.missing == 0 {
		return true
	}
	// Requests already out for these pieces now serve a read: they must not
	// be cancelled to make room for it.
	for _, q := range p.peers {
		for k := range q.inflight {
			if f := &q.inflight[k]; !f.urgent {
				if i := int(f.blk) / p.bpp; i >= r.first && i <= r.last {
					f.urgent = true
					q.urgent++
				}
			}
		}
	}
	k, _ := slices.BinarySearchFunc(p.reads, r, func(a, b *read) int {
		return cmp.Or(cmp.Compare(a.deadline, b.deadline), cmp.Compare(a.id, b.id))
	})
	p.reads = slices.Insert(p.reads, k, r)
	return false
}

// CancelRead forgets a pending read (its outstanding requests stay).
func (p *Picker) CancelRead(id ReadID) {
	p.reads = slices.DeleteFunc(p.reads, func(r *read) bool { return r.id == id })
}

// Reads returns the number of pending reads.
func (p *Picker) Reads() int { return len(p.reads) }

// OpenReader registers an open file handle with its read-ahead setting.
// While any reader is open the first and last pieces are fetched early
// (tier 2). Opening a reader open already changes its setting (as
// SetReadAhead).
func (p *Picker) OpenReader(id ReaderID, o ReaderOptions) {
	if p.reader(id) != nil {
		p.SetReadAhead(id, o)
		return
	}
	r := &reader{id: id}
	p.setBounds(r, o)
	r.win = r.min
	k, _ := slices.BinarySearchFunc(p.readers, id, func(r *reader, id ReaderID) int { return cmp.Compare(r.id, id) })
	p.readers = slices.Insert(p.readers, k, r)
}

// SetReadAhead changes an open reader's read-ahead setting: its window is
// brought within the new bounds at once. An unknown reader is ignored.
func (p *Picker) SetReadAhead(id ReaderID, o ReaderOptions) {
	if r := p.reader(id); r != nil {
		p.setBounds(r, o)
		r.win = min(max(r.win, r.min), r.max)
	}
}

func (p *Picker) setBounds(r *reader, o ReaderOptions) {
	if o.NoReadAhead {
		r.min, r.max = 0, 0
		return
	}
	r.min, r.max = o.ReadAheadMin, o.ReadAheadMax
	if r.min <= 0 {
		r.min = p.opts.ReadAheadMin
	}
	if r.max <= 0 {
		r.max = max(p.opts.ReadAheadMax, r.min)
	}
	r.max = max(r.max, r.min)
}

// CloseReader forgets a reader and its read-ahead window.
func (p *Picker) CloseReader(id ReaderID) {
	p.readers = slices.DeleteFunc(p.readers, func(r *reader) bool { return r.id == id })
}

func (p *Picker) reader(id ReaderID) *reader {
	k, ok := slices.BinarySearchFunc(p.readers, id, func(r *reader, id ReaderID) int { return cmp.Compare(r.id, id) })
	if !ok {
		return nil
	}
	return p.readers[k]
}

// ReaderAt records that reader id read [off, off+n). A read that starts
// where the previous one ended, or a little back or ahead inside the window,
// is sequential: the window doubles (up to the reader's ReadAheadMax).
// Anything else is a seek: the window shrinks back to its ReadAheadMin. The
// window covers the bytes after this read. An unknown reader is opened
// first, with the Picker's Options.
func (p *Picker) ReaderAt(id ReaderID, off, n int64) {
	r := p.reader(id)
	if r == nil {
		p.OpenReader(id, ReaderOptions{})
		r = p.reader(id)
	}
	n = max(n, 0)
	if r.start && off >= r.pos && off <= r.next+r.win {
		if off+n > r.next {
			r.win = min(2*r.win, r.max)
			r.next = off + n
		}
	} else {
		r.win = r.min
		r.next = off + n
	}
	r.start = true
	r.pos = off
}

// Window returns reader id's read-ahead window [off, off+n) (n is 0 before
// its first read or for an unknown reader).
func (p *Picker) Window(id ReaderID) (off, n int64) {
	r := p.reader(id)
	if r == nil || !r.start {
		return 0, 0
	}
	off = min(r.next, p.geo.Length)
	return off, min(r.win, p.geo.Length-off)
}
