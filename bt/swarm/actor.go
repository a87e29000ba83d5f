package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/wire"
	"github.com/delugefs/delugefs/piece"
)

// tickEvery is the period of the actor's housekeeping: rates, pipeline
// depths, timeouts, choke rounds, reads without peers, redials.
const tickEvery = 100 * time.Millisecond

// A swarm that still wants pieces and has no connection redials the
// addresses given to AddPeer, each after a backoff that starts at
// redialMin and doubles up to redialMax (reset once a dial succeeds). It
// remembers at most maxKnown addresses.
const (
	redialMin = 500 * time.Millisecond
	redialMax = 2 * time.Minute
	maxKnown  = 256
)

// redialState is the backoff of one address given to AddPeer.
type redialState struct {
	next    time.Time // no redial before
	backoff time.Duration
}

// actorPeer is the actor's state of one connection.
type actorPeer struct {
	closed         bool
	amInterested   bool // we told the peer we are interested
	peerInterested bool
	peerChoking    bool
	trusted        bool
	haveAll        bool
	bits           piece.Bitfield // its pieces, once the info is known
	rawBits        []byte         // a bitfield received before the info
	preHaves       []uint32       // haves received before the info
	reqq           int            // the peer's reqq, 0 if not given
	metaSize       int64          // metadata_size it announced
	depth          int            // pipeline depth given to the picker
	downRate       float64        // bytes/s, smoothed
	upRate         float64
	lastDown       int64 // c.down at the last tick
	lastUp         int64
	idleMark       time.Time // last tick with nothing outstanding
}

// actor is the state of one run of Swarm.Serve, owned by its goroutine.
type actor struct {
	s   *Swarm
	cfg *Config
	log *slog.Logger
	ctx context.Context
	wg  *sync.WaitGroup // connections, dials, verifiers

	t     *torrent      // nil until the info is known
	pk    *piece.Picker // nil until the info is known
	fetch *wire.MetadataFetcher[piece.PeerID]

	conns    map[piece.PeerID]*conn
	addrs    map[piece.PeerID]string // every peer ever connected, for blame
	dialing  map[string]bool
	known    map[string]*redialState // addresses given to AddPeer, for redials
	nextID   piece.PeerID
	lastFrom []piece.PeerID // per piece: the last peer that sent a block of it

	reads    map[piece.ReadID]*pendingRead
	preReads []*pendingRead // reads waiting for the info
	readers  map[uint64]*Reader

	verifyQ  []int
	verifyCh chan int
	persist  chan struct{} // 1-buffered: wakes the persister

	strikes map[string]int // failed pieces per address
	goods   map[string]int // verified pieces per address

	nextChoke      time.Time
	nextOptimistic time.Time
	optimistic     *conn
	lastTick       time.Time
	interestDirty  bool
	spare          []event
}

// Serve runs the swarm until ctx ends: it accepts connections handed over
// by Accept, dials peers given to AddPeer, downloads, verifies, serves and
// chokes. When ctx ends it closes every connection and returns after all
// its goroutines have. It returns an error only when the swarm cannot go
// on (a fetched info dictionary that does not parse, a disk failure).
func (s *Swarm) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return errors.New("swarm: Serve is already running")
	}
	if s.closed {
		s.mu.Unlock()
		return ErrStopped
	}
	s.serving = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.serving = false
		s.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	a := &actor{
		s:        s,
		cfg:      &s.cfg,
		log:      s.cfg.Logger.With("swarm", s.hash.String()[:12]),
		ctx:      ctx,
		wg:       &wg,
		conns:    map[piece.PeerID]*conn{},
		addrs:    map[piece.PeerID]string{},
		dialing:  map[string]bool{},
		known:    map[string]*redialState{},
		reads:    map[piece.ReadID]*pendingRead{},
		readers:  map[uint64]*Reader{},
		verifyCh: make(chan int),
		persist:  make(chan struct{}, 1),
		strikes:  map[string]int{},
		goods:    map[string]int{},
	}
	if err := a.initTorrent(); err != nil {
		return err
	}
	if a.t == nil {
		a.fetch = wire.NewMetadataFetcher[piece.PeerID](s.hash, 0)
	}
	for range s.cfg.Verifiers {
		wg.Go(func() { a.verifier(ctx) })
	}
	wg.Go(func() { a.persister(ctx) })
	err := a.loop()
	cancel()
	wg.Wait()
	// Every connection, dial and verifier has ended: what is left in the
	// mailbox from them is stale. Calls posted from now on wait for the
	// next run (or Close).
	a.shutdown(s.box.take(nil))
	return err
}

func (a *actor) loop() error {
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	a.lastTick = time.Now()
	a.nextChoke = a.lastTick.Add(a.cfg.ChokeInterval)
	a.nextOptimistic = a.lastTick
	for {
		var vch chan int
		var next int
		if len(a.verifyQ) > 0 {
			vch, next = a.verifyCh, a.verifyQ[0]
		}
		select {
		case <-a.ctx.Done():
			return nil
		case <-a.s.box.wake:
			evs := a.s.box.take(a.spare)
			now := time.Now()
			for i := range evs {
				if err := a.handle(&evs[i], now); err != nil {
					return err
				}
			}
			a.spare = evs
		case vch <- next:
			a.verifyQ = a.verifyQ[1:]
		case now := <-tick.C:
			a.tick(now)
		}
		a.step()
	}
}

// shutdown answers everyone still waiting and closes connections that were
// handed over but never started. Reads fail with ErrStopped: their callers
// may retry once the swarm runs again.
func (a *actor) shutdown(left []event) {
	for _, r := range a.reads {
		r.answer(ErrStopped)
	}
	for _, r := range a.preReads {
		r.answer(ErrStopped)
	}
	for _, e := range left {
		switch e.kind {
		case evRead:
			e.read.answer(ErrStopped)
		case evConn:
			e.hs.nc.Close()
		case evProgress:
			e.prog <- Progress{}
		case evPeers:
			e.peers <- nil
		}
	}
}

// verifier hashes the pieces the actor hands it and reports the results.
// A piece assembled in a buffer is hashed there and written in one piece
// (Blob.WritePiece); a direct one is hashed back from disk. Either way its
// buffer goes back to the pool before the actor hears of the result.
func (a *actor) verifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case i := <-a.verifyCh:
			t := a.s.state.Load()
			var ok bool
			var err error
			if pb := t.bufs[i].Load(); pb != nil && pb != direct {
				ok, err = t.blob.WritePiece(i, pb.data[:t.info.PieceSize(i)])
			} else {
				ok, err = t.blob.VerifyPiece(i)
			}
			t.releaseBuf(i)
			a.s.box.post(event{kind: evVerified, index: uint32(i), ok: ok, err: err})
		}
	}
}

// persister persists the blob's marks off the hot path: woken after
// verified pieces and on every tick, it syncs the blob when a persistence
// is due (Blob.Due: 64 MiB or a second of new marks, or the last piece),
// and closes Done once the blob is complete in the store. The data of a
// mark is always durable before the mark is (Blob.Sync).
func (a *actor) persister(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.persist:
		}
		t := a.s.state.Load()
		if t == nil {
			continue
		}
		if t.blob.Due() {
			if err := t.blob.Sync(); err != nil {
				a.log.Error("persist verified pieces", "err", err) // retried on the next tick
				continue
			}
		}
		if t.blob.Complete() { // by Sync, or by VerifyPiece of the last piece
			a.s.markDone()
		}
	}
}

// wakePersister wakes the persister (coalesced, never blocks).
func (a *actor) wakePersister() {
	select {
	case a.persist <- struct{}{}:
	default:
	}
}

// initTorrent builds the picker once the info is known.
func (a *actor) initTorrent() error {
	t := a.s.state.Load()
	if t == nil {
		return nil
	}
	pk, err := piece.NewPicker(t.geo, piece.Options{
		Seed:         a.cfg.Seed,
		WantAll:      !a.cfg.StreamOnly,
		Pipeline:     a.cfg.PipelineStart,
		ReadAheadMin: a.cfg.ReadAheadMin,
		ReadAheadMax: a.cfg.ReadAheadMax,
		// Rarest-first stays within the piece buffers, with room for
		// reads and read-ahead (which may write direct when it takes
		// the last ones).
		MaxActive: t.maxActive(),
	})
	if err != nil {
		return fmt.Errorf("swarm %v: %w", a.s.hash, err)
	}
	have := t.blob.Have()
	for i := range t.geo.NumPieces() {
		on := have.Has(i)
		t.releaseBuf(i)   // a previous run's partial pieces start over
		t.setPiece(i, on) // (buffers first: see torrent.bufs)
		if on {
			pk.PieceVerified(i)
		}
	}
	a.t, a.pk = t, pk
	a.lastFrom = make([]piece.PeerID, t.geo.NumPieces())
	if pk.Complete() {
		if t.blob.Complete() {
			a.s.markDone()
		} else {
			a.wakePersister()
		}
	}
	return nil
}

// gotInfo takes the info dictionary a magnet fetch verified.
func (a *actor) gotInfo(raw []byte) error {
	info, err := bt.ParseInfo(raw)
	if err != nil {
		return fmt.Errorf("swarm %v: fetched info: %w", a.s.hash, err)
	}
	if info.Hash() != a.s.hash {
		return fmt.Errorf("swarm %v: fetched info hashes to %v", a.s.hash, info.Hash())
	}
	if err := a.s.setInfo(info); err != nil {
		return err
	}
	if err := a.initTorrent(); err != nil {
		return err
	}
	a.fetch = nil
	a.log.Info("got info", "length", info.Length, "pieces", info.NumPieces())
	n := a.t.geo.NumPieces()
	for _, c := range a.conns {
		a.addToPicker(c)
		switch {
		case c.a.haveAll:
			a.pk.PeerHaveAll(c.id)
		case c.a.rawBits != nil:
			bf, err := piece.ParseBitfield(c.a.rawBits, n)
			if err != nil {
				a.closeConn(c, fmt.Errorf("bitfield: %w", err))
				continue
			}
			c.a.bits = bf
			a.pk.PeerBitfield(c.id, bf)
		}
		c.a.rawBits = nil
		for _, i := range c.a.preHaves {
			a.peerHave(c, i)
		}
		c.a.preHaves = nil
		if have := a.t.blob.Have(); have.Count() > 0 {
			for i := have.NextSet(0); i >= 0; i = have.NextSet(i + 1) {
				c.out.push(wire.Message{ID: wire.Have, Index: uint32(i)})
			}
		}
	}
	for id, rd := range a.readers {
		a.pk.OpenReader(piece.ReaderID(id), rd.options())
	}
	pre := a.preReads
	a.preReads = nil
	for _, r := range pre {
		r.answer(nil) // the reader now registers its range against the info
	}
	a.interestDirty = true
	return nil
}

func (a *actor) addToPicker(c *conn) {
	if c.a.bits.Len() == 0 {
		c.a.bits = piece.NewBitfield(a.t.geo.NumPieces())
	}
	a.pk.AddPeer(c.id)
	a.pk.PeerChoked(c.id, c.a.peerChoking)
	a.pk.SetPipeline(c.id, c.a.depth)
}

// step runs the picker and sends what it decides, then interest and
// metadata requests.
func (a *actor) step() {
	if a.pk != nil {
		acts := a.pk.Step(time.Now())
		var cur *conn
		for _, act := range acts {
			c := a.conns[act.Peer]
			if c == nil {
				continue
			}
			if c != cur {
				if cur != nil {
					cur.out.mu.Unlock()
					cur.out.signal()
				}
				cur = c
				cur.out.mu.Lock()
			}
			m := wire.NewRequest(uint32(act.Block.Piece), uint32(act.Block.Begin), uint32(act.Block.Length))
			if act.Kind == piece.Cancel {
				m.ID = wire.Cancel
			}
			c.out.q = append(c.out.q, outItem{m: m})
		}
		if cur != nil {
			cur.out.mu.Unlock()
			cur.out.signal()
		}
	}
	if a.interestDirty {
		a.interestDirty = false
		for _, c := range a.conns {
			want := a.pk != nil && !a.pk.Complete() && a.pk.Interesting(c.id)
			if want != c.a.amInterested {
				c.a.amInterested = want
				id := wire.NotInterested
				if want {
					id = wire.Interested
				}
				c.out.push(wire.Message{ID: id})
			}
		}
	}
	if a.fetch != nil {
		for _, c := range a.conns {
			peer := uint8(c.peerMeta.Load())
			if peer == 0 {
				continue
			}
			for {
				m, ok := a.fetch.Next(c.id)
				if !ok {
					break
				}
				payload, err := m.AppendBinary(nil)
				if err != nil {
					break
				}
				c.out.push(wire.NewExtended(peer, payload))
			}
		}
	}
}

// handle applies one event.
func (a *actor) handle(e *event, now time.Time) error {
	c := e.c
	if c != nil && c.a.closed {
		// A late event of a closed connection. A block it claimed and
		// wrote is not reported: release the claim so that the block is
		// taken from the peer the picker asks next.
		switch e.kind {
		case evBlock:
			if a.t != nil {
				if blk, ok := a.t.blockID(e.index, e.begin, e.length); ok {
					a.t.unclaim(blk)
				}
			}
			a.reask(e)
		case evDropped:
			a.reask(e)
		}
		return nil
	}
	switch e.kind {
	case evDropped:
		a.reask(e)
	case evBlock:
		if a.pk == nil {
			return nil
		}
		b := piece.Block{Piece: int(e.index), Begin: int(e.begin), Length: int(e.length)}
		_, done := a.pk.BlockReceived(c.id, b, now)
		a.lastFrom[b.Piece] = c.id
		if done {
			a.verifyQ = append(a.verifyQ, b.Piece)
		}
	case evHave:
		if a.t == nil {
			c.a.preHaves = append(c.a.preHaves, e.index)
			return nil
		}
		a.peerHave(c, e.index)
	case evBitfield:
		if a.t == nil {
			c.a.rawBits = e.data
			return nil
		}
		bf, err := piece.ParseBitfield(e.data, a.t.geo.NumPieces())
		if err != nil {
			a.closeConn(c, fmt.Errorf("bitfield: %w", err))
			return nil
		}
		c.a.bits, c.a.haveAll = bf, false
		a.pk.PeerBitfield(c.id, bf)
		a.interestDirty = true
	case evHaveAll:
		c.a.haveAll = true
		if a.pk != nil {
			a.pk.PeerHaveAll(c.id)
			a.interestDirty = true
		}
	case evHaveNone:
		c.a.haveAll, c.a.rawBits, c.a.preHaves = false, nil, nil
		if a.pk != nil {
			c.a.bits = piece.NewBitfield(a.t.geo.NumPieces())
			a.pk.PeerHaveNone(c.id)
			a.interestDirty = true
		}
	case evChoke, evUnchoke:
		c.a.peerChoking = e.kind == evChoke
		if a.pk != nil {
			a.pk.PeerChoked(c.id, c.a.peerChoking)
		}
	case evInterested:
		c.a.peerInterested = true
		if c.choking.Load() && a.regularUnchoked() < a.cfg.UnchokeSlots {
			a.setChoke(c, false)
		}
	case evNotInterested:
		c.a.peerInterested = false
	case evReject:
		if a.pk != nil {
			a.pk.RequestRejected(c.id, piece.Block{Piece: int(e.index), Begin: int(e.begin), Length: int(e.length)})
		}
	case evExtHandshake:
		c.a.reqq = e.ext.Reqq
		c.a.metaSize = e.ext.MetadataSize
		if c.a.reqq > 0 && c.a.depth > c.a.reqq {
			c.a.depth = c.a.reqq
			if a.pk != nil {
				a.pk.SetPipeline(c.id, c.a.depth)
			}
		}
		if a.fetch != nil && c.peerMeta.Load() != 0 {
			if err := a.fetch.AddPeer(c.id, e.ext.MetadataSize); err != nil {
				a.closeConn(c, err)
			}
		}
	case evMetadata:
		if a.fetch == nil {
			return nil
		}
		info, blame, err := a.fetch.Receive(c.id, e.meta)
		if err != nil {
			if len(blame) == 0 {
				a.closeConn(c, err)
				return nil
			}
			for _, id := range blame {
				a.ban(a.addrs[id], err)
			}
			return nil
		}
		if info != nil {
			return a.gotInfo(info)
		}
	case evClosed:
		a.closeConn(c, e.err)
	case evConn:
		a.addConn(e.hs, now)
	case evDialFailed:
		delete(a.dialing, e.addr)
		a.log.Debug("dial failed", "peer", e.addr, "err", e.err)
	case evVerified:
		a.verified(int(e.index), e.ok, e.err)
	case evAddPeer:
		if a.known[e.addr] == nil && len(a.known) < maxKnown {
			a.known[e.addr] = &redialState{backoff: redialMin}
		}
		a.dialPeer(e.addr, now)
	case evRead:
		a.addRead(e.read, now)
	case evCancelRead:
		id := piece.ReadID(e.id)
		if a.pk != nil {
			a.pk.CancelRead(id)
		}
		delete(a.reads, id)
	case evReaderOpen:
		// Also a new setting (SetReadAhead), and a reader opened in a
		// previous run that reads (evReaderAt).
		a.readers[e.id] = e.rd
		if a.pk != nil {
			a.pk.OpenReader(piece.ReaderID(e.id), e.rd.options())
		}
	case evReaderAt:
		if a.readers[e.id] == nil {
			a.readers[e.id] = e.rd // opened in a previous run
			if a.pk != nil {
				a.pk.OpenReader(piece.ReaderID(e.id), e.rd.options())
			}
		}
		if a.pk != nil {
			a.pk.ReaderAt(piece.ReaderID(e.id), e.off, e.n)
		}
	case evReaderClose:
		delete(a.readers, e.id)
		if a.pk != nil {
			a.pk.CloseReader(piece.ReaderID(e.id))
		}
	case evProgress:
		e.prog <- a.progress()
	case evPeers:
		e.peers <- a.peerList()
	}
	return nil
}

// reask makes the block of e pending again on every peer: while a
// connection held its claim (and then closed, or failed to read it),
// another may have received its copy and skipped it, and would never
// deliver it.
func (a *actor) reask(e *event) {
	if a.pk == nil {
		return
	}
	b := piece.Block{Piece: int(e.index), Begin: int(e.begin), Length: int(e.length)}
	for _, o := range a.conns {
		a.pk.RequestRejected(o.id, b)
	}
}

func (a *actor) peerHave(c *conn, index uint32) {
	if int64(index) >= int64(a.t.geo.NumPieces()) {
		a.closeConn(c, fmt.Errorf("have %d of %d pieces", index, a.t.geo.NumPieces()))
		return
	}
	if !c.a.haveAll {
		c.a.bits.Set(int(index))
	}
	a.pk.PeerHave(c.id, int(index))
	if !a.pk.Have(int(index)) {
		a.interestDirty = true
	}
}

// dupRank orders the connections to one peer the same way on both ends of
// each: first the one dialed by the lower peer id, then the one whose
// dialing end has the lower port (both ends see the same TCP 4-tuple).
func (a *actor) dupRank(outbound bool, nc net.Conn, peer [20]byte) [2]int {
	var r [2]int
	if outbound != (string(a.cfg.PeerID[:]) < string(peer[:])) {
		r[0] = 1
	}
	addr := nc.RemoteAddr()
	if outbound {
		addr = nc.LocalAddr()
	}
	if ta, ok := addr.(*net.TCPAddr); ok {
		r[1] = ta.Port
	}
	return r
}

// dupLess reports whether rank x is kept over rank y. Equal ranks (not
// TCP) keep the newer connection.
func dupLess(x, y [2]int) bool {
	return x[0] < y[0] || x[0] == y[0] && x[1] < y[1]
}

// addConn starts a connection whose handshake is done.
func (a *actor) addConn(hs *handshaken, now time.Time) {
	if hs.outbound {
		delete(a.dialing, hs.addr)
		if r := a.known[hs.addr]; r != nil {
			r.backoff = redialMin
		}
	}
	refuse := func(why string) {
		a.log.Debug("connection refused", "peer", hs.addr, "why", why)
		hs.nc.Close()
	}
	if a.cfg.Bans.Banned(hs.addr, now) {
		refuse("banned")
		return
	}
	for _, o := range a.conns {
		if o.peerID != hs.peerID {
			continue
		}
		// Two connections to one peer: both ends must keep the same
		// one, whatever order they saw them in.
		if dupLess(a.dupRank(o.outbound, o.nc, o.peerID), a.dupRank(hs.outbound, hs.nc, hs.peerID)) {
			refuse("duplicate")
			return
		}
		a.closeConn(o, errors.New("swarm: replaced by a duplicate connection both ends prefer"))
	}
	if len(a.conns) >= a.cfg.MaxPeers {
		refuse("too many peers")
		return
	}
	a.nextID++
	c := &conn{
		s:        a.s,
		id:       a.nextID,
		nc:       hs.nc,
		addr:     hs.addr,
		outbound: hs.outbound,
		peerID:   hs.peerID,
		fast:     hs.reserved.Fast(),
		ext:      hs.reserved.Extended(),
	}
	c.out.wake = make(chan struct{}, 1)
	c.choking.Store(true)
	c.lastRecv.Store(now.UnixNano())
	c.a.peerChoking = true
	c.a.depth = a.cfg.PipelineStart
	c.a.idleMark = now
	c.a.trusted = a.cfg.Trusted != nil && a.cfg.Trusted(hs.addr)
	if tc, ok := hs.nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}

	// First messages: extension handshake, then what we have.
	if c.ext {
		h := wire.ExtHandshake{
			M:    map[string]int{wire.ExtMetadata: extMetadataID},
			V:    "DelugeFS",
			P:    a.cfg.ListenPort,
			Reqq: a.cfg.MaxServe,
		}
		if a.t != nil {
			h.MetadataSize = a.t.meta.Size()
		}
		if payload, err := h.Bencode(); err == nil {
			c.out.push(wire.NewExtended(wire.ExtHandshakeID, payload))
		}
	}
	switch {
	case a.t == nil:
		if c.fast {
			c.out.push(wire.Message{ID: wire.HaveNone})
		}
	case a.pk.Complete() && c.fast:
		c.out.push(wire.Message{ID: wire.HaveAll})
	case a.pk.Count() == 0:
		if c.fast {
			c.out.push(wire.Message{ID: wire.HaveNone})
		}
	default:
		have := a.t.blob.Have()
		c.out.push(wire.Message{ID: wire.Bitfield, Bitfield: append([]byte(nil), have.Bytes()...)})
	}
	if c.a.trusted {
		a.setChoke(c, false)
	}
	a.conns[c.id] = c
	a.addrs[c.id] = c.addr
	if a.pk != nil {
		a.addToPicker(c)
	}
	a.log.Debug("peer connected", "peer", c.addr, "outbound", c.outbound, "fast", c.fast, "ext", c.ext)
	a.wg.Go(func() {
		err := c.run(a.ctx)
		a.s.box.post(event{kind: evClosed, c: c, err: err})
	})
}

// closeConn forgets a connection (closing it if it is still open); its
// outstanding requests go back to the picker.
func (a *actor) closeConn(c *conn, err error) {
	if c.a.closed {
		return
	}
	out := 0
	if a.pk != nil {
		out = a.pk.Outstanding(c.id)
	}
	c.a.closed = true
	c.nc.Close()
	delete(a.conns, c.id)
	if a.pk != nil {
		a.pk.RemovePeer(c.id)
	}
	if a.fetch != nil {
		a.fetch.RemovePeer(c.id)
	}
	if a.optimistic == c {
		a.optimistic = nil
	}
	a.log.Debug("peer state at close", "peer", c.addr, "outbound", c.outbound,
		"down", c.down.Load(), "up", c.up.Load(), "amChoking", c.choking.Load(), "peerChoking", c.a.peerChoking,
		"amInterested", c.a.amInterested, "peerInterested", c.a.peerInterested, "outstanding", out)
	switch {
	case err == nil, errors.Is(err, errPeerClosed), errors.Is(err, context.Canceled), errors.Is(err, net.ErrClosed):
		a.log.Debug("peer gone", "peer", c.addr, "err", err)
	default:
		a.log.Info("peer closed", "peer", c.addr, "reason", err)
	}
}

func (a *actor) dialPeer(addr string, now time.Time) {
	if a.dialing[addr] || a.cfg.Bans.Banned(addr, now) {
		return
	}
	for _, c := range a.conns {
		if c.outbound && c.addr == addr {
			return
		}
	}
	a.dialing[addr] = true
	if r := a.known[addr]; r != nil {
		r.next = now.Add(r.backoff)
		r.backoff = min(2*r.backoff, redialMax)
	}
	a.wg.Go(func() {
		hs, err := a.s.dial(a.ctx, addr)
		if err != nil {
			a.s.box.post(event{kind: evDialFailed, addr: addr, err: err})
			return
		}
		if !a.s.box.post(event{kind: evConn, hs: hs}) {
			hs.nc.Close()
		}
	})
}

// verified takes the result of a piece's hash check.
func (a *actor) verified(i int, ok bool, err error) {
	if err != nil {
		a.log.Error("verify piece", "piece", i, "err", err)
		if !ok {
			a.pk.PieceFailed(i)
			a.t.setPiece(i, false)
			return
		}
	}
	if !ok {
		blame := a.pk.PieceFailed(i)
		a.t.setPiece(i, false)
		for _, id := range blame {
			addr := a.addrs[id]
			a.strikes[addr]++
			a.log.Info("piece failed its hash", "piece", i, "peer", addr, "strikes", a.strikes[addr])
			if a.strikes[addr] >= a.cfg.BanStrikes && a.strikes[addr] > a.goods[addr] {
				a.ban(addr, fmt.Errorf("%d pieces failed their hash", a.strikes[addr]))
			}
		}
		return
	}
	if addr, ok := a.addrs[a.lastFrom[i]]; ok {
		a.goods[addr]++
	}
	for _, id := range a.pk.PieceVerified(i) {
		if r := a.reads[id]; r != nil {
			r.answer(nil)
			delete(a.reads, id)
		}
	}
	for _, c := range a.conns {
		if !c.a.haveAll && !c.a.bits.Has(i) {
			c.out.push(wire.Message{ID: wire.Have, Index: uint32(i)})
		}
	}
	a.interestDirty = true
	a.wakePersister()
	if a.pk.Complete() {
		a.log.Info("blob complete", "length", a.t.info.Length)
	}
}

// ban refuses addr for Config.BanDuration and closes its connections.
func (a *actor) ban(addr string, why error) {
	a.cfg.Bans.Ban(addr, time.Now().Add(a.cfg.BanDuration))
	a.log.Warn("peer banned", "peer", addr, "reason", why, "for", a.cfg.BanDuration)
	for _, c := range a.conns {
		if c.addr == addr {
			a.closeConn(c, fmt.Errorf("%w: %v", ErrBanned, why))
		}
	}
}

// addRead registers a pending read, or answers it at once.
func (a *actor) addRead(r *pendingRead, now time.Time) {
	if a.pk == nil {
		if !a.checkRead(r, now) {
			a.preReads = append(a.preReads, r)
		}
		return
	}
	if a.pk.AddRead(r.id, r.off, r.n, r.deadline) {
		r.answer(nil)
		return
	}
	a.reads[r.id] = r
	a.checkRead(r, now)
}

// checkRead fails a read no peer could serve for Config.NoPeerWait. It
// reports whether the read failed.
func (a *actor) checkRead(r *pendingRead, now time.Time) bool {
	if a.canServe(r) {
		r.since = time.Time{}
		return false
	}
	if r.since.IsZero() {
		r.since = now
	}
	if now.Sub(r.since) < a.cfg.NoPeerWait {
		return false
	}
	r.answer(fmt.Errorf("swarm: read %d+%d: %w", r.off, r.n, ErrNoPeers))
	if a.pk != nil {
		a.pk.CancelRead(r.id)
	}
	delete(a.reads, r.id)
	return true
}

// canServe reports whether some connected peer has every piece r misses
// (or, before the info, whether some peer offers the metadata).
func (a *actor) canServe(r *pendingRead) bool {
	if a.t == nil {
		for _, c := range a.conns {
			if c.a.metaSize > 0 {
				return true
			}
		}
		return false
	}
	pl := a.t.info.PieceLength
	last := int((r.off + max(r.n, 1) - 1) / pl)
	for i := int(r.off / pl); i <= last; i++ {
		if a.pk.Have(i) {
			continue
		}
		found := false
		for _, c := range a.conns {
			if c.a.haveAll || c.a.bits.Has(i) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// tick does the periodic housekeeping.
func (a *actor) tick(now time.Time) {
	a.wakePersister()
	dt := now.Sub(a.lastTick).Seconds()
	a.lastTick = now
	for _, c := range a.conns {
		a.measure(c, dt, now)
	}
	if !now.Before(a.nextChoke) || !now.Before(a.nextOptimistic) {
		rotate := !now.Before(a.nextOptimistic)
		if rotate {
			a.nextOptimistic = now.Add(a.cfg.OptimisticInterval)
		}
		a.nextChoke = now.Add(a.cfg.ChokeInterval)
		a.rechoke(rotate)
	}
	for _, r := range a.reads {
		a.checkRead(r, now)
	}
	a.redial(now)
	kept := a.preReads[:0]
	for _, r := range a.preReads {
		if !a.checkRead(r, now) {
			kept = append(kept, r)
		}
	}
	clear(a.preReads[len(kept):])
	a.preReads = kept
}

// redial dials again the known addresses whose backoff has passed, while
// the swarm wants pieces and has no connection and no dial under way: a
// swarm whose peers all went (a stall closed the last connection, a peer
// restarted) heals itself.
func (a *actor) redial(now time.Time) {
	if len(a.conns) > 0 || len(a.dialing) > 0 || (a.pk != nil && a.pk.Complete()) {
		return
	}
	for addr, r := range a.known {
		if now.Before(r.next) {
			continue
		}
		if a.cfg.Bans.Banned(addr, now) {
			delete(a.known, addr)
			continue
		}
		a.log.Debug("redial", "peer", addr, "backoff", r.backoff)
		a.dialPeer(addr, now)
	}
}

// measure updates a connection's rates and pipeline depth and closes it
// when it sits on requests without delivering.
func (a *actor) measure(c *conn, dt float64, now time.Time) {
	down, up := c.down.Load(), c.up.Load()
	if dt > 0 {
		const alpha = 0.3
		c.a.downRate += alpha * (float64(down-c.a.lastDown)/dt - c.a.downRate)
		c.a.upRate += alpha * (float64(up-c.a.lastUp)/dt - c.a.upRate)
	}
	c.a.lastDown, c.a.lastUp = down, up
	if a.pk == nil {
		return
	}
	// Pipeline: the peer's rate times the target latency, growing at most
	// twofold per tick (slow start), within the bounds and the peer's reqq.
	want := int(c.a.downRate * a.cfg.PipelineTarget.Seconds() / piece.BlockSize)
	want = min(max(want, a.cfg.PipelineMin), 2*c.a.depth, a.cfg.PipelineMax)
	if c.a.reqq > 0 {
		want = min(want, c.a.reqq)
	}
	if want != c.a.depth {
		c.a.depth = want
		a.pk.SetPipeline(c.id, want)
	}
	if a.pk.Outstanding(c.id) == 0 {
		c.a.idleMark = now
		return
	}
	last := time.Unix(0, c.lastRecv.Load())
	if last.Before(c.a.idleMark) {
		last = c.a.idleMark
	}
	if now.Sub(last) > a.cfg.RequestTimeout {
		a.closeConn(c, fmt.Errorf("no block for %v with %d requests outstanding", now.Sub(last).Round(time.Millisecond), a.pk.Outstanding(c.id)))
	}
}

func (a *actor) progress() Progress {
	p := Progress{Peers: len(a.conns)}
	for _, c := range a.conns {
		p.Down += int64(c.a.downRate)
		p.Up += int64(c.a.upRate)
	}
	if a.t == nil {
		return p
	}
	n := a.t.geo.NumPieces()
	p.Pieces, p.Total, p.Length = a.pk.Count(), n, a.t.info.Length
	p.Bytes = int64(p.Pieces) * a.t.info.PieceLength
	if a.pk.Have(n - 1) {
		p.Bytes -= a.t.info.PieceLength - a.t.info.PieceSize(n-1)
	}
	return p
}

func (a *actor) peerList() []PeerInfo {
	out := make([]PeerInfo, 0, len(a.conns))
	for _, c := range a.conns {
		pi := PeerInfo{
			Addr:           c.addr,
			PeerID:         c.peerID,
			Outbound:       c.outbound,
			Down:           int64(c.a.downRate),
			Up:             int64(c.a.upRate),
			AmChoking:      c.choking.Load(),
			PeerChoking:    c.a.peerChoking,
			AmInterested:   c.a.amInterested,
			PeerInterested: c.a.peerInterested,
			Have:           c.a.bits.Count(),
			Pipeline:       c.a.depth,
			Trusted:        c.a.trusted,
			Optimistic:     a.optimistic == c,
		}
		if a.t != nil {
			if c.a.haveAll {
				pi.Have = a.t.geo.NumPieces()
			}
			pi.Seed = pi.Have == a.t.geo.NumPieces()
			pi.Outstanding = a.pk.Outstanding(c.id)
		}
		out = append(out, pi)
	}
	return out
}
