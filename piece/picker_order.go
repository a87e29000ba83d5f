package piece

// The rarest-first order, kept up to date as availability changes (the
// bucket scheme of libtorrent's piece picker), so that picking a piece costs
// a short walk from the front instead of a scan of every piece.
//
// order[:live] holds the pieces we lack, sorted by availability: the
// pieces of availability a are order[bstart[a]:bstart[a+1]], and
// bstart[len(bstart)-1] == live. Pieces we have sit in order[live:].
// opos[i] is piece i's index in order. Within a bucket the order is random:
// NewPicker starts from a permutation drawn from Options.Seed, and a piece
// that changes bucket lands at a random place in its new bucket (one step of
// an inside-out Fisher-Yates shuffle, with the picker's seeded generator),
// so ties are broken at random whatever the order of the events, and the
// same events give the same order.
//
// partial lists the pieces we lack that have blocks received or requested
// (ppos[i] is the index there, or -1): the pieces a peer should finish
// before starting new ones.

// initOrder sets up order, opos and bstart for n pieces of availability 0,
// in the random order perm.
func (p *Picker) initOrder(perm []int) {
	p.order = make([]int32, p.n)
	p.opos = make([]int32, p.n)
	p.ppos = make([]int32, p.n)
	for k, i := range perm {
		p.order[k] = int32(i)
		p.opos[i] = int32(k)
		p.ppos[i] = -1
	}
	p.bstart = []int32{0, int32(p.n)}
	p.live = p.n
}

// growBuckets makes room for one more peer's worth of availability.
func (p *Picker) growBuckets() {
	p.bstart = append(p.bstart, p.bstart[len(p.bstart)-1])
}

func (p *Picker) swapOrder(j, k int32) {
	a, b := p.order[j], p.order[k]
	p.order[j], p.order[k] = b, a
	p.opos[a], p.opos[b] = k, j
}

// availInc adds one to piece i's availability.
func (p *Picker) availInc(i int) {
	a := p.avail[i]
	p.avail[i]++
	if int(p.opos[i]) >= p.live {
		return
	}
	// Last of bucket a, then the bucket boundary moves down: first of a+1.
	last := p.bstart[a+1] - 1
	p.swapOrder(p.opos[i], last)
	p.bstart[a+1]--
	p.stir(last, p.bstart[a+2])
}

// stir swaps the first element of order[lo:end] with a random one of it.
func (p *Picker) stir(lo, end int32) {
	if end-lo > 1 {
		p.swapOrder(lo, lo+int32(p.rng.Uint64N(uint64(end-lo))))
	}
}

// availDec takes one from piece i's availability.
func (p *Picker) availDec(i int) {
	a := p.avail[i]
	p.avail[i]--
	if int(p.opos[i]) >= p.live {
		return
	}
	first := p.bstart[a]
	p.swapOrder(p.opos[i], first)
	p.bstart[a]++
	p.stirLast(p.bstart[a-1], first+1)
}

// stirLast swaps the last element of order[lo:end] with a random one of it.
func (p *Picker) stirLast(lo, end int32) {
	if end-lo > 1 {
		p.swapOrder(end-1, lo+int32(p.rng.Uint64N(uint64(end-lo))))
	}
}

// removeOrder takes a piece we now have out of order[:live].
func (p *Picker) removeOrder(i int) {
	if int(p.opos[i]) >= p.live {
		return
	}
	top := len(p.bstart) - 2
	for a := int(p.avail[i]); a < top; a++ {
		last := p.bstart[a+1] - 1
		p.swapOrder(p.opos[i], last)
		p.bstart[a+1]--
	}
	p.swapOrder(p.opos[i], int32(p.live-1))
	p.live--
	p.bstart[top+1]--
}

// touch keeps piece i's membership of partial in step with its counts.
func (p *Picker) touch(i int) {
	ps := &p.pieces[i]
	started := !p.have.has(i) && ps.received+ps.requested > 0
	switch in := p.ppos[i] >= 0; {
	case started && !in:
		p.ppos[i] = int32(len(p.partial))
		p.partial = append(p.partial, int32(i))
	case !started && in:
		k := p.ppos[i]
		last := p.partial[len(p.partial)-1]
		p.partial[k] = last
		p.ppos[last] = k
		p.partial = p.partial[:len(p.partial)-1]
		p.ppos[i] = -1
	}
}

// pickRarest returns the piece q should start next, or -1: among the
// pieces we lack that q has and that have blocks to request, first the ones
// begun and left without an owner (or owned by q), then untouched ones,
// then the ones another peer is filling; within a class the first in the
// rarest-first order. Untouched pieces only while fewer than
// Options.MaxActive pieces are in flight.
func (p *Picker) pickRarest(q *peer) int {
	best := -1
	for _, i32 := range p.partial {
		i := int(i32)
		if o := p.pieces[i].owner; (o == noPeer || o == q.id) && q.has(i) && p.requestable(i) &&
			(best < 0 || p.opos[i] < p.opos[best]) {
			best = i
		}
	}
	if best >= 0 {
		return best
	}
	if p.opts.MaxActive > 0 && len(p.partial) >= p.opts.MaxActive {
		for _, i32 := range p.partial {
			if i := int(i32); q.has(i) && p.requestable(i) && (best < 0 || p.opos[i] < p.opos[best]) {
				best = i
			}
		}
		return best
	}
	for _, i32 := range p.order[:p.live] {
		i := int(i32)
		if !q.has(i) {
			continue
		}
		ps := &p.pieces[i]
		_, c := p.blockRange(i)
		switch done := int(ps.received + ps.requested); {
		case done == 0:
			return i
		case done < c && best < 0:
			best = i
		}
	}
	return best
}
