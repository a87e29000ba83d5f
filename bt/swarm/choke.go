package swarm

import (
	"cmp"
	"slices"

	"github.com/delugefs/delugefs/bt/wire"
)

// Choking (BEP 3, the classic algorithm): every Config.ChokeInterval the
// interested peers with the best rates get the Config.UnchokeSlots regular
// unchokes — the rate they send to us while we download, the rate we send
// to them once we seed — and every Config.OptimisticInterval one more
// interested peer, in turn, is unchoked optimistically so that newcomers
// get a chance to show their rate. Trusted peers are always unchoked. A
// peer that becomes interested while a regular slot is free is unchoked at
// once, without waiting for the next round.

// rechoke runs a choke round; rotate moves the optimistic unchoke on.
func (a *actor) rechoke(rotate bool) {
	seeding := a.pk != nil && a.pk.Complete()
	var cands []*conn
	for _, c := range a.conns {
		if c.a.peerInterested && !c.a.trusted {
			cands = append(cands, c)
		}
	}
	rate := func(c *conn) float64 {
		if seeding {
			return c.a.upRate
		}
		return c.a.downRate
	}
	slices.SortFunc(cands, func(x, y *conn) int {
		return cmp.Or(cmp.Compare(rate(y), rate(x)), cmp.Compare(x.id, y.id))
	})
	regular := cands[:min(len(cands), a.cfg.UnchokeSlots)]
	rest := cands[len(regular):]

	opt := a.optimistic
	if opt != nil && (opt.a.closed || !opt.a.peerInterested || slices.Contains(regular, opt)) {
		opt, rotate = nil, true
	}
	if rotate && len(rest) > 0 {
		// The next choked candidate after the current one, by id.
		slices.SortFunc(rest, func(x, y *conn) int { return cmp.Compare(x.id, y.id) })
		opt = rest[0]
		if a.optimistic != nil {
			for _, c := range rest {
				if c.id > a.optimistic.id {
					opt = c
					break
				}
			}
		}
	}
	a.optimistic = opt
	for _, c := range a.conns {
		unchoke := c.a.trusted || c == opt || slices.Contains(regular, c)
		if unchoke == c.choking.Load() {
			a.setChoke(c, !unchoke)
		}
	}
}

// setChoke chokes or unchokes a peer.
func (a *actor) setChoke(c *conn, choke bool) {
	if c.choking.Load() == choke {
		return
	}
	c.choking.Store(choke)
	if choke {
		c.out.choke(c.fast)
	} else {
		c.out.push(wire.Message{ID: wire.Unchoke})
	}
}

// regularUnchoked counts the peers unchoked by rate.
func (a *actor) regularUnchoked() int {
	n := 0
	for _, c := range a.conns {
		if !c.choking.Load() && !c.a.trusted && c != a.optimistic {
			n++
		}
	}
	return n
}
