package piece

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// checkPicker recomputes the picker's counters the slow way and compares.
func checkPicker(p *Picker) error {
	reqs := make([]int, p.nblocks)
	for _, q := range p.peers {
		seen := map[int32]bool{}
		urgent := 0
		for _, f := range q.inflight {
			if f.urgent {
				urgent++
			}
			if seen[f.blk] {
				return fmt.Errorf("peer %d has %s twice", q.id, p.blockOf(f.blk))
			}
			seen[f.blk] = true
			reqs[f.blk]++
		}
		if urgent != q.urgent {
			return fmt.Errorf("peer %d: urgent %d, counted %d", q.id, q.urgent, urgent)
		}
		lack, nbits := 0, 0
		for i := range p.n {
			if q.has(i) && !p.have.has(i) {
				lack++
			}
			if !q.haveAll && q.bits.has(i) {
				nbits++
			}
		}
		if lack != q.lack || (!q.haveAll && nbits != q.nbits) {
			return fmt.Errorf("peer %d: lack %d nbits %d, counted %d %d", q.id, q.lack, q.nbits, lack, nbits)
		}
		if q.choked && len(q.inflight) > 0 {
			return fmt.Errorf("choked peer %d has requests out", q.id)
		}
	}
	unreq, nhave := 0, 0
	for i := range p.n {
		base, c := p.blockRange(i)
		var recv, req int32
		avail := int32(0)
		for _, q := range p.peers {
			if !q.haveAll && q.bits.has(i) {
				avail++
			}
		}
		if avail != p.avail[i] {
			return fmt.Errorf("piece %d: avail %d, counted %d", i, p.avail[i], avail)
		}
		if p.have.has(i) {
			nhave++
			for blk := base; blk < base+c; blk++ {
				if reqs[blk] != 0 || p.reqs[blk] != 0 {
					return fmt.Errorf("verified block %s requested", p.blockOf(int32(blk)))
				}
			}
			if p.pieces[i].received != 0 || p.pieces[i].requested != 0 {
				return fmt.Errorf("verified piece %d has counts %+v", i, p.pieces[i])
			}
			continue
		}
		for blk := base; blk < base+c; blk++ {
			if int(p.reqs[blk]) != reqs[blk] {
				return fmt.Errorf("block %s: reqs %d, counted %d", p.blockOf(int32(blk)), p.reqs[blk], reqs[blk])
			}
			switch {
			case p.from[blk] != noPeer:
				recv++
				if reqs[blk] != 0 {
					return fmt.Errorf("received block %s still requested", p.blockOf(int32(blk)))
				}
			case reqs[blk] > 0:
				req++
			default:
				unreq++
			}
		}
		if recv != p.pieces[i].received || req != p.pieces[i].requested {
			return fmt.Errorf("piece %d: counts %+v, counted received %d requested %d", i, p.pieces[i], recv, req)
		}
	}
	if unreq != p.unreq || nhave != p.nhave {
		return fmt.Errorf("unreq %d nhave %d, counted %d %d", p.unreq, p.nhave, unreq, nhave)
	}
	return checkOrder(p)
}

// checkOrder checks the rarest-first order and the partial set.
func checkOrder(p *Picker) error {
	if p.live != p.n-p.nhave || int(p.bstart[len(p.bstart)-1]) != p.live || p.bstart[0] != 0 {
		return fmt.Errorf("order: live %d, bstart %v, missing %d", p.live, p.bstart, p.n-p.nhave)
	}
	seen := make([]bool, p.n)
	for k, i := range p.order {
		if seen[i] || int(p.opos[i]) != k {
			return fmt.Errorf("order: piece %d at %d, opos %d", i, k, p.opos[i])
		}
		seen[i] = true
		if (k < p.live) == p.have.has(int(i)) {
			return fmt.Errorf("order: piece %d at %d, live %d, have %t", i, k, p.live, p.have.has(int(i)))
		}
		if k < p.live {
			a := p.avail[i]
			if int(a) >= len(p.bstart)-1 || k < int(p.bstart[a]) || k >= int(p.bstart[a+1]) {
				return fmt.Errorf("order: piece %d of availability %d at %d, buckets %v", i, a, k, p.bstart)
			}
		}
	}
	n := 0
	for i := range p.n {
		ps := p.pieces[i]
		started := !p.have.has(i) && ps.received+ps.requested > 0
		if started != (p.ppos[i] >= 0) || (started && int(p.partial[p.ppos[i]]) != i) {
			return fmt.Errorf("partial: piece %d started %t, ppos %d", i, started, p.ppos[i])
		}
		if started {
			n++
		}
	}
	if n != len(p.partial) {
		return fmt.Errorf("partial: %d listed, %d started", len(p.partial), n)
	}
	return nil
}

// model is what the caller (the swarm actor) knows: what it asked whom.
type model struct {
	p        *Picker
	out      map[PeerID][]Block // outstanding requests per peer, as sent
	choked   map[PeerID]bool
	capacity map[PeerID]int
	now      time.Time
}

func (m *model) has(id PeerID, i int) bool {
	q := m.p.peer(id)
	return q != nil && q.has(i)
}

// step runs Step and checks every action against what the caller knows.
func (m *model) step() error {
	for _, a := range m.p.Step(m.now) {
		switch a.Kind {
		case Cancel:
			k := slices.Index(m.out[a.Peer], a.Block)
			if k < 0 {
				return fmt.Errorf("cancel %s: not outstanding", a)
			}
			m.out[a.Peer] = slices.Delete(m.out[a.Peer], k, k+1)
		case Request:
			switch {
			case m.p.peer(a.Peer) == nil:
				return fmt.Errorf("%s: no such peer", a)
			case m.choked[a.Peer]:
				return fmt.Errorf("%s: peer chokes us", a)
			case !m.has(a.Peer, a.Block.Piece):
				return fmt.Errorf("%s: peer lacks the piece", a)
			case m.p.Have(a.Block.Piece):
				return fmt.Errorf("%s: piece verified", a)
			case m.p.from[m.p.blockID(a.Block)] != noPeer:
				return fmt.Errorf("%s: block received", a)
			case slices.Contains(m.out[a.Peer], a.Block):
				return fmt.Errorf("%s: already outstanding there", a)
			case len(m.out[a.Peer]) >= m.capacity[a.Peer]:
				return fmt.Errorf("%s: pipeline of %d full", a, m.capacity[a.Peer])
			}
			m.out[a.Peer] = append(m.out[a.Peer], a.Block)
		default:
			return fmt.Errorf("bad action %v", a)
		}
	}
	return checkPicker(m.p)
}

// receive delivers block b from peer id, verifying (or failing, with
// probability pFail) a completed piece.
func (m *model) receive(r *rand.Rand, id PeerID, b Block, pFail float64) {
	if k := slices.Index(m.out[id], b); k >= 0 {
		m.out[id] = slices.Delete(m.out[id], k, k+1)
	}
	if _, done := m.p.BlockReceived(id, b, m.now); done {
		if r.Float64() < pFail {
			m.p.PieceFailed(b.Piece)
		} else {
			m.p.PieceVerified(b.Piece)
		}
	}
}

func randomGeometry(r *rand.Rand) Geometry {
	pl := int64(BlockSize) << r.IntN(5) // 16 KiB .. 256 KiB
	if r.IntN(4) == 0 {
		pl = int64(BlockSize) * int64(1+r.IntN(5)) // not a power of two
	}
	n := 1 + r.Int64N(40)
	length := (n-1)*pl + 1 + r.Int64N(pl)
	return Geometry{Length: length, PieceLength: pl}
}

// TestPickerRandom drives pickers on random geometries with random events
// and checks after every step that no request is for a block we have, none
// overfills a pipeline, none goes to a choked peer or a peer lacking the
// piece, and the picker's counters agree with a recount. Then one peer that
// has everything stays, and the blob must complete.
func TestPickerRandom(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 99))
		g := randomGeometry(r)
		p, err := NewPicker(g, Options{Seed: seed, Pipeline: 1 + r.IntN(8), WantAll: r.IntN(2) == 0, LateMin: time.Duration(1+r.IntN(300)) * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		m := &model{p: p, out: map[PeerID][]Block{}, choked: map[PeerID]bool{}, capacity: map[PeerID]int{}, now: transcriptEpoch}
		n := g.NumPieces()
		nextPeer := PeerID(1)
		var ids []PeerID
		randPeer := func() (PeerID, bool) {
			if len(ids) == 0 {
				return 0, false
			}
			return ids[r.IntN(len(ids))], true
		}
		fail := func(ev string, err error) {
			t.Helper()
			t.Fatalf("seed %d geometry %+v after %s: %v", seed, g, ev, err)
		}
		for step := range 400 {
			ev := ""
			switch k := r.IntN(20); {
			case k == 0 && len(ids) < 6:
				id := nextPeer
				nextPeer++
				ids = append(ids, id)
				p.AddPeer(id)
				p.PeerChoked(id, false)
				m.capacity[id] = p.opts.Pipeline
				ev = "add peer"
			case k == 1:
				if id, ok := randPeer(); ok && r.IntN(3) == 0 {
					p.RemovePeer(id)
					delete(m.out, id)
					delete(m.choked, id)
					ids = slices.DeleteFunc(ids, func(x PeerID) bool { return x == id })
					ev = "remove peer"
				}
			case k == 2 || k == 3:
				if id, ok := randPeer(); ok {
					p.PeerHave(id, r.IntN(n))
					ev = "have"
				}
			case k == 4:
				if id, ok := randPeer(); ok {
					switch r.IntN(3) {
					case 0:
						p.PeerHaveAll(id)
					case 1:
						p.PeerHaveNone(id)
					default:
						bf := NewBitfield(n)
						for i := range n {
							if r.IntN(2) == 0 {
								bf.Set(i)
							}
						}
						if err := p.PeerBitfield(id, bf); err != nil {
							t.Fatal(err)
						}
					}
					ev = "bitfield"
				}
			case k == 5:
				if id, ok := randPeer(); ok {
					c := r.IntN(2) == 0
					p.PeerChoked(id, c)
					if c {
						delete(m.out, id)
					}
					m.choked[id] = c
					ev = "choke"
				}
			case k == 6:
				if id, ok := randPeer(); ok {
					c := 1 + r.IntN(8)
					p.SetPipeline(id, c)
					m.capacity[id] = c
					ev = "pipeline"
				}
			case k == 7:
				off := r.Int64N(g.Length)
				p.AddRead(ReadID(r.IntN(5)), off, r.Int64N(g.PieceLength*3), m.now.Add(time.Duration(r.IntN(500))*time.Millisecond))
				ev = "read"
			case k == 8:
				p.CancelRead(ReadID(r.IntN(5)))
			case k == 9:
				p.ReaderAt(ReaderID(r.IntN(3)), r.Int64N(g.Length), r.Int64N(64<<10))
				ev = "readat"
			case k == 10:
				p.CloseReader(ReaderID(r.IntN(3)))
			case k == 11:
				p.SetWantAll(r.IntN(2) == 0)
			case k == 12:
				if id, ok := randPeer(); ok && len(m.out[id]) > 0 {
					b := m.out[id][r.IntN(len(m.out[id]))]
					p.RequestRejected(id, b)
					m.out[id] = slices.DeleteFunc(m.out[id], func(x Block) bool { return x == b })
					ev = "reject"
				}
			case k == 13:
				// An unsolicited block.
				if id, ok := randPeer(); ok {
					i := r.IntN(n)
					m.receive(r, id, g.Block(i, r.IntN(g.NumBlocks(i))), 0.2)
					ev = "unsolicited"
				}
			case k == 14:
				m.now = m.now.Add(time.Duration(r.IntN(400)) * time.Millisecond)
			default:
				if id, ok := randPeer(); ok && len(m.out[id]) > 0 {
					m.now = m.now.Add(time.Duration(r.IntN(20)) * time.Millisecond)
					m.receive(r, id, m.out[id][r.IntN(len(m.out[id]))], 0.1)
					ev = "receive"
				}
			}
			if err := checkPicker(p); err != nil {
				fail(fmt.Sprintf("event %d %s", step, ev), err)
			}
			if err := m.step(); err != nil {
				fail(fmt.Sprintf("step %d (%s)", step, ev), err)
			}
		}

		// Progress: a peer with everything that answers everything; the
		// others stay silent. The blob completes.
		seedID := nextPeer
		p.AddPeer(seedID)
		p.PeerChoked(seedID, false)
		p.PeerHaveAll(seedID)
		m.capacity[seedID] = p.opts.Pipeline
		p.SetWantAll(true)
		for k := 0; !p.Complete(); k++ {
			if k > 20*p.nblocks+1000 {
				t.Fatalf("seed %d geometry %+v: no progress, have %d/%d", seed, g, p.Count(), n)
			}
			m.now = m.now.Add(50 * time.Millisecond)
			if err := m.step(); err != nil {
				fail("progress step", err)
			}
			for _, b := range slices.Clone(m.out[seedID]) {
				m.receive(r, seedID, b, 0.05)
			}
		}
		if err := m.step(); err != nil {
			fail("final step", err)
		}
	}
}

// TestPickerStreamingProgress: without WantAll, reads complete one after the
// other from a single full peer, and nothing beyond reads, windows and the
// first and last pieces is fetched.
func TestPickerStreamingProgress(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 7))
		g := randomGeometry(r)
		p, err := NewPicker(g, Options{Seed: seed, Pipeline: 1 + r.IntN(8), ReadAheadMin: BlockSize, ReadAheadMax: 4 * BlockSize})
		if err != nil {
			t.Fatal(err)
		}
		m := &model{p: p, out: map[PeerID][]Block{}, choked: map[PeerID]bool{}, capacity: map[PeerID]int{1: p.opts.Pipeline}, now: transcriptEpoch}
		p.AddPeer(1)
		p.PeerChoked(1, false)
		p.PeerHaveAll(1)
		p.OpenReader(1, ReaderOptions{})
		wanted := map[int]bool{0: true, g.NumPieces() - 1: true}
		for range 10 {
			off := r.Int64N(g.Length)
			n := 1 + r.Int64N(2*g.PieceLength)
			p.ReaderAt(1, off, n)
			wOff, wN := p.Window(1)
			for i := wOff / g.PieceLength; wN > 0 && i <= (wOff+wN-1)/g.PieceLength; i++ {
				wanted[int(i)] = true
			}
			for i := off / g.PieceLength; i <= min(off+n-1, g.Length-1)/g.PieceLength; i++ {
				wanted[int(i)] = true
			}
			if p.AddRead(1, off, n, m.now.Add(time.Second)) {
				continue
			}
			for k := 0; p.Reads() > 0; k++ {
				if k > 10*p.nblocks {
					t.Fatalf("seed %d: read [%d,+%d) does not complete", seed, off, n)
				}
				m.now = m.now.Add(10 * time.Millisecond)
				if err := m.step(); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				for _, b := range slices.Clone(m.out[1]) {
					if !wanted[b.Piece] {
						t.Fatalf("seed %d: piece %d requested, wanted only %v", seed, b.Piece, wanted)
					}
					m.receive(r, 1, b, 0)
				}
			}
		}
	}
}
