package piece

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGeometry(t *testing.T) {
	tests := []struct {
		g          Geometry
		pieces     int
		lastSize   int64
		lastBlocks int
		lastBlock  Block
	}{
		{Geometry{Length: 1, PieceLength: 256 << 10}, 1, 1, 1, Block{0, 0, 1}},
		{Geometry{Length: 256 << 10, PieceLength: 256 << 10}, 1, 256 << 10, 16, Block{0, 15 * BlockSize, BlockSize}},
		{Geometry{Length: 256<<10 + 1, PieceLength: 256 << 10}, 2, 1, 1, Block{1, 0, 1}},
		{Geometry{Length: 600 << 10, PieceLength: 256 << 10}, 3, 88 << 10, 6, Block{2, 5 * BlockSize, 8 << 10}},
		// Over 4 GiB: offsets are 64-bit.
		{Geometry{Length: 5<<30 + 100, PieceLength: 8 << 20}, 641, 100, 1, Block{640, 0, 100}},
		// A piece length that is not a multiple of the block size.
		{Geometry{Length: 100_000, PieceLength: 20_000}, 5, 20_000, 2, Block{4, BlockSize, 20_000 - BlockSize}},
	}
	for _, tt := range tests {
		if err := tt.g.Check(); err != nil {
			t.Errorf("%+v: %v", tt.g, err)
			continue
		}
		n := tt.g.NumPieces()
		if n != tt.pieces {
			t.Errorf("%+v: NumPieces = %d, want %d", tt.g, n, tt.pieces)
		}
		if got := tt.g.PieceSize(n - 1); got != tt.lastSize {
			t.Errorf("%+v: last PieceSize = %d, want %d", tt.g, got, tt.lastSize)
		}
		nb := tt.g.NumBlocks(n - 1)
		if nb != tt.lastBlocks {
			t.Errorf("%+v: last NumBlocks = %d, want %d", tt.g, nb, tt.lastBlocks)
		}
		if got := tt.g.Block(n-1, nb-1); got != tt.lastBlock {
			t.Errorf("%+v: last Block = %+v, want %+v", tt.g, got, tt.lastBlock)
		}
		if end := tt.lastBlock.Offset(tt.g) + int64(tt.lastBlock.Length); end != tt.g.Length {
			t.Errorf("%+v: last block ends at %d, want %d", tt.g, end, tt.g.Length)
		}
		// Every block round-trips through the picker's block ids.
		if n < 100 {
			p, err := NewPicker(tt.g, Options{})
			if err != nil {
				t.Fatal(err)
			}
			ids := 0
			for i := range n {
				for k := range tt.g.NumBlocks(i) {
					b := tt.g.Block(i, k)
					id := p.blockID(b)
					if id < 0 || p.blockOf(id) != b {
						t.Errorf("%+v: block %+v: id %d, back %+v", tt.g, b, id, p.blockOf(id))
					}
					ids++
				}
			}
			if ids != p.nblocks {
				t.Errorf("%+v: %d blocks, picker counts %d", tt.g, ids, p.nblocks)
			}
		}
	}
	for _, g := range []Geometry{{0, 1}, {1, 0}, {-1, 16}, {1 << 40, 2 << 30}} {
		if _, err := NewPicker(g, Options{}); !errors.Is(err, ErrGeometry) {
			t.Errorf("NewPicker(%+v) = %v, want ErrGeometry", g, err)
		}
	}
}

func TestPickerRejectsBadBlocks(t *testing.T) {
	g := Geometry{Length: 600 << 10, PieceLength: 256 << 10}
	p, _ := NewPicker(g, Options{})
	p.AddPeer(1)
	for _, b := range []Block{
		{-1, 0, BlockSize}, {3, 0, BlockSize}, {0, 1, BlockSize}, {0, 0, 100},
		{0, 16 * BlockSize, BlockSize}, {2, 5 * BlockSize, BlockSize}, {2, 6 * BlockSize, 1},
	} {
		if useful, done := p.BlockReceived(1, b, transcriptEpoch); useful || done {
			t.Errorf("BlockReceived(%+v) = %t, %t; want false, false", b, useful, done)
		}
	}
	if err := checkPicker(p); err != nil {
		t.Fatal(err)
	}
	if err := p.PeerBitfield(1, NewBitfield(4)); !errors.Is(err, ErrBitfield) {
		t.Errorf("PeerBitfield of 4 pieces for 3 = %v, want ErrBitfield", err)
	}
	if err := p.PeerBitfield(2, NewBitfield(3)); err == nil {
		t.Errorf("PeerBitfield for an unknown peer: no error")
	}
}

func TestReadAheadWindow(t *testing.T) {
	const K, M = 1 << 10, 1 << 20
	p, _ := NewPicker(Geometry{Length: 100 * M, PieceLength: 256 * K}, Options{ReadAheadMin: 128 * K, ReadAheadMax: 1 * M})
	steps := []struct {
		off, n       int64
		wantOff, win int64
	}{
		{0, 4 * K, 4 * K, 128 * K},             // first read: smallest window
		{4 * K, 4 * K, 8 * K, 256 * K},         // sequential: doubles
		{8 * K, 120 * K, 128 * K, 512 * K},     // again
		{128 * K, 128 * K, 256 * K, 1 * M},     // again
		{256 * K, 128 * K, 384 * K, 1 * M},     // capped
		{300 * K, 10 * K, 384 * K, 1 * M},      // inside the latest read: no change
		{1 * M, 64 * K, 1*M + 64*K, 1 * M},     // a skip ahead inside the window: sequential
		{50 * M, 64 * K, 50*M + 64*K, 128 * K}, // a seek: window moves and resets
		{10 * M, 64 * K, 10*M + 64*K, 128 * K}, // backwards: a seek
		{10*M + 64*K, 64 * K, 10*M + 128*K, 256 * K},
		{100*M - 16*K, 64 * K, 100 * M, 0}, // at the end: nothing left
	}
	for _, s := range steps {
		p.ReaderAt(1, s.off, s.n)
		off, n := p.Window(1)
		if off != s.wantOff || n != s.win {
			t.Errorf("after read [%d,+%d): window [%d,+%d), want [%d,+%d)", s.off, s.n, off, n, s.wantOff, s.win)
		}
	}
	if off, n := p.Window(2); off != 0 || n != 0 {
		t.Errorf("window of an unknown reader = [%d,+%d)", off, n)
	}
}

// naiveRarest is pickRarest written the obvious way: sort the candidates
// by (class, place in the rarest-first order).
func naiveRarest(p *Picker, q *peer) int {
	type cand struct{ i, cls, pos int }
	var cs []cand
	for i := range p.n {
		if p.have.has(i) || !q.has(i) || !p.requestable(i) {
			continue
		}
		ps := p.pieces[i]
		cls := 1
		if ps.received+ps.requested > 0 {
			cls = 2
			if ps.owner == noPeer || ps.owner == q.id {
				cls = 0
			}
		}
		cs = append(cs, cand{i, cls, int(p.opos[i])})
	}
	if len(cs) == 0 {
		return -1
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if a.cls != b.cls {
			return a.cls - b.cls
		}
		return a.pos - b.pos
	})
	return cs[0].i
}

// TestPickRarestNaive compares pickRarest with a sort on random states (and
// checkPicker checks the order itself).
func TestPickRarestNaive(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 5))
		g := randomGeometry(r)
		g.Length = g.PieceLength * int64(1+r.IntN(300))
		p, _ := NewPicker(g, Options{Seed: seed, WantAll: true, Pipeline: 1 + r.IntN(20)})
		for id := range PeerID(1 + r.IntN(6)) {
			p.AddPeer(id)
			p.PeerChoked(id, false)
			if r.IntN(4) == 0 {
				p.PeerHaveAll(id)
				continue
			}
			for i := range p.n {
				if r.IntN(3) > 0 {
					p.PeerHave(id, i)
				}
			}
		}
		now := transcriptEpoch
		for round := range 30 {
			if err := checkPicker(p); err != nil {
				t.Fatalf("seed %d round %d: %v", seed, round, err)
			}
			for _, q := range p.peers {
				if got, want := p.pickRarest(q), naiveRarest(p, q); got != want {
					t.Fatalf("seed %d round %d peer %d: pickRarest = %d, naive %d", seed, round, q.id, got, want)
				}
			}
			now = now.Add(time.Millisecond)
			p.Step(now)
			// Answer some requests, verify completed pieces, drop a peer's
			// requests now and then.
			for _, q := range p.peers {
				for _, f := range slices.Clone(q.inflight) {
					if r.IntN(3) == 0 {
						if _, done := p.BlockReceived(q.id, p.blockOf(f.blk), now); done {
							p.PieceVerified(int(f.blk) / p.bpp)
						}
					}
				}
				if r.IntN(10) == 0 {
					p.PeerChoked(q.id, true)
					p.PeerChoked(q.id, false)
				}
			}
		}
	}
}

// TestPickerDeterministic: the same seed and events give the same actions;
// another seed gives others.
func TestPickerDeterministic(t *testing.T) {
	run := func(seed uint64) string {
		g := Geometry{Length: 40 << 20, PieceLength: 256 << 10}
		p, _ := NewPicker(g, Options{Seed: seed, WantAll: true, Pipeline: 8})
		r := rand.New(rand.NewPCG(3, 4)) // the events: fixed
		for id := range PeerID(8) {
			p.AddPeer(id)
			p.PeerChoked(id, false)
			for i := range p.n {
				if r.IntN(2) == 0 {
					p.PeerHave(id, i)
				}
			}
		}
		var log strings.Builder
		now := transcriptEpoch
		for range 200 {
			now = now.Add(time.Millisecond)
			for _, a := range p.Step(now) {
				fmt.Fprintln(&log, a)
			}
			q := p.peers[r.IntN(len(p.peers))]
			if len(q.inflight) > 0 {
				b := p.blockOf(q.inflight[0].blk)
				if _, done := p.BlockReceived(q.id, b, now); done {
					p.PieceVerified(b.Piece)
				}
			}
		}
		return log.String()
	}
	a, b, c := run(1), run(1), run(2)
	if a != b {
		t.Error("same seed, same events: different actions")
	}
	if a == c {
		t.Error("another seed: the same actions")
	}
}
