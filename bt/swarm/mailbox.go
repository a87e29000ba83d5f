package swarm

import (
	"net"
	"sync"
	"time"

	"github.com/delugefs/delugefs/bt/wire"
	"github.com/delugefs/delugefs/piece"
)

// evKind says what an event tells the swarm actor.
type evKind uint8

const (
	// From a connection's read loop (c is set).
	evBlock         evKind = iota + 1 // block index+begin/length written into the blob
	evDropped                         // block index+begin/length claimed, then not read or written: claim released
	evHave                            // peer has piece index
	evBitfield                        // peer's bitfield in data (a copy)
	evHaveAll                         // BEP 6 have all
	evHaveNone                        // BEP 6 have none
	evChoke                           // the peer chokes us
	evUnchoke                         // the peer unchokes us
	evInterested                      // the peer is interested
	evNotInterested                   // the peer is not interested
	evReject                          // the peer rejected our request index+begin/length
	evExtHandshake                    // the peer's extension handshake in ext
	evMetadata                        // a ut_metadata data or reject message in meta
	evClosed                          // the connection ended with err
	// From other goroutines.
	evConn       // a connection whose handshake is done: conn
	evDialFailed // dialing addr failed
	evVerified   // piece index verified: ok, err
	evAddPeer    // dial addr
	evRead       // a pending read: read
	evCancelRead // forget read id
	evReaderOpen // reader rd (id) opened, or its read-ahead set
	evReaderAt   // reader rd (id) read off+n
	evReaderClose
	evProgress // reply with Progress on progress
	evPeers    // reply with []PeerInfo on peers
)

// event is one message to the swarm actor. Which fields are meaningful
// depends on kind.
type event struct {
	kind   evKind
	c      *conn
	index  uint32
	begin  uint32
	length uint32
	ok     bool
	id     uint64
	off, n int64
	data   []byte
	err    error
	addr   string
	ext    *wire.ExtHandshake
	meta   wire.MetadataMsg
	hs     *handshaken
	read   *pendingRead
	rd     *Reader
	prog   chan Progress
	peers  chan []PeerInfo
}

// handshaken is a connection whose handshake is complete.
type handshaken struct {
	nc       net.Conn
	addr     string
	outbound bool
	reserved wire.Reserved
	peerID   [20]byte
}

// pendingRead is a ReadAt waiting for its pieces.
type pendingRead struct {
	id       piece.ReadID
	off, n   int64
	deadline time.Time
	reply    chan error // capacity 1: the actor never blocks answering
	since    time.Time  // when no peer could serve it, zero while one can
}

// mailbox is the swarm actor's inbox: a queue under a mutex plus a
// coalesced wake-up (1-buffered channel, non-blocking send), so a read loop
// posts a whole batch of block events with one lock and at most one
// wake-up, and posting never blocks.
type mailbox struct {
	mu     sync.Mutex // guards q and closed
	q      []event
	closed bool // no actor: posts are refused
	wake   chan struct{}
}

func newMailbox() *mailbox {
	return &mailbox{wake: make(chan struct{}, 1)}
}

// post appends evs and wakes the actor. It reports false when the actor is
// not running.
func (m *mailbox) post(evs ...event) bool {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false
	}
	m.q = append(m.q, evs...)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return true
}

// take swaps the queue with buf (emptied) and returns the events posted.
func (m *mailbox) take(buf []event) []event {
	clear(buf)
	m.mu.Lock()
	q := m.q
	m.q = buf[:0]
	m.mu.Unlock()
	return q
}

// shut refuses posts from now on and returns what was queued.
func (m *mailbox) shut() []event {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	q := m.q
	m.q = nil
	return q
}

// answer replies to the reader; only the first answer counts and it never
// blocks.
func (r *pendingRead) answer(err error) {
	select {
	case r.reply <- err:
	default:
	}
}
