package swarm_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/wire"
)

// throttledDial dials like net.Dialer and limits what each connection
// reads to rate bytes per second, so a test can act in the middle of a
// transfer on loopback.
func throttledDial(rate int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &throttled{Conn: nc, rate: rate, start: time.Now()}, nil
	}
}

type throttled struct {
	net.Conn
	rate  int
	start time.Time
	n     int64 // bytes read; only the read loop reads
}

func (t *throttled) Read(p []byte) (int, error) {
	p = p[:min(len(p), 16<<10)]
	n, err := t.Conn.Read(p)
	t.n += int64(n)
	due := t.start.Add(time.Duration(float64(t.n) / float64(t.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d) // rate limiting, not waiting for a condition
	}
	return n, err
}

// fakePeer is a BitTorrent peer built on bt/wire that claims to have every
// piece, unchokes everyone and answers requests with garbage (lie) or not
// at all (silent).
type fakePeer struct {
	ln     net.Listener
	hash   bt.InfoHash
	silent bool
	wg     sync.WaitGroup

	mu       sync.Mutex // guards requests
	requests int
}

func newFakePeer(t *testing.T, hash bt.InfoHash, silent bool) *fakePeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{ln: ln, hash: hash, silent: silent}
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
	w := wire.NewWriter(nc)
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
			if err != io.EOF {
				return
			}
			return
		}
		if m.ID != wire.Request {
			continue
		}
		p.mu.Lock()
		p.requests++
		p.mu.Unlock()
		if p.silent {
			continue
		}
		pm := wire.NewPiece(m.Index, m.Begin, garbage[:m.Length])
		if w.WriteMessage(&pm) != nil {
			return
		}
	}
}
