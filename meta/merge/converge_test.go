package merge

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The convergence property: N simulated nodes, each with a head in a tiny
// shared commit DAG, make random changes and send their heads to each other
// with random delays; a node that receives a head it does not contain
// merges (base: the latest common ancestor) or fast-forwards. When all
// messages are delivered, every node must have the same head, and every
// file version ever written must be in the final tree unless a change made
// on a node that had it (causally later) deleted or overwrote it.

type commit struct {
	parents []int
	tree    Tree
	node    string    // identity for conflict names (a merge: the greatest of its parents')
	time    time.Time // commit time (a merge: the latest of its parents')
	anc     []uint64  // bitset of ancestors, itself included
}

type sim struct {
	t       *testing.T
	r       *rand.Rand
	commits []*commit
	merges  map[[2]int]int // sorted parents -> merge commit: merges are deterministic
	heads   []int
	queue   []msg
	seq     int
	now     time.Time
	nextID  int
	written map[Hash]bool // file versions ever written
	killed  map[Hash]bool // file versions deleted or overwritten by a later change
	stats   map[string]int
	// frontier selects the merge protocol: false merges the two heads
	// pairwise (a merge commit has the heads as parents); true makes one
	// canonical merge commit per set of joined non-merge commits.
	frontier bool
	canon    map[string]int // sorted frontier -> its canonical merge commit
}

type msg struct {
	at, seq, to, head int
}

func (s *sim) isAnc(x, y int) bool { // x is an ancestor of y (or y itself)
	a := s.commits[y].anc
	return x/64 < len(a) && a[x/64]&(1<<(x%64)) != 0
}

func (s *sim) add(c *commit) int {
	id := len(s.commits)
	c.anc = make([]uint64, id/64+1)
	for _, p := range c.parents {
		for i, w := range s.commits[p].anc {
			c.anc[i] |= w
		}
	}
	c.anc[id/64] |= 1 << (id % 64)
	s.commits = append(s.commits, c)
	return id
}

// lca returns the common ancestor with the greatest id: ids grow along the
// DAG, so it has no common ancestor below it, and every node picks the same.
func (s *sim) lca(x, y int) int {
	ax, ay := s.commits[x].anc, s.commits[y].anc
	for i := min(len(ax), len(ay)) - 1; i >= 0; i-- {
		if w := ax[i] & ay[i]; w != 0 {
			for b := 63; b >= 0; b-- {
				if w&(1<<b) != 0 {
					return i*64 + b
				}
			}
		}
	}
	s.t.Fatalf("commits %d and %d have no common ancestor", x, y)
	return -1
}

func (s *sim) broadcast(from, head int) {
	for to := range s.heads {
		if to != from {
			s.seq++
			s.queue = append(s.queue, msg{at: s.seq0() + 1 + s.r.IntN(8), seq: s.seq, to: to, head: head})
		}
	}
}

func (s *sim) seq0() int { return int(s.now.Sub(simStart) / time.Second) }

var simStart = time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)

func (s *sim) content() Hash {
	s.nextID++
	var h Hash
	h[0], h[1], h[2], h[3] = byte(s.nextID>>24), byte(s.nextID>>16), byte(s.nextID>>8), byte(s.nextID)
	return h
}

// receive is what a node does with a peer's head.
func (s *sim) receive(n, h int) {
	if s.frontier {
		s.receiveFrontier(n, h)
		return
	}
	cur := s.heads[n]
	switch {
	case s.isAnc(h, cur):
		return
	case s.isAnc(cur, h):
		s.heads[n] = h
		s.stats["fast-forward"]++
		return
	}
	p := [2]int{min(cur, h), max(cur, h)}
	base := s.commits[s.lca(cur, h)]
	ca, cb := s.commits[p[0]], s.commits[p[1]]
	ha := Head{Tree: ca.tree, Node: ca.node, Time: ca.time}
	hb := Head{Tree: cb.tree, Node: cb.node, Time: cb.time}
	res, err := Trees(base.tree, ha, hb)
	if err != nil {
		s.t.Fatalf("merge %v: %v", p, err)
	}
	if n%2 == 1 { // half the nodes merge the other way round
		res, err = Trees(base.tree, hb, ha)
		if err != nil {
			s.t.Fatalf("merge %v: %v", p, err)
		}
	}
	checkResult(s.t, res.Tree)
	for _, e := range res.Events {
		s.stats[e.Kind.String()]++
	}
	if id, ok := s.merges[p]; ok {
		// Another node merged the same heads: it must have made the same
		// commit.
		if !slices.Equal(s.commits[id].tree, res.Tree) {
			s.t.Fatalf("merge of %v differs between nodes", p)
		}
		s.heads[n] = id
		s.stats["same merge"]++
		return
	}
	node, tm := ca.node, ca.time
	if c := cmp.Or(cb.time.Compare(tm), strings.Compare(cb.node, node)); c > 0 {
		node, tm = cb.node, cb.time
	}
	id := s.add(&commit{parents: p[:], tree: res.Tree, node: node, time: tm})
	s.merges[p] = id
	s.heads[n] = id
	s.stats["merge"]++
	s.broadcast(n, id)
}

// frontierOf returns the maximal non-merge commits among the ancestors of
// heads, in increasing order.
func (s *sim) frontierOf(heads ...int) []int {
	union := make([]uint64, len(s.commits)/64+1)
	for _, h := range heads {
		for i, w := range s.commits[h].anc {
			union[i] |= w
		}
	}
	covered := make([]uint64, len(union))
	var f []int
	for id := len(s.commits) - 1; id >= 0; id-- { // descendants first
		if union[id/64]&(1<<(id%64)) == 0 || covered[id/64]&(1<<(id%64)) != 0 || len(s.commits[id].parents) > 1 {
			continue
		}
		f = append(f, id)
		for i, w := range s.commits[id].anc {
			covered[i] |= w
		}
	}
	slices.Reverse(f)
	return f
}

// canonical returns the one merge commit of frontier f: parents f, tree
// the merge of f's trees folded in order, each step against the latest
// common ancestor of what is merged so far and the next commit.
func (s *sim) canonical(f []int) int {
	if len(f) == 1 {
		return f[0]
	}
	key := fmt.Sprint(f)
	if id, ok := s.canon[key]; ok {
		s.stats["same merge"]++
		return id
	}
	first := s.commits[f[0]]
	acc := Head{Tree: first.tree, Node: first.node, Time: first.time}
	anc := slices.Clone(first.anc)
	for _, id := range f[1:] {
		c := s.commits[id]
		base := -1
		for i := min(len(anc), len(c.anc)) - 1; i >= 0 && base < 0; i-- {
			if w := anc[i] & c.anc[i]; w != 0 {
				for b := 63; b >= 0; b-- {
					if w&(1<<b) != 0 {
						base = i*64 + b
						break
					}
				}
			}
		}
		next := Head{Tree: c.tree, Node: c.node, Time: c.time}
		res, err := Trees(s.commits[base].tree, acc, next)
		if err != nil {
			s.t.Fatalf("merge %v: %v", f, err)
		}
		checkResult(s.t, res.Tree)
		for _, e := range res.Events {
			s.stats[e.Kind.String()]++
		}
		if cmp.Or(next.Time.Compare(acc.Time), strings.Compare(next.Node, acc.Node)) > 0 {
			acc.Node, acc.Time = next.Node, next.Time
		}
		acc.Tree = res.Tree
		if len(c.anc) > len(anc) {
			anc = append(anc, make([]uint64, len(c.anc)-len(anc))...)
		}
		for i, w := range c.anc {
			anc[i] |= w
		}
	}
	id := s.add(&commit{parents: f, tree: acc.Tree, node: acc.Node, time: acc.Time})
	s.canon[key] = id
	s.stats["merge"]++
	return id
}

func (s *sim) receiveFrontier(n, h int) {
	cur := s.heads[n]
	if s.isAnc(h, cur) {
		return
	}
	nMerges := len(s.commits)
	target := s.canonical(s.frontierOf(cur, h))
	if target == cur {
		return
	}
	s.heads[n] = target
	if len(s.commits) > nMerges { // a new merge commit: tell the others
		s.broadcast(n, target)
	} else {
		s.stats["fast-forward"]++
	}
}

// op makes one random change on node n and commits it.
func (s *sim) op(n int) {
	r := s.r
	tr := s.commits[s.heads[n]].tree.Map()
	var dirs, files []string
	for _, e := range FromMap(tr) {
		if e.Leaf.Kind == Dir {
			dirs = append(dirs, e.Path)
		} else {
			files = append(files, e.Path)
		}
	}
	names := []string{"a", "b", "c.txt", "d.mkv", "e"}
	join := func(d, name string) string {
		if d == "" {
			return name
		}
		return d + "/" + name
	}
	newPath := func() string { return join(dirs[r.IntN(len(dirs))], names[r.IntN(len(names))]) }
	kill := func(p string) {
		if l, ok := tr[p]; ok && l.Kind != Dir {
			s.killed[l.Hash] = true
		}
		delete(tr, p)
	}
	below := func(d string) []string {
		var out []string
		for p := range tr {
			if under(p, d) {
				out = append(out, p)
			}
		}
		return out
	}
	var what string
	switch k := r.IntN(20); {
	case k < 6: // create, or overwrite a file
		p := newPath()
		if l, ok := tr[p]; ok && l.Kind == Dir {
			return
		}
		kill(p)
		h := s.content()
		tr[p] = Leaf{Kind: File, Hash: h, Mode: 0o644}
		s.written[h] = true
		what = "create"
	case k < 10: // modify
		if len(files) == 0 {
			return
		}
		p := files[r.IntN(len(files))]
		kill(p)
		h := s.content()
		tr[p] = Leaf{Kind: File, Hash: h, Mode: 0o644}
		s.written[h] = true
		what = "modify"
	case k < 12: // delete
		if len(files) == 0 {
			return
		}
		kill(files[r.IntN(len(files))])
		what = "delete"
	case k < 15: // rename a file, over a file at the target
		if len(files) == 0 {
			return
		}
		from, to := files[r.IntN(len(files))], newPath()
		if l, ok := tr[to]; from == to || ok && l.Kind == Dir {
			return
		}
		kill(to)
		tr[to] = tr[from]
		delete(tr, from)
		what = "rename"
	case k < 18: // mkdir
		p := newPath()
		if _, ok := tr[p]; ok {
			return
		}
		tr[p] = Leaf{Kind: Dir, Hash: s.content(), Mode: 0o755}
		what = "mkdir"
	case k < 19: // rm -r
		if len(dirs) < 2 {
			return
		}
		d := dirs[1+r.IntN(len(dirs)-1)]
		for _, p := range below(d) {
			kill(p)
		}
		delete(tr, d)
		what = "rmdir"
	default: // rename a directory
		if len(dirs) < 2 {
			return
		}
		d, to := dirs[1+r.IntN(len(dirs)-1)], newPath()
		if _, ok := tr[to]; ok || to == d || under(to, d) {
			return
		}
		for _, p := range below(d) {
			tr[to+p[len(d):]] = tr[p]
			delete(tr, p)
		}
		tr[to] = tr[d]
		delete(tr, d)
		what = "rename dir"
	}
	s.stats[what]++
	id := s.add(&commit{parents: []int{s.heads[n]}, tree: FromMap(tr), node: fmt.Sprintf("n%d", n), time: s.now})
	s.heads[n] = id
	s.broadcast(n, id)
}

// TestConverge runs the simulation with the pairwise protocol (a node
// merges its head with the received one; 2 or 3 nodes: from 4 on it
// makes merge storms, merges of merges faster than they settle) and with
// the frontier protocol (2 to 7 nodes).
func TestConverge(t *testing.T) {
	t.Run("pairwise", func(t *testing.T) { converge(t, false, 2) })
	t.Run("frontier", func(t *testing.T) { converge(t, true, 6) })
}

func converge(t *testing.T, frontier bool, nodeSpread int) {
	total := map[string]int{}
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s := &sim{
				t: t, r: rand.New(rand.NewPCG(seed, 7)), merges: map[[2]int]int{},
				now: simStart, written: map[Hash]bool{}, killed: map[Hash]bool{}, stats: total,
				frontier: frontier, canon: map[string]int{},
			}
			nodes := 2 + int(seed%uint64(nodeSpread))
			root := s.add(&commit{tree: Tree{{"", D(1)}}, node: "n0", time: simStart})
			s.heads = make([]int, nodes)
			for i := range s.heads {
				s.heads[i] = root
			}
			const opSteps = 60
			for step := 0; ; step++ {
				s.now = simStart.Add(time.Duration(step) * time.Second)
				if step < opSteps {
					for n := range s.heads {
						if s.r.IntN(3) == 0 {
							s.op(n)
						}
					}
				}
				// Deliver what is due, in a random order.
				var due []msg
				s.queue = slices.DeleteFunc(s.queue, func(m msg) bool {
					if m.at <= step {
						due = append(due, m)
						return true
					}
					return false
				})
				s.r.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
				for _, m := range due {
					s.receive(m.to, m.head)
				}
				if step >= opSteps && len(s.queue) == 0 {
					break
				}
				if step > 20_000 || len(s.commits) > 3000 {
					t.Fatalf("no convergence after %d steps: %d commits, %d messages in flight, stats %v",
						step, len(s.commits), len(s.queue), s.stats)
				}
			}
			head := s.heads[0]
			for n, h := range s.heads {
				if h != head {
					t.Fatalf("node %d ends at commit %d, node 0 at %d", n, h, head)
				}
			}
			final := s.commits[head].tree
			checkResult(t, final)
			have := map[Hash]bool{}
			for _, e := range final {
				have[e.Leaf.Hash] = true
			}
			for h := range s.written {
				if !s.killed[h] && !have[h] {
					t.Errorf("file version %v was lost", h)
				}
			}
			total["commits"] += len(s.commits)
			total["final paths"] += len(final)
		})
	}
	t.Logf("over all runs: %v", total)
}
