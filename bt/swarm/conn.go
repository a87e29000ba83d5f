package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/delugefs/delugefs/bt/wire"
	"github.com/delugefs/delugefs/piece"
)

// extMetadataID is the extended message id we ask peers to use for
// ut_metadata.
const extMetadataID = 1

// slabSize is the buffer a connection receives blocks into before writing
// them to the blob, and the one it reads served blocks into: 64 blocks.
const slabSize = 64 * piece.BlockSize

// fullBlockMsg is the wire size of a piece message of a full block. While
// the Reader holds fewer bytes than this the next message may block on the
// socket, so received blocks are written and reported first.
const fullBlockMsg = 13 + piece.BlockSize

// ourReserved is what we announce in handshakes: fast and extension
// protocol.
var ourReserved = wire.Reserved{}.With(wire.ReservedFast).With(wire.ReservedExtended)

// conn is one peer connection: a read loop and a write loop that live and
// die together (run). Fields are set before run starts and then read-only,
// except as noted.
type conn struct {
	s        *Swarm
	id       piece.PeerID
	nc       net.Conn
	addr     string // remote IP:port
	outbound bool
	peerID   [20]byte
	fast     bool // the peer speaks BEP 6
	ext      bool // the peer speaks BEP 10

	out outbox

	// Shared between the loops and the actor.
	choking  atomic.Bool   // we choke the peer: its requests are refused
	peerMeta atomic.Uint32 // the peer's ut_metadata id, 0 if none
	down     atomic.Int64  // block bytes received
	up       atomic.Int64  // block bytes sent
	lastRecv atomic.Int64  // unix ns of the last block received

	a actorPeer // owned by the swarm actor
}

// outItem is one thing for the write loop to send: a message, or a block
// to serve (m holds the request; the write loop reads the block).
type outItem struct {
	serve bool
	m     wire.Message
}

// outbox is a connection's send queue, filled by the actor and the read
// loop and drained by the write loop, with a coalesced wake-up.
type outbox struct {
	mu     sync.Mutex // guards q and nserve
	q      []outItem
	nserve int // serve items in q
	wake   chan struct{}
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// push queues messages and wakes the write loop.
func (o *outbox) push(ms ...wire.Message) {
	o.mu.Lock()
	for _, m := range ms {
		o.q = append(o.q, outItem{m: m})
	}
	o.mu.Unlock()
	o.signal()
}

// take swaps the queue with buf (emptied) and returns the items queued.
func (o *outbox) take(buf []outItem) []outItem {
	clear(buf)
	o.mu.Lock()
	q := o.q
	o.q = buf[:0]
	o.nserve = 0
	o.mu.Unlock()
	return q
}

// cancelServe removes a queued serve of the block and reports whether there
// was one.
func (o *outbox) cancelServe(index, begin, length uint32) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k := range o.q {
		it := &o.q[k]
		if it.serve && it.m.Index == index && it.m.Begin == begin && it.m.Length == length {
			o.q = slices.Delete(o.q, k, k+1)
			o.nserve--
			return true
		}
	}
	return false
}

// choke queues a choke message and drops the queued serves; with the fast
// extension each dropped request is rejected (BEP 6).
func (o *outbox) choke(fast bool) {
	o.mu.Lock()
	q := o.q[:0]
	var rejects []wire.Message
	for _, it := range o.q {
		if !it.serve {
			q = append(q, it)
		} else if fast {
			r := it.m
			r.ID = wire.Reject
			rejects = append(rejects, r)
		}
	}
	clear(o.q[len(q):])
	o.q = append(q, outItem{m: wire.Message{ID: wire.Choke}})
	for _, r := range rejects {
		o.q = append(o.q, outItem{m: r})
	}
	o.nserve = 0
	o.mu.Unlock()
	o.signal()
}

// errSelf is returned when we dialed ourselves.
var errSelf = errors.New("swarm: connected to ourselves")

// dial connects to addr and does the handshake both ways.
func (s *Swarm) dial(ctx context.Context, addr string) (*handshaken, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	nc, err := s.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	h, err := s.handshakeOut(nc)
	if !stop() {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	h.addr = addr
	return h, nil
}

func (s *Swarm) handshakeOut(nc net.Conn) (*handshaken, error) {
	nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if err := wire.WriteHandshake(nc, wire.Handshake{Reserved: ourReserved, InfoHash: s.hash, PeerID: s.cfg.PeerID}); err != nil {
		return nil, err
	}
	h, err := wire.ReadHandshake(nc)
	if err != nil {
		return nil, err
	}
	if h.InfoHash != s.hash {
		return nil, fmt.Errorf("swarm: peer answered for info-hash %v", h.InfoHash)
	}
	if h.PeerID == s.cfg.PeerID {
		return nil, errSelf
	}
	nc.SetDeadline(time.Time{})
	return &handshaken{nc: nc, outbound: true, reserved: h.Reserved, peerID: h.PeerID}, nil
}

// Accept takes an inbound connection whose handshake head (protocol,
// reserved bytes and this swarm's info-hash) the Listener has read: it
// answers with our handshake, reads the peer id and hands the connection
// to the swarm actor. It closes nc on any failure. ctx bounds the
// handshake.
func (s *Swarm) Accept(ctx context.Context, nc net.Conn, reserved wire.Reserved) error {
	addr := nc.RemoteAddr().String()
	if s.cfg.Bans.Banned(addr, time.Now()) {
		nc.Close()
		return fmt.Errorf("accept %s: %w", addr, ErrBanned)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	id, err := s.handshakeIn(nc)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("accept %s: %w", addr, err)
	}
	hs := &handshaken{nc: nc, addr: addr, reserved: reserved, peerID: id}
	if !s.box.post(event{kind: evConn, hs: hs}) {
		nc.Close()
		return fmt.Errorf("accept %s: %w", addr, ErrStopped)
	}
	return nil
}

func (s *Swarm) handshakeIn(nc net.Conn) ([20]byte, error) {
	nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if err := wire.WriteHandshake(nc, wire.Handshake{Reserved: ourReserved, InfoHash: s.hash, PeerID: s.cfg.PeerID}); err != nil {
		return [20]byte{}, err
	}
	id, err := wire.ReadPeerID(nc)
	if err != nil {
		return id, err
	}
	if id == s.cfg.PeerID {
		return id, errSelf
	}
	nc.SetDeadline(time.Time{})
	return id, nil
}

// run runs the connection until either loop fails or ctx ends.
func (c *conn) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		<-gctx.Done() // either loop failed, or the swarm stops
		c.nc.Close()
		return nil
	})
	g.Go(func() error { return c.readLoop(gctx) })
	g.Go(func() error { return c.writeLoop(gctx) })
	return g.Wait()
}

// recvBatch is what the read loop has received and not yet handed over:
// blocks in the slab not yet written to the blob (and blocks read into
// piece buffers, in claims and evs), events not yet posted, requests not
// yet queued for serving.
type recvBatch struct {
	slab   []byte
	used   int
	runs   []run
	claims []int // blocks claimed in this batch
	evs    []event
	serves []wire.Message
	bytes  int64
	held   int // bytes read into piece buffers and not reported yet
	gen    int // flushes so far
}

// run is a stretch of contiguous blocks in the slab.
type run struct {
	off        int64 // in the blob
	start, end int   // in the slab
}

// readLoop reads messages until an error. Blocks are read into the slab and
// written to the blob in runs; block events are posted to the actor after
// the write, in one batch with the other events, in arrival order.
//
// Whatever ends it, the batch is handed over on the way out: the blocks
// it claimed must reach the actor, which records them or, for a
// connection it closed, releases their claims and asks for them again. A
// batch dropped there kept its claims for good, and every later copy of
// those blocks, from any peer, was skipped unread: the download stalled
// (a duplicate connection closed by the actor while its read loop was in
// the middle of a batch).
func (c *conn) readLoop(ctx context.Context) (err error) {
	ts := c.s.state.Load()
	var b recvBatch
	defer func() {
		if ferr := c.flush(ts, &b); ferr != nil && err == nil {
			err = ferr
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
	}()
	// On a TCP socket the batch is handed over when the socket has no more
	// data (the read would block) or the slab is full, so blocks reach the
	// disk in large writes; on other connections, whenever the Reader's
	// buffer runs low.
	var src io.Reader = c.nc
	var sock *sockReader
	if sc, ok := c.nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			sock = &sockReader{rc: rc}
			sock.read = sock.readFD
			sock.idle = func() error { return c.flush(ts, &b) }
			src = sock
		}
	}
	r := wire.NewReader(src, wire.Limits{})
	if ts != nil {
		r.SetGeometry(ts.wgeo)
	}
	var m wire.Message
	for {
		if sock == nil && r.Buffered() < fullBlockMsg {
			if err := c.flush(ts, &b); err != nil {
				return err
			}
		}
		if r.Buffered() < fullBlockMsg {
			c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
		}
		err := r.Next(&m)
		if ts == nil {
			if ts = c.s.state.Load(); ts != nil {
				r.SetGeometry(ts.wgeo)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errPeerClosed
			}
			return err
		}
		switch m.ID {
		case wire.Piece:
			if err := c.recvBlock(ts, r, &m, &b); err != nil {
				return err
			}
		case wire.Request:
			c.recvRequest(ts, &m, &b)
		case wire.Cancel:
			c.recvCancel(&m, &b)
		case wire.Extended:
			if err := c.recvExtended(ts, &m, &b); err != nil {
				return err
			}
		case wire.Bitfield:
			b.evs = append(b.evs, event{kind: evBitfield, c: c, data: append([]byte(nil), m.Bitfield...)})
		case wire.Have:
			b.evs = append(b.evs, event{kind: evHave, c: c, index: m.Index})
		case wire.HaveAll:
			b.evs = append(b.evs, event{kind: evHaveAll, c: c})
		case wire.HaveNone:
			b.evs = append(b.evs, event{kind: evHaveNone, c: c})
		case wire.Choke:
			b.evs = append(b.evs, event{kind: evChoke, c: c})
		case wire.Unchoke:
			b.evs = append(b.evs, event{kind: evUnchoke, c: c})
		case wire.Interested:
			b.evs = append(b.evs, event{kind: evInterested, c: c})
		case wire.NotInterested:
			b.evs = append(b.evs, event{kind: evNotInterested, c: c})
		case wire.Reject:
			b.evs = append(b.evs, event{kind: evReject, c: c, index: m.Index, begin: m.Begin, length: m.Length})
		}
		// Keep-alive, port, suggest and allowed fast need nothing.
	}
}

// sockReader reads a socket with read(2) itself, so that it knows when a
// read would block: then it calls idle first (which hands the received
// batch over) and only then waits for data.
type sockReader struct {
	rc   syscall.RawConn
	idle func() error
	read func(fd uintptr) bool // readFD, bound once: no allocation per call

	p   []byte // the current Read's buffer
	n   int
	err error
}

func (s *sockReader) Read(p []byte) (int, error) {
	s.p, s.n, s.err = p, 0, nil
	if err := s.rc.Read(s.read); err != nil {
		return 0, err
	}
	s.p = nil
	if s.err != nil {
		return s.n, s.err
	}
	if s.n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return s.n, nil
}

// readFD is called by the poller; it returns false to wait for data.
func (s *sockReader) readFD(fd uintptr) bool {
	for {
		n, err := sysRead(fd, s.p)
		switch err {
		case nil:
			s.n = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if s.idle != nil {
				if err := s.idle(); err != nil {
					s.err = err
					return true
				}
			}
			return false
		default:
			s.err = err
			return true
		}
	}
}

// errPeerClosed reports a connection the peer closed.
var errPeerClosed = errors.New("swarm: peer closed the connection")

// recvBlock takes the block of a piece message: it is read only if this
// connection claims it first (otherwise Next skips it), into its piece's
// buffer, or into the slab to be written to the blob when the piece has no
// buffer (direct).
func (c *conn) recvBlock(ts *torrent, r *wire.Reader, m *wire.Message, b *recvBatch) error {
	b.bytes += int64(m.Length)
	if ts == nil {
		return nil // we asked for nothing before the info
	}
	blk, ok := ts.blockID(m.Index, m.Begin, m.Length)
	if !ok || !ts.claim(blk) {
		return nil // unaligned, or a copy of a block someone sent already
	}
	n := int(m.Length)
	if pb := ts.bufFor(int(m.Index)); pb != direct {
		if err := r.ReadBlock(pb.data[m.Begin : int(m.Begin)+n]); err != nil {
			c.drop(ts, b, blk, m)
			return err
		}
		b.claims = append(b.claims, blk)
		b.evs = append(b.evs, event{kind: evBlock, c: c, index: m.Index, begin: m.Begin, length: m.Length})
		if b.held += n; b.held >= slabSize {
			return c.flush(ts, b) // report as often as with a full slab
		}
		return nil
	}
	if b.slab == nil {
		b.slab = make([]byte, slabSize)
	}
	if b.used+n > len(b.slab) {
		if err := c.flush(ts, b); err != nil {
			c.drop(ts, b, blk, m)
			return err
		}
	}
	gen := b.gen
	p := b.slab[b.used : b.used+n]
	if err := r.ReadBlock(p); err != nil {
		c.drop(ts, b, blk, m)
		return err
	}
	off := ts.wgeo.Offset(m.Index, m.Begin)
	switch {
	case b.gen != gen:
		// The socket ran dry in the middle of the block and the batch
		// was flushed meanwhile (sockReader's idle): the block is in
		// the slab but past the reset batch. Write it now.
		if _, err := ts.blob.WriteAt(p, off); err != nil {
			c.drop(ts, b, blk, m)
			return fmt.Errorf("write received block: %w", err)
		}
	case len(b.runs) > 0 && b.runs[len(b.runs)-1].end == b.used && b.runs[len(b.runs)-1].off+int64(b.runs[len(b.runs)-1].end-b.runs[len(b.runs)-1].start) == off:
		b.runs[len(b.runs)-1].end += n
		b.used += n
	default:
		b.runs = append(b.runs, run{off: off, start: b.used, end: b.used + n})
		b.used += n
	}
	b.claims = append(b.claims, blk)
	b.evs = append(b.evs, event{kind: evBlock, c: c, index: m.Index, begin: m.Begin, length: m.Length})
	return nil
}

// drop releases the claim of a block this connection could not read or
// write, and tells the actor: another connection may have skipped its copy
// of the block while this one held the claim.
func (c *conn) drop(ts *torrent, b *recvBatch, blk int, m *wire.Message) {
	ts.unclaim(blk)
	b.evs = append(b.evs, event{kind: evDropped, c: c, index: m.Index, begin: m.Begin, length: m.Length})
}

// flush writes the received blocks to the blob, then posts the events and
// queues the requests to serve.
func (c *conn) flush(ts *torrent, b *recvBatch) error {
	var err error
	for _, rn := range b.runs {
		if _, err = ts.blob.WriteAt(b.slab[rn.start:rn.end], rn.off); err != nil {
			break
		}
	}
	if err != nil {
		for _, blk := range b.claims {
			ts.unclaim(blk)
		}
		err = fmt.Errorf("write received blocks: %w", err)
		for k := range b.evs {
			if b.evs[k].kind == evBlock {
				b.evs[k].kind = evDropped
			}
		}
	}
	if b.bytes > 0 {
		c.down.Add(b.bytes)
		if len(b.claims) > 0 {
			c.lastRecv.Store(time.Now().UnixNano())
		}
	}
	if len(b.evs) > 0 {
		c.s.box.post(b.evs...)
	}
	if len(b.serves) > 0 {
		o := &c.out
		o.mu.Lock()
		for _, m := range b.serves {
			o.q = append(o.q, outItem{serve: true, m: m})
		}
		o.nserve += len(b.serves)
		o.mu.Unlock()
		o.signal()
	}
	clear(b.evs)
	b.evs, b.runs, b.claims, b.serves = b.evs[:0], b.runs[:0], b.claims[:0], b.serves[:0]
	b.used, b.bytes, b.held = 0, 0, 0
	b.gen++
	return err
}

// recvRequest queues a request for serving, or rejects it (BEP 6) when we
// choke the peer, do not have the piece or the peer asks too much.
func (c *conn) recvRequest(ts *torrent, m *wire.Message, b *recvBatch) {
	ok := ts != nil && !c.choking.Load() && ts.blob.HasPiece(int(m.Index))
	if ok {
		c.out.mu.Lock()
		ok = c.out.nserve+len(b.serves) < c.s.cfg.MaxServe
		c.out.mu.Unlock()
	}
	if ok {
		b.serves = append(b.serves, wire.NewRequest(m.Index, m.Begin, m.Length))
		return
	}
	if c.fast {
		r := wire.NewRequest(m.Index, m.Begin, m.Length)
		r.ID = wire.Reject
		c.out.push(r)
	}
}

// recvCancel drops a request not served yet; with the fast extension it is
// answered with a reject (BEP 6).
func (c *conn) recvCancel(m *wire.Message, b *recvBatch) {
	found := false
	for k, r := range b.serves {
		if r.Index == m.Index && r.Begin == m.Begin && r.Length == m.Length {
			b.serves = slices.Delete(b.serves, k, k+1)
			found = true
			break
		}
	}
	if !found {
		found = c.out.cancelServe(m.Index, m.Begin, m.Length)
	}
	if found && c.fast {
		r := wire.NewRequest(m.Index, m.Begin, m.Length)
		r.ID = wire.Reject
		c.out.push(r)
	}
}

// recvExtended handles the extension handshake and ut_metadata: requests
// are answered here, data and rejects go to the actor.
func (c *conn) recvExtended(ts *torrent, m *wire.Message, b *recvBatch) error {
	switch m.ExtID {
	case wire.ExtHandshakeID:
		h, err := wire.ParseExtHandshake(m.Payload)
		if err != nil {
			return err
		}
		id, _ := h.Ext(wire.ExtMetadata)
		c.peerMeta.Store(uint32(id))
		b.evs = append(b.evs, event{kind: evExtHandshake, c: c, ext: h})
	case extMetadataID:
		mm, err := wire.ParseMetadataMsg(m.Payload)
		if err != nil {
			return err
		}
		if mm.Type == wire.MetadataRequest {
			srv := emptyMetadata
			if ts != nil {
				srv = ts.meta
			}
			reply, ok := srv.Answer(mm)
			peer := uint8(c.peerMeta.Load())
			if !ok || peer == 0 {
				return nil
			}
			payload, err := reply.AppendBinary(nil)
			if err != nil {
				return err
			}
			c.out.push(wire.NewExtended(peer, payload))
			return nil
		}
		mm.Data = append([]byte(nil), mm.Data...)
		b.evs = append(b.evs, event{kind: evMetadata, c: c, meta: mm})
	}
	return nil // extensions we did not announce
}

// emptyMetadata rejects every ut_metadata request (we have no info yet).
var emptyMetadata = wire.NewMetadataServer(nil)

// writeLoop sends what the outbox holds, one vectored write per batch:
// messages as they are, served blocks read from the blob into the slab
// (contiguous requests with one pread) and referenced, not copied.
func (c *conn) writeLoop(ctx context.Context) error {
	w := wire.NewWriter(c.nc)
	ka := time.NewTimer(c.s.cfg.KeepAlive)
	defer ka.Stop()
	var items []outItem
	var slab []byte
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.out.wake:
		case <-ka.C:
			w.Queue(&wire.Message{ID: wire.KeepAlive})
		}
		items = c.out.take(items)
		for i := 0; i < len(items) || w.Buffered() > 0; {
			used := 0
			var sent int64
			for ; i < len(items); i++ {
				it := &items[i]
				if !it.serve {
					if err := w.Queue(&it.m); err != nil {
						return err
					}
					continue
				}
				// A run of requests for contiguous bytes of one piece.
				j, n := i+1, int(it.m.Length)
				for j < len(items) && items[j].serve && items[j].m.Index == it.m.Index &&
					items[j].m.Begin == it.m.Begin+uint32(n) && used+n+int(items[j].m.Length) <= slabSize {
					n += int(items[j].m.Length)
					j++
				}
				if used+n > slabSize {
					break // flush first
				}
				// The blocks straight from the blob's map (no copy), or
				// read into the slab where it has none.
				ts := c.s.state.Load()
				off := ts.wgeo.Offset(it.m.Index, it.m.Begin)
				buf, mapped := ts.blob.Map(off, int64(n))
				if !mapped {
					if slab == nil {
						slab = make([]byte, slabSize)
					}
					buf = slab[used : used+n]
					if _, err := ts.blob.ReadAt(buf, off); err != nil {
						return fmt.Errorf("read block %d+%d to serve: %w", it.m.Index, it.m.Begin, err)
					}
				}
				for k := i; k < j; k++ {
					l := int(items[k].m.Length)
					pm := wire.NewPiece(items[k].m.Index, items[k].m.Begin, buf[:l])
					buf = buf[l:]
					w.Queue(&pm)
				}
				used += n
				sent += int64(n)
				i = j - 1
			}
			c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
			if err := w.Flush(); err != nil {
				return err
			}
			c.up.Add(sent)
		}
		ka.Reset(c.s.cfg.KeepAlive)
	}
}
