package piece

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Step returns what to send now: first the cancels queued by events since
// the last Step (in the order the events happened), then new requests in
// order of urgency (see Picker). The returned slice is owned by the Picker
// and valid until the next call of Step.
func (p *Picker) Step(now time.Time) []Action {
	t := now.UnixNano()
	p.out = append(p.out[:0], p.cancels...)
	p.cancels = p.cancels[:0]
	if p.nhave == p.n {
		return p.out
	}

	// The peers that may take requests, fastest first (peers not measured
	// yet last), then by id.
	p.free = p.free[:0]
	for _, q := range p.peers {
		if !q.choked && q.lack > 0 && len(q.inflight) < q.capacity {
			p.free = append(p.free, q)
		}
	}
	p.nfree = len(p.free)
	if p.nfree == 0 && len(p.reads) == 0 {
		return p.out
	}
	if len(p.free) > 1 {
		slices.SortStableFunc(p.free, func(a, b *peer) int { return cmp.Compare(a.speedKey(), b.speedKey()) })
	}

	// 0. Late requests: ask a second peer. They are older than anything
	// asked for now, and hold back their piece.
	for _, q := range p.peers {
		if p.nfree == 0 {
			break
		}
		to := p.timeout(q)
		for k := range q.inflight {
			f := &q.inflight[k]
			if (!f.late && t-f.sentAt <= to) || p.nfree == 0 {
				break
			}
			f.late = true
			if f.covered || p.reqs[f.blk] == maxReqs {
				continue
			}
			o := p.choose(int(f.blk)/p.bpp, f.blk, true)
			if o == nil {
				continue
			}
			if p.reqs[f.blk] == 1 || p.liveCopies(f.blk, t) < p.opts.MaxCopies-1 {
				p.give(o, f.blk, t, f.urgent)
			}
			f.covered = true
		}
	}

	// 1. Pending reads, earliest deadline first, spread over the peers;
	// they jump the queue of a full peer.
	for _, r := range p.reads {
		overdue := t >= r.deadline
		for i := r.first; i <= r.last; i++ {
			if p.have.has(i) || (!overdue && !p.requestable(i)) {
				continue
			}
			base, c := p.blockRange(i)
			for blk := int32(base); blk < int32(base+c); blk++ {
				if p.from[blk] != noPeer {
					continue
				}
				var q *peer
				switch n := int(p.reqs[blk]); {
				case n == 0:
					if p.nfree > 0 {
						q = p.choose(i, blk, false)
					}
					if q == nil {
						q = p.preempt(i)
					}
				case overdue && n < p.opts.MaxCopies && p.nfree > 0:
					q = p.choose(i, blk, true)
				}
				if q != nil {
					p.give(q, blk, t, true)
				}
			}
		}
	}

	// 2. First and last pieces while a reader is open, then the read-ahead
	// windows.
	if len(p.readers) > 0 && p.nfree > 0 {
		p.fillPiece(0, t)
		p.fillPiece(p.n-1, t)
		for _, r := range p.readers {
			off, n := p.Window(r.id)
			if n == 0 {
				continue
			}
			last := int((off + n - 1) / p.geo.PieceLength)
			for i := int(off / p.geo.PieceLength); i <= last && p.nfree > 0; i++ {
				p.fillPiece(i, t)
			}
		}
	}

	// 3. Rarest first, whole pieces per peer; 4. endgame.
	if p.wantAll {
		for _, q := range p.free {
			if p.nfree == 0 {
				break
			}
			if len(q.inflight) < q.capacity {
				p.fillRarest(q, t)
			}
			if len(q.inflight) < q.capacity && p.unreq == 0 {
				p.endgame(q, t)
			}
		}
	}
	return p.out
}

func (q *peer) speedKey() int64 {
	if q.srtt == 0 {
		return math.MaxInt64
	}
	return q.srtt
}

// timeout returns how long a request may stay outstanding on q before it is
// late.
func (p *Picker) timeout(q *peer) int64 {
	return max(int64(p.opts.LateMin), int64(p.opts.LateFactor)*q.srtt)
}

// liveCopies returns how many requests for blk are in flight and not late.
// A request found late is marked so for good.
func (p *Picker) liveCopies(blk int32, t int64) int {
	n := 0
	left := int(p.reqs[blk])
	for _, q := range p.peers {
		if left == 0 {
			break
		}
		if k := q.find(blk); k >= 0 {
			left--
			if f := &q.inflight[k]; !f.late && t-f.sentAt <= p.timeout(q) {
				n++
			} else {
				// Late stays late (the timeout moves with the latency),
				// and so are the older requests on q.
				for j := range k + 1 {
					q.inflight[j].late = true
				}
			}
		}
	}
	return n
}

// choose returns the free peer with the most free slots that has piece i
// (ties: faster, then lower id), skipping peers that already have blk in
// flight when dup is set; nil when there is none.
func (p *Picker) choose(i int, blk int32, dup bool) *peer {
	var best *peer
	bestFree := 0
	for _, q := range p.free {
		f := q.capacity - len(q.inflight)
		if f <= bestFree || !q.has(i) || (dup && q.find(blk) >= 0) {
			continue
		}
		best, bestFree = q, f
	}
	return best
}

// preempt makes room for a read's block of piece i on a full peer that has
// the piece, by cancelling that peer's newest request that serves no read.
// It prefers the peer with the fewest read requests out, then the fastest,
// then the lowest id; nil when no peer qualifies.
func (p *Picker) preempt(i int) *peer {
	var best *peer
	for _, q := range p.peers {
		if q.choked || len(q.inflight) != q.capacity || q.urgent == len(q.inflight) || !q.has(i) {
			continue
		}
		if best == nil || q.urgent < best.urgent || (q.urgent == best.urgent && q.speedKey() < best.speedKey()) {
			best = q
		}
	}
	if best == nil {
		return nil
	}
	for k := len(best.inflight) - 1; ; k-- {
		if f := best.inflight[k]; !f.urgent {
			p.unrequest(best, k)
			p.out = append(p.out, Action{Kind: Cancel, Peer: best.id, Block: p.blockOf(f.blk)})
			p.nfree++ // give takes it back
			return best
		}
	}
}

// give requests blk from q and keeps count of the free peers.
func (p *Picker) give(q *peer, blk int32, t int64, urgent bool) {
	p.request(q, blk, t, urgent)
	if len(q.inflight) == q.capacity {
		p.nfree--
	}
}

// nextUnrequested returns the first block of piece i from blk on that is
// neither received nor requested, or -1.
func (p *Picker) nextUnrequested(i int, blk int32) int32 {
	base, c := p.blockRange(i)
	for blk = max(blk, int32(base)); blk < int32(base+c); blk++ {
		if p.reqs[blk] == 0 && p.from[blk] == noPeer {
			return blk
		}
	}
	return -1
}

// fillPiece requests the pending blocks of piece i, preferring one peer for
// the whole piece (its owner, else the free peer with the most room).
func (p *Picker) fillPiece(i int, t int64) {
	if !p.requestable(i) {
		return
	}
	blk := int32(-1)
	for p.nfree > 0 {
		var q *peer
		if o := p.pieces[i].owner; o != noPeer {
			if oq := p.peer(o); oq != nil && !oq.choked && oq.has(i) && len(oq.inflight) < oq.capacity && slices.Contains(p.free, oq) {
				q = oq
			}
		}
		if q == nil {
			if q = p.choose(i, -1, false); q == nil {
				return
			}
		}
		if p.pieces[i].owner == noPeer {
			p.pieces[i].owner = q.id
		}
		for len(q.inflight) < q.capacity {
			if blk = p.nextUnrequested(i, blk); blk < 0 {
				return
			}
			p.give(q, blk, t, false)
		}
	}
}

// fillRarest fills q's pipeline from the piece it is working on, then from
// the pieces pickRarest gives it.
func (p *Picker) fillRarest(q *peer, t int64) {
	blk := int32(-1)
	for len(q.inflight) < q.capacity {
		i := q.cur
		if i < 0 || !q.has(i) || !p.requestable(i) {
			if i = p.pickRarest(q); i < 0 {
				q.cur = -1
				return
			}
			q.cur = i
			blk = -1
			if p.pieces[i].owner == noPeer {
				p.pieces[i].owner = q.id
			}
		}
		blk = p.nextUnrequested(i, blk)
		p.give(q, blk, t, false)
	}
}

// endgame fills q's pipeline with blocks outstanding on other peers.
func (p *Picker) endgame(q *peer, t int64) {
	for _, o := range p.peers {
		if o == q {
			continue
		}
		for k := 0; k < len(o.inflight) && len(q.inflight) < q.capacity; k++ {
			f := o.inflight[k]
			if int(p.reqs[f.blk]) >= p.opts.MaxCopies || !q.has(int(f.blk)/p.bpp) || q.find(f.blk) >= 0 {
				continue
			}
			p.give(q, f.blk, t, f.urgent)
		}
	}
}
