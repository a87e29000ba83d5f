package merge

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// naive is the reference merge: the same rules written plainly over maps,
// with no sorted walk, no stack and no binary search. It is quadratic.
func naive(base, ours, theirs m, a, b *Head) Result {
	var events []Event
	type lost struct {
		path string
		leaf Leaf
		h    *Head
		ev   int
	}
	var losers []lost
	lose := func(k EventKind, p string, l Leaf, h *Head, winner string) {
		losers = append(losers, lost{p, l, h, len(events)})
		events = append(events, Event{Kind: k, Path: p, Winner: winner, Loser: h.Node})
	}
	out := m{}
	paths := map[string]bool{}
	for _, t := range []m{base, ours, theirs} {
		for p := range t {
			paths[p] = true
		}
	}
	for p := range paths {
		lb, hb := base[p]
		la, ha := ours[p]
		lt, ht := theirs[p]
		eq := func(x Leaf, hx bool, y Leaf, hy bool) bool { return hx == hy && (!hx || x == y) }
		switch {
		case eq(la, ha, lt, ht):
			if ha {
				out[p] = la
			}
		case eq(la, ha, lb, hb):
			if ht {
				out[p] = lt
			}
		case eq(lt, ht, lb, hb):
			if ha {
				out[p] = la
			}
		case !ha:
			out[p] = lt
			events = append(events, Event{Kind: ModifyDelete, Path: p, Winner: b.Node, Loser: a.Node})
		case !ht:
			out[p] = la
			events = append(events, Event{Kind: ModifyDelete, Path: p, Winner: a.Node, Loser: b.Node})
		case la.Kind == Dir && lt.Kind == Dir:
			w, wn, ln := la, a.Node, b.Node
			if compareLeaves(la, lt) < 0 {
				w, wn, ln = lt, b.Node, a.Node
			}
			out[p] = w
			events = append(events, Event{Kind: DirAttrs, Path: p, Winner: wn, Loser: ln})
		case la.Kind == Dir:
			out[p] = la
			lose(FileDir, p, lt, b, a.Node)
		case lt.Kind == Dir:
			out[p] = lt
			lose(FileDir, p, la, a, b.Node)
		case compareLeaves(la, lt) < 0:
			out[p] = lt
			lose(Conflict, p, la, a, b.Node)
		default:
			out[p] = la
			lose(Conflict, p, lt, b, a.Node)
		}
	}
	hasBelow := func(t m, d string) bool {
		for q := range t {
			if under(q, d) {
				return true
			}
		}
		return false
	}
	// Files with something below them move away.
	all := m{} // out before the moves, for the taken check
	for p, l := range out {
		all[p] = l
	}
	clash := map[string]bool{}
	for p, l := range all {
		if l.Kind != Dir && hasBelow(all, p) {
			la, ha := ours[p]
			lt, ht := theirs[p]
			inA, inB := ha && la == l, ht && lt == l
			h, other := b, a.Node
			switch {
			case inA && !inB:
				h, other = a, b.Node
			case inB && !inA:
			case a.ident(b) <= 0:
				h, other = a, ""
			default:
				other = ""
			}
			lose(FileDir, p, l, h, other)
			delete(out, p)
			clash[p] = true
		}
	}
	// Directories kept without their marker get it back.
	dirs := map[string]bool{}
	for p := range all {
		for d := p; d != ""; {
			i := strings.LastIndexByte(d, '/')
			if i < 0 {
				d = ""
			} else {
				d = d[:i]
			}
			dirs[d] = true
		}
	}
	for d := range dirs {
		if l, ok := out[d]; ok && l.Kind == Dir {
			continue
		}
		la, ha := ours[d]
		lt, ht := theirs[d]
		ha, ht = ha && la.Kind == Dir, ht && lt.Kind == Dir
		var l Leaf
		var w, lo string
		switch {
		case ha && ht:
			panic("both sides have the marker")
		case ha && !hasBelow(theirs, d):
			l, w, lo = la, a.Node, b.Node
		case ht && !hasBelow(ours, d):
			l, w, lo = lt, b.Node, a.Node
		default:
			continue
		}
		out[d] = l
		if !clash[d] {
			events = append(events, Event{Kind: DirKept, Path: d, Winner: w, Loser: lo})
		}
	}
	// Name the losers in path order.
	slices.SortFunc(losers, func(x, y lost) int {
		if c := Compare(x.path, y.path); c != 0 {
			return c
		}
		return compareLeaves(x.leaf, y.leaf)
	})
	taken := map[string]bool{}
	for _, l := range losers {
		for n := 1; ; n++ {
			name := ConflictName(l.path, l.h.Node, l.h.Time, n)
			if _, ok := all[name]; ok || taken[name] || hasBelow(all, name) {
				continue
			}
			taken[name] = true
			out[name] = l.leaf
			events[l.ev].Copy = name
			break
		}
	}
	slices.SortFunc(events, compareEvents)
	return Result{Tree: FromMap(out), Events: events}
}

// TestAgainstNaive compares Trees with the naive reference on random trees.
func TestAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 3000 {
		base := randTree(r, nil, 12)
		ours := randTree(r, base, r.IntN(8))
		theirs := randTree(r, base, r.IntN(8))
		a := Head{Tree: FromMap(ours), Node: "n1", Time: t1}
		b := Head{Tree: FromMap(theirs), Node: "n2", Time: t2}
		if iter%3 == 0 { // same identity on both sides: names collide
			b.Node, b.Time = a.Node, a.Time
		}
		got, err := Trees(FromMap(base), a, b)
		if err != nil {
			t.Fatal(err)
		}
		swapped, err := Trees(FromMap(base), b, a)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, swapped) {
			t.Fatalf("iteration %d: not symmetric:\n%v %v\n%v %v", iter,
				fmtMap(got.Tree.Map()), got.Events, fmtMap(swapped.Tree.Map()), swapped.Events)
		}
		want := naive(base, ours, theirs, &a, &b)
		if len(want.Events) == 0 {
			want.Events = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("iteration %d:\nbase %v\nours %v\ntheirs %v\ngot  %v\n%v\nwant %v\n%v", iter,
				fmtMap(base), fmtMap(ours), fmtMap(theirs),
				fmtMap(got.Tree.Map()), got.Events, fmtMap(want.Tree.Map()), want.Events)
		}
	}
}
