package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/piece"
)

// Errors callers branch on (errors.Is).
var (
	// ErrNoPeers reports a read that no connected peer could serve within
	// Config.NoPeerWait.
	ErrNoPeers = errors.New("swarm: no peer has the data")
	// ErrStopped reports a call to a swarm whose actor is not running.
	ErrStopped = errors.New("swarm: not running")
	// ErrBanned reports a connection from or to a banned peer.
	ErrBanned = errors.New("swarm: peer banned")
)

// Swarm is the actor of one info-hash: it owns the piece picker, the blob
// and the peer connections, downloads what readers and the blob need,
// serves what it has, and keeps seeding once the blob is complete.
//
// Run it with Serve; all other methods are safe for concurrent use and
// talk to the actor through its mailbox.
type Swarm struct {
	hash bt.InfoHash
	cfg  Config

	box   *mailbox
	state atomic.Pointer[torrent] // set once the info is known
	ready chan struct{}           // closed when state is set
	done  chan struct{}           // closed when the blob is complete

	ids atomic.Uint64 // read and reader ids

	mu      sync.Mutex // guards serving, closed and blob
	serving bool       // Serve is running
	closed  bool       // Close was called
	blob    *piece.Blob
	readyMu sync.Once
	doneMu  sync.Once
}

// New returns a swarm for the blob described by info: it opens the blob in
// cfg.Store (a complete blob is seeded, a partial one resumed).
func New(info *bt.Info, cfg Config) (*Swarm, error) {
	if cfg.Store == nil {
		return nil, errors.New("swarm: Config.Store is nil")
	}
	s := newSwarm(info.Hash(), cfg)
	if err := s.setInfo(info); err != nil {
		return nil, err
	}
	return s, nil
}

// NewMagnet returns a swarm that knows only the info-hash: it fetches the
// info dictionary from its peers (BEP 9), checks it against h, then
// proceeds like New.
func NewMagnet(h bt.InfoHash, cfg Config) (*Swarm, error) {
	if cfg.Store == nil {
		return nil, errors.New("swarm: Config.Store is nil")
	}
	return newSwarm(h, cfg), nil
}

func newSwarm(h bt.InfoHash, cfg Config) *Swarm {
	cfg.defaults()
	return &Swarm{
		hash:  h,
		cfg:   cfg,
		box:   newMailbox(),
		ready: make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// setInfo opens the blob of info and publishes the torrent state.
func (s *Swarm) setInfo(info *bt.Info) error {
	blob, err := s.cfg.Store.OpenBlob(info)
	if err != nil {
		return fmt.Errorf("swarm %v: %w", s.hash, err)
	}
	s.mu.Lock()
	s.blob = blob
	s.mu.Unlock()
	s.state.Store(newTorrent(info, blob, s.cfg.PieceMemory))
	s.readyMu.Do(func() { close(s.ready) })
	if blob.Complete() {
		s.markDone()
	}
	return nil
}

func (s *Swarm) markDone() { s.doneMu.Do(func() { close(s.done) }) }

// InfoHash returns the swarm's info-hash.
func (s *Swarm) InfoHash() bt.InfoHash { return s.hash }

// PeerID returns the peer id the swarm sends in handshakes.
func (s *Swarm) PeerID() [20]byte { return s.cfg.PeerID }

// Info returns the info dictionary, or nil while a magnet swarm is still
// fetching it.
func (s *Swarm) Info() *bt.Info {
	if t := s.state.Load(); t != nil {
		return t.info
	}
	return nil
}

// Ready is closed once the info dictionary is known.
func (s *Swarm) Ready() <-chan struct{} { return s.ready }

// Done is closed once every piece is verified (the swarm keeps seeding).
func (s *Swarm) Done() <-chan struct{} { return s.done }

// Close releases the blob; calls still waiting fail with ErrStopped, and
// so do later ones. Call it after Serve has returned.
func (s *Swarm) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving {
		return errors.New("swarm: Close while serving")
	}
	if !s.closed {
		s.closed = true
		(&actor{}).shutdown(s.box.shut())
	}
	if s.blob == nil {
		return nil
	}
	err := s.blob.Close()
	s.blob = nil
	return err
}

// AddPeer asks the swarm to connect to addr (host:port). It does not wait;
// a failure is logged. The swarm keeps addr and redials it with backoff
// while it wants pieces and has no connection (see the package doc). Calls
// made while Serve is not running are queued for the next run.
func (s *Swarm) AddPeer(addr string) error {
	if !s.box.post(event{kind: evAddPeer, addr: addr}) {
		return ErrStopped
	}
	return nil
}

// ReadAt reads len(p) bytes at off like io.ReaderAt, blocking until the
// pieces covering them are verified: it registers the range with the
// picker (with ctx's deadline as its urgency) and returns as soon as those
// pieces are there, not when the whole blob is. A read no connected peer
// can serve fails with ErrNoPeers after Config.NoPeerWait; ctx bounds the
// wait otherwise.
func (s *Swarm) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return s.readAt(ctx, p, off, nil)
}

func (s *Swarm) readAt(ctx context.Context, p []byte, off int64, rd *Reader) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("swarm: read at negative offset %d", off)
	}
	t := s.state.Load()
	if t == nil {
		// A magnet swarm: the actor holds the read until the info is in.
		if err := s.wait(ctx, off, int64(len(p))); err != nil {
			return 0, err
		}
		t = s.state.Load()
	}
	if off >= t.info.Length {
		return 0, io.EOF
	}
	n := min(int64(len(p)), t.info.Length-off)
	if rd != nil {
		s.box.post(event{kind: evReaderAt, id: rd.id, rd: rd, off: off, n: n})
	}
	if !t.covered(off, n) {
		if err := s.wait(ctx, off, n); err != nil {
			return 0, err
		}
	}
	k, err := t.blob.ReadAt(p[:n], off)
	if err == nil && int(n) < len(p) {
		err = io.EOF
	}
	return k, err
}

// wait registers a pending read of [off, off+n) and waits for its pieces.
func (s *Swarm) wait(ctx context.Context, off, n int64) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(s.cfg.ReadDeadline)
	}
	r := &pendingRead{
		id:       piece.ReadID(s.ids.Add(1)),
		off:      off,
		n:        n,
		deadline: deadline,
		reply:    make(chan error, 1),
	}
	if !s.box.post(event{kind: evRead, read: r}) {
		return ErrStopped
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		s.box.post(event{kind: evCancelRead, id: uint64(r.id)})
		return fmt.Errorf("swarm: read %d+%d: %w", off, n, ctx.Err())
	}
}

// Reader is a file handle on the swarm's blob: its sequential reads grow a
// read-ahead window the picker fetches ahead of them, a seek moves it, and
// while it is open the first and last pieces are fetched early. Its
// read-ahead is the swarm's (Config.ReadAheadMin and ReadAheadMax) until
// SetReadAhead changes it.
type Reader struct {
	s  *Swarm
	id uint64
	ra atomic.Pointer[ReadAhead] // nil: the swarm's
}

// ReadAhead is a reader's read-ahead setting: the window after its first
// read and after a seek (Min), and the largest window sequential reads
// grow it to (Max); Min == Max gives a fixed window. Zero values take
// Config.ReadAheadMin and ReadAheadMax. Off fetches only what the reader
// reads (a random-access reader such as a database file).
type ReadAhead struct {
	Min, Max int64
	Off      bool
}

// NewReader opens a reader. Close it when done.
func (s *Swarm) NewReader() *Reader {
	r := &Reader{s: s, id: s.ids.Add(1)}
	s.box.post(event{kind: evReaderOpen, id: r.id, rd: r})
	return r
}

// SetReadAhead changes the reader's read-ahead setting; the window follows
// at once (within the new bounds) and from then on.
func (r *Reader) SetReadAhead(ra ReadAhead) {
	r.ra.Store(&ra)
	r.s.box.post(event{kind: evReaderOpen, id: r.id, rd: r})
}

// options returns the reader's setting for the picker.
func (r *Reader) options() piece.ReaderOptions {
	ra := r.ra.Load()
	if ra == nil {
		return piece.ReaderOptions{}
	}
	return piece.ReaderOptions{ReadAheadMin: ra.Min, ReadAheadMax: ra.Max, NoReadAhead: ra.Off}
}

// ReadAt reads like Swarm.ReadAt and moves the reader's read-ahead window.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return r.s.readAt(ctx, p, off, r)
}

// Close forgets the reader and its window.
func (r *Reader) Close() error {
	r.s.box.post(event{kind: evReaderClose, id: r.id})
	return nil
}

// Progress is a swarm's state of download.
type Progress struct {
	Pieces, Total int   // pieces verified, pieces in the blob (0 before the info)
	Bytes, Length int64 // bytes verified, bytes in the blob
	Peers         int   // connections
	Down, Up      int64 // bytes per second, all peers
}

// Progress returns the swarm's progress.
func (s *Swarm) Progress(ctx context.Context) (Progress, error) {
	ch := make(chan Progress, 1)
	if !s.box.post(event{kind: evProgress, prog: ch}) {
		return Progress{}, ErrStopped
	}
	select {
	case p := <-ch:
		return p, nil
	case <-ctx.Done():
		return Progress{}, ctx.Err()
	}
}

// PeerInfo describes one connection.
type PeerInfo struct {
	Addr     string
	PeerID   [20]byte
	Outbound bool
	Down, Up int64 // bytes per second
	// AmChoking: we choke the peer; PeerChoking: it chokes us; likewise
	// for interest.
	AmChoking, PeerChoking       bool
	AmInterested, PeerInterested bool
	Have                         int // pieces the peer has
	Pipeline                     int // requests we let be outstanding on it
	Outstanding                  int
	Trusted, Optimistic, Seed    bool
}

// Peers lists the connections.
func (s *Swarm) Peers(ctx context.Context) ([]PeerInfo, error) {
	ch := make(chan []PeerInfo, 1)
	if !s.box.post(event{kind: evPeers, peers: ch}) {
		return nil, ErrStopped
	}
	select {
	case p := <-ch:
		return p, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
