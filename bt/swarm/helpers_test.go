package swarm_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"

	xrate "golang.org/x/time/rate"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/wire"
)

// throttledDial dials like net.Dialer and limits what each connection
// reads to rate bytes per second (a token bucket of one 16 KiB read), so
// a test can act in the middle of a transfer on loopback.
func throttledDial(rate int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &throttled{Conn: nc, lim: xrate.NewLimiter(xrate.Limit(rate), throttleBurst)}, nil
	}
}

const throttleBurst = 16 << 10

type throttled struct {
	net.Conn
	lim *xrate.Limiter
}

func (t *throttled) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p[:min(len(p), throttleBurst)])
	if n > 0 {
		t.lim.WaitN(context.Background(), n) // n <= the burst: never fails
	}
	return n, err
}

// fakeMode says how a fakePeer misbehaves.
type fakeMode int

const (
	fakeLiar   fakeMode = iota // answers requests with garbage
	fakeSilent                 // never answers requests
	fakeBroken                 // sends a message with an unknown id
	fakeMute                   // sends nothing after the handshake
	fakeCutOff                 // answers its first request with the true block and, in the same write, a malformed message
)

// fakePeer is a BitTorrent peer built on bt/wire that claims to have every
// piece, unchokes everyone and then misbehaves as its mode says.
type fakePeer struct {
	ln   net.Listener
	hash bt.InfoHash
	mode fakeMode
	data []byte // the blob's bytes, for fakeCutOff
	plen int64  // its piece length
	wg   sync.WaitGroup

	mu       sync.Mutex // guards requests and conns
	requests int
	conns    int
}

func newFakePeer(t *testing.T, hash bt.InfoHash, mode fakeMode) *fakePeer {
	return newFakePeerData(t, hash, mode, nil, 0)
}

// newFakePeerData is newFakePeer with the blob's bytes, which fakeCutOff
// serves.
func newFakePeerData(t *testing.T, hash bt.InfoHash, mode fakeMode, data []byte, pieceLength int64) *fakePeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{ln: ln, hash: hash, mode: mode, data: data, plen: pieceLength}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *fakePeer) Addr() string { return p.ln.Addr().String() }

func (p *fakePeer) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

// Conns returns the number of handshakes done.
func (p *fakePeer) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

func (p *fakePeer) accept() {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			return
		}
		conns = append(conns, nc)
		p.wg.Go(func() { p.serve(nc) })
	}
}

func (p *fakePeer) serve(nc net.Conn) {
	defer nc.Close()
	h, err := wire.ReadHandshake(nc)
	if err != nil || h.InfoHash != p.hash {
		return
	}
	var id [20]byte
	copy(id[:], "-FAKE00-lying-peer!!")
	if err := wire.WriteHandshake(nc, wire.Handshake{Reserved: wire.ReservedFast, InfoHash: p.hash, PeerID: id}); err != nil {
		return
	}
	p.mu.Lock()
	p.conns++
	p.mu.Unlock()
	w := wire.NewWriter(nc)
	if p.mode == fakeMute {
		io.Copy(io.Discard, nc)
		return
	}
	w.Queue(&wire.Message{ID: wire.HaveAll})
	w.Queue(&wire.Message{ID: wire.Unchoke})
	if w.Flush() != nil {
		return
	}
	r := wire.NewReader(nc, wire.Limits{})
	garbage := make([]byte, 16<<10)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	var m wire.Message
	for {
		if err := r.Read(&m); err != nil {
			return
		}
		if m.ID != wire.Request {
			continue
		}
		p.mu.Lock()
		p.requests++
		p.mu.Unlock()
		switch p.mode {
		case fakeSilent:
			continue
		case fakeBroken:
			nc.Write([]byte{0, 0, 0, 3, 99, 1, 2}) // message id 99
			continue
		case fakeCutOff:
			// The block, then an extension handshake that does not
			// parse, in one write: the read loop reads both at once
			// and fails on the second with the block in its batch.
			off := int64(m.Index)*p.plen + int64(m.Begin)
			pm := wire.NewPiece(m.Index, m.Begin, p.data[off:off+int64(m.Length)])
			bad := wire.NewExtended(wire.ExtHandshakeID, []byte("not bencode"))
			w.Queue(&pm)
			w.Queue(&bad)
			w.Flush()
			io.Copy(io.Discard, nc)
			return
		}
		pm := wire.NewPiece(m.Index, m.Begin, garbage[:m.Length])
		if w.WriteMessage(&pm) != nil {
			return
		}
	}
}

// logRecorder is a slog handler that keeps the messages and attributes it
// is given, for tests that check what was logged.
type logRecorder struct {
	mu    sync.Mutex // guards lines
	lines []string
	attrs []slog.Attr
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Message
	for _, a := range r.attrs {
		line += " " + a.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logView{r: r, attrs: as}
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

func (r *logRecorder) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// logView is a logRecorder with attributes added.
type logView struct {
	r     *logRecorder
	attrs []slog.Attr
}

func (v *logView) Enabled(context.Context, slog.Level) bool { return true }
func (v *logView) Handle(ctx context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(v.attrs...)
	return v.r.Handle(ctx, rec)
}
func (v *logView) WithAttrs(as []slog.Attr) slog.Handler {
	return &logView{r: v.r, attrs: append(append([]slog.Attr(nil), v.attrs...), as...)}
}
func (v *logView) WithGroup(string) slog.Handler { return v }
