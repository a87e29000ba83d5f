package swarm

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/delugefs/delugefs/piece"
)

// Config tunes a Swarm. Store is required; the zero value of every other
// field selects its default.
type Config struct {
	// Store holds the blob; the swarm opens it with Store.OpenBlob.
	Store *piece.Store
	// PeerID is the id we send in handshakes; zero means a random one
	// starting with "-DF0001-".
	PeerID [20]byte
	// Logger receives connection errors and bans; default slog.Default().
	Logger *slog.Logger
	// Dial opens outbound connections; default a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ListenPort is announced in the extension handshake (0: not announced).
	ListenPort int

	// StreamOnly makes the swarm fetch only what readers need (pending
	// reads, read-ahead windows, first and last pieces) instead of the
	// whole blob.
	StreamOnly bool

	// Bans is the ban list; share one between swarms to ban a peer
	// node-wide. Default: one per swarm.
	Bans *BanList
	// BanStrikes is how many failed pieces a peer may contribute to before
	// it is banned (default 2). A peer that contributed to more verified
	// pieces than failed ones is not banned.
	BanStrikes int
	// BanDuration is how long a banned peer is refused (default 30 min).
	BanDuration time.Duration

	// UnchokeSlots is how many peers are unchoked by rate (default 4),
	// besides the optimistic unchoke and trusted peers.
	UnchokeSlots int
	// ChokeInterval is the period of the regular unchoke round (default
	// 10 s); OptimisticInterval the period of the optimistic unchoke
	// rotation (default 30 s).
	ChokeInterval      time.Duration
	OptimisticInterval time.Duration
	// Trusted reports whether a peer (by remote address) is always
	// unchoked, e.g. a node of the same cluster. Nil: no peer is.
	Trusted func(addr string) bool

	// MaxPeers bounds the connections of the swarm (default 50).
	MaxPeers int
	// HandshakeTimeout bounds dialing and the handshake (default 10 s).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that sent nothing, not even a
	// keep-alive, for this long (default 3 min).
	IdleTimeout time.Duration
	// KeepAlive is how long the write loop stays silent before it sends a
	// keep-alive (default 90 s).
	KeepAlive time.Duration
	// WriteTimeout bounds each batch written to a peer (default 30 s).
	WriteTimeout time.Duration
	// RequestTimeout closes a connection that has requests outstanding and
	// delivered no block for this long, so they go to other peers
	// (default 20 s). Blocks merely late are re-requested elsewhere by the
	// picker well before.
	RequestTimeout time.Duration
	// NoPeerWait is how long a read waits when no connected peer has the
	// pieces it needs before failing with ErrNoPeers (default 10 s).
	NoPeerWait time.Duration
	// ReadDeadline is the urgency given to a read whose context has no
	// deadline (default 1 s); an overdue read asks a second peer.
	ReadDeadline time.Duration

	// PipelineStart, PipelineMin and PipelineMax bound the requests
	// outstanding on one peer (defaults 32, 16, 512); between them the
	// depth follows the peer's rate times PipelineTarget (default 250 ms).
	PipelineStart  int
	PipelineMin    int
	PipelineMax    int
	PipelineTarget time.Duration
	// MaxServe bounds the requests from one peer queued for serving; it is
	// announced as reqq (default 2048).
	MaxServe int

	// ReadAheadMin and ReadAheadMax bound the read-ahead window of readers
	// (picker defaults 256 KiB and 64 MiB).
	ReadAheadMin, ReadAheadMax int64
	// PieceMemory bounds the memory of the buffers received pieces are
	// assembled in before they are hashed and written in one piece
	// (default 4 MiB, at least four pieces; negative: no buffers). It also
	// bounds the pieces fetched at once outside reads and read-ahead
	// (piece.Options.MaxActive: the buffers less two), which keeps the
	// pieces in flight hot in the CPU caches: on loopback a small pool
	// costs less CPU per byte than a large one at the same speed. Raise it
	// for peers far away, whose latency needs more bytes in flight. A piece
	// whose first block arrives while every buffer is taken is written
	// block by block and hashed back from disk instead.
	PieceMemory int64
	// Verifiers is the number of goroutines hashing pieces (default
	// GOMAXPROCS).
	Verifiers int
	// Seed seeds the picker's tie-breaks (default random).
	Seed uint64
}

func (c *Config) defaults() {
	if c.PeerID == ([20]byte{}) {
		copy(c.PeerID[:], "-DF0001-")
		rand.Read(c.PeerID[8:])
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.Bans == nil {
		c.Bans = NewBanList()
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defi := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defi(&c.BanStrikes, 2)
	def(&c.BanDuration, 30*time.Minute)
	defi(&c.UnchokeSlots, 4)
	def(&c.ChokeInterval, 10*time.Second)
	def(&c.OptimisticInterval, 30*time.Second)
	defi(&c.MaxPeers, 50)
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.IdleTimeout, 3*time.Minute)
	def(&c.KeepAlive, 90*time.Second)
	def(&c.WriteTimeout, 30*time.Second)
	def(&c.RequestTimeout, 20*time.Second)
	def(&c.NoPeerWait, 10*time.Second)
	def(&c.ReadDeadline, time.Second)
	defi(&c.PipelineMin, 16)
	defi(&c.PipelineStart, 32)
	defi(&c.PipelineMax, 512)
	c.PipelineMax = max(c.PipelineMax, c.PipelineMin)
	c.PipelineStart = min(max(c.PipelineStart, c.PipelineMin), c.PipelineMax)
	def(&c.PipelineTarget, 250*time.Millisecond)
	defi(&c.MaxServe, 2048)
	defi(&c.Verifiers, runtime.GOMAXPROCS(0))
	if c.PieceMemory == 0 {
		c.PieceMemory = 4 << 20
	}
	if c.Seed == 0 {
		var b [8]byte
		rand.Read(b[:])
		for _, x := range b {
			c.Seed = c.Seed<<8 | uint64(x)
		}
	}
}

// BanList holds peers refused for a while, by remote address (IP:port).
// It is safe for concurrent use and may be shared between swarms.
type BanList struct {
	mu    sync.Mutex           // guards until
	until map[string]time.Time // address → end of its ban
}

// NewBanList returns an empty ban list.
func NewBanList() *BanList { return &BanList{until: map[string]time.Time{}} }

// Ban refuses addr until the given time.
func (b *BanList) Ban(addr string, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if until.After(b.until[addr]) {
		b.until[addr] = until
	}
}

// Banned reports whether addr is banned at now.
func (b *BanList) Banned(addr string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.until[addr]
	if ok && !now.Before(t) {
		delete(b.until, addr)
		return false
	}
	return ok
}
