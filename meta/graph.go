package meta

import (
	"bytes"
	"cmp"
	"container/heap"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// The commit graph: what the namespace sync needs to know of each commit
// (parents, generation, time, node), parsed once and kept in memory, so
// repeated syncs do not read history again.
//
// Every commit carries its generation number in a trailer, the last line
// of its message: "DelugeFS-Generation: N", where N is 1 for a commit
// without parents and otherwise 1 + the greatest generation of its
// parents. An ancestor always has a smaller generation than its
// descendants, so ancestry walks stop at the generation of what they look
// for instead of at the root, and the latest common ancestor is the first
// one a walk in decreasing generation meets. The trailer is checked against
// the parents for every commit taken from a peer; commits without it
// (written before it existed) get their generation computed from their
// parents, once.

// genTrailer starts the generation trailer line.
const genTrailer = "DelugeFS-Generation: "

// Bounds on commits read from peers.
const (
	maxCommitLen = 1 << 20
	maxParents   = 1024
	maxCommitSec = 253402300799 // 9999-12-31T23:59:59Z
)

// unknownNode stands for the node of a commit that names none (written
// before commits carried their node id, or by something else): conflict
// copies of its versions are named after it.
const unknownNode = "unknown"

// commitInfo is what parseCommit reads from a commit object.
type commitInfo struct {
	tree    plumbing.Hash
	parents []plumbing.Hash
	time    int64  // committer time, unix seconds
	node    string // node id from the committer's e-mail (NODE@delugefs); "" if none
	gen     uint64 // from the trailer; 0 when there is none
}

// parseCommit parses a commit object strictly: "tree", "parent" lines,
// "author", "committer", a blank line and the message; nothing else.
func parseCommit(data []byte) (commitInfo, error) {
	var c commitInfo
	if len(data) > maxCommitLen {
		return c, fmt.Errorf("commit of %d bytes exceeds %d", len(data), maxCommitLen)
	}
	rest := data
	line := func() (string, bool) {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return "", false
		}
		l := string(rest[:i])
		rest = rest[i+1:]
		return l, true
	}
	hash := func(s string) (plumbing.Hash, bool) {
		if len(s) != 40 || strings.ToLower(s) != s {
			return plumbing.ZeroHash, false
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return plumbing.ZeroHash, false
		}
		return plumbing.Hash(b), true
	}
	l, ok := line()
	t, found := strings.CutPrefix(l, "tree ")
	if !ok || !found {
		return c, errors.New("commit does not start with a tree")
	}
	if c.tree, ok = hash(t); !ok {
		return c, fmt.Errorf("commit tree %q", t)
	}
	for {
		if l, ok = line(); !ok {
			return c, errors.New("commit header is truncated")
		}
		p, found := strings.CutPrefix(l, "parent ")
		if !found {
			break
		}
		h, ok := hash(p)
		if !ok {
			return c, fmt.Errorf("commit parent %q", p)
		}
		if slices.Contains(c.parents, h) {
			return c, fmt.Errorf("commit lists parent %s twice", h)
		}
		if len(c.parents) == maxParents {
			return c, fmt.Errorf("commit has more than %d parents", maxParents)
		}
		c.parents = append(c.parents, h)
	}
	a, found := strings.CutPrefix(l, "author ")
	if !found {
		return c, errors.New("commit has no author")
	}
	if _, _, err := parseSig(a); err != nil {
		return c, fmt.Errorf("commit author: %w", err)
	}
	l, ok = line()
	cm, found := strings.CutPrefix(l, "committer ")
	if !ok || !found {
		return c, errors.New("commit has no committer")
	}
	email, secs, err := parseSig(cm)
	if err != nil {
		return c, fmt.Errorf("commit committer: %w", err)
	}
	c.time = secs
	if id, ok := strings.CutSuffix(email, "@delugefs"); ok && checkNodeID(id) == nil {
		c.node = id
	}
	if l, ok = line(); !ok || l != "" {
		return c, errors.New("commit has headers other than tree, parent, author and committer")
	}
	msg := string(rest)
	if i := strings.LastIndex(msg, "\n\n"+genTrailer); i >= 0 {
		v, found := strings.CutSuffix(msg[i+2+len(genTrailer):], "\n")
		if !found {
			return c, errors.New("commit generation trailer is not the last line")
		}
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != v {
			return c, fmt.Errorf("commit generation %q", v)
		}
		c.gen = n
	}
	return c, nil
}

// parseSig parses "name <email> seconds +hhmm".
func parseSig(s string) (email string, secs int64, err error) {
	lt := strings.IndexByte(s, '<')
	gt := strings.LastIndexByte(s, '>')
	if lt < 0 || gt < lt || strings.ContainsAny(s[:lt], "<>") || strings.ContainsAny(s[lt+1:gt], "<>") {
		return "", 0, fmt.Errorf("signature %q", s)
	}
	email = s[lt+1 : gt]
	ts, tz, ok := strings.Cut(strings.TrimPrefix(s[gt+1:], " "), " ")
	if !ok || len(tz) != 5 || (tz[0] != '+' && tz[0] != '-') || strings.Trim(tz[1:], "0123456789") != "" {
		return "", 0, fmt.Errorf("signature time %q", s[gt+1:])
	}
	secs, err = strconv.ParseInt(ts, 10, 64)
	if err != nil || secs < 0 || secs > maxCommitSec || strconv.FormatInt(secs, 10) != ts {
		return "", 0, fmt.Errorf("signature time %q", ts)
	}
	return email, secs, nil
}

// checkNodeID reports whether id is a valid node id: 1 to 64 of
// [A-Za-z0-9_-].
func checkNodeID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w: node id of %d bytes", ErrInvalid, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: node id %q", ErrInvalid, id)
		}
	}
	return nil
}

// gcommit is one commit of the graph.
type gcommit struct {
	id      plumbing.Hash
	tree    plumbing.Hash
	parents []plumbing.Hash
	gen     uint64
	time    int64
	node    string // never empty: unknownNode when the commit names none
	// front is the frontier of a merge commit, once computed.
	front []plumbing.Hash
}

func (c *gcommit) isMerge() bool { return len(c.parents) > 1 }

// objGetter reads whole objects for the graph and the merge.
type objGetter interface {
	// get returns the object's type and contents.
	get(h plumbing.Hash) (plumbing.ObjectType, []byte, error)
	// own reports whether this repository holds the object (and so, for
	// a commit, its whole history): its generation trailer is trusted.
	own(h plumbing.Hash) bool
}

// graph caches parsed commits. It is owned by the actor.
type graph struct {
	m map[plumbing.Hash]*gcommit
}

// maxGraph bounds the commits the graph keeps; past it the cache starts
// over (generations are in the commits, so reloading is cheap: a walk
// stops at the generation it looks for and reads only recent history).
// About 250 bytes a commit: 1<<18 was 24 MB of a 100k-file node's heap.
const maxGraph = 1 << 15

func newGraph() *graph { return &graph{m: make(map[plumbing.Hash]*gcommit)} }

// trim empties the cache when it has grown past maxGraph.
func (g *graph) trim() {
	if len(g.m) > maxGraph {
		clear(g.m)
	}
}

// add records a commit this repository just made.
func (g *graph) add(id plumbing.Hash, c commitInfo) {
	g.trim()
	if c.node == "" {
		c.node = unknownNode
	}
	g.m[id] = &gcommit{id: id, tree: c.tree, parents: c.parents, gen: c.gen, time: c.time, node: c.node}
}

// errBadCommit marks graph errors caused by the contents of a commit.
var errBadCommit = errors.New("bad commit")

// get returns commit id, reading it (and, for a commit without a trusted
// generation, its parents) through og.
func (g *graph) get(og objGetter, id plumbing.Hash) (*gcommit, error) {
	if c, ok := g.m[id]; ok {
		return c, nil
	}
	parsed := map[plumbing.Hash]commitInfo{}
	stack := []plumbing.Hash{id}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		if _, ok := g.m[top]; ok {
			stack = stack[:len(stack)-1]
			continue
		}
		ci, ok := parsed[top]
		if !ok {
			t, data, err := og.get(top)
			if err != nil {
				return nil, fmt.Errorf("read commit %s: %w", top, err)
			}
			if t != plumbing.CommitObject {
				return nil, fmt.Errorf("%w: %s is a %v, not a commit", errBadCommit, top, t)
			}
			if ci, err = parseCommit(data); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", errBadCommit, top, err)
			}
			parsed[top] = ci
		}
		if ci.gen > 0 && og.own(top) {
			g.add(top, ci) // our own commit: its trailer is trusted
			stack = stack[:len(stack)-1]
			continue
		}
		var gen uint64
		missing := false
		for _, p := range ci.parents {
			pc, ok := g.m[p]
			if !ok {
				stack = append(stack, p)
				missing = true
				continue
			}
			gen = max(gen, pc.gen)
		}
		if missing {
			continue
		}
		gen++
		if ci.gen != 0 && ci.gen != gen {
			return nil, fmt.Errorf("%w: %s has generation %d, its parents make it %d", errBadCommit, top, ci.gen, gen)
		}
		ci.gen = gen
		g.add(top, ci)
		stack = stack[:len(stack)-1]
	}
	return g.m[id], nil
}

// isAncestor reports whether x is y or an ancestor of y.
func (g *graph) isAncestor(og objGetter, x, y plumbing.Hash) (bool, error) {
	if x == y {
		return true, nil
	}
	cx, err := g.get(og, x)
	if err != nil {
		return false, err
	}
	seen := map[plumbing.Hash]bool{y: true}
	stack := []plumbing.Hash{y}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		c, err := g.get(og, id)
		if err != nil {
			return false, err
		}
		if c.gen <= cx.gen {
			continue
		}
		for _, p := range c.parents {
			if p == x {
				return true, nil
			}
			if !seen[p] {
				seen[p] = true
				stack = append(stack, p)
			}
		}
	}
	return false, nil
}

// frontier returns the frontier of commit id: the non-merge commits among
// its ancestors (itself included) that no other such commit descends
// from, sorted by id. For a non-merge commit that is the commit itself.
func (g *graph) frontier(og objGetter, id plumbing.Hash) ([]plumbing.Hash, error) {
	c, err := g.get(og, id)
	if err != nil {
		return nil, err
	}
	if !c.isMerge() {
		return []plumbing.Hash{id}, nil
	}
	if c.front != nil {
		return c.front, nil
	}
	var all []plumbing.Hash
	for _, p := range c.parents {
		f, err := g.frontier(og, p)
		if err != nil {
			return nil, err
		}
		all = append(all, f...)
	}
	if c.front, err = g.maximal(og, all); err != nil {
		return nil, err
	}
	return c.front, nil
}

// maximal returns the commits of set that are not ancestors of another
// commit of set, sorted by id, without repeats.
func (g *graph) maximal(og objGetter, set []plumbing.Hash) ([]plumbing.Hash, error) {
	set = slices.Clone(set)
	slices.SortFunc(set, compareHash)
	set = slices.Compact(set)
	out := set[:0:0]
	for i, x := range set {
		covered := false
		for j, y := range set {
			if i == j {
				continue
			}
			a, err := g.isAncestor(og, x, y)
			if err != nil {
				return nil, err
			}
			if a {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, x)
		}
	}
	return out, nil
}

func compareHash(a, b plumbing.Hash) int { return bytes.Compare(a[:], b[:]) }

// lca returns the latest common ancestor of (the union of the ancestors
// of) set and c: of all their common ancestors, the one with the greatest
// generation, then the greatest id. It is a function of the commits alone,
// so every peer picks the same. ok is false when there is none (unrelated
// histories).
func (g *graph) lca(og objGetter, set []plumbing.Hash, c plumbing.Hash) (plumbing.Hash, bool, error) {
	flags := map[plumbing.Hash]uint8{}
	var q genHeap
	push := func(id plumbing.Hash, f uint8) error {
		old, seen := flags[id]
		flags[id] = old | f
		if seen {
			return nil
		}
		gc, err := g.get(og, id)
		if err != nil {
			return err
		}
		heap.Push(&q, gc)
		return nil
	}
	for _, s := range set {
		if err := push(s, 1); err != nil {
			return plumbing.ZeroHash, false, err
		}
	}
	if err := push(c, 2); err != nil {
		return plumbing.ZeroHash, false, err
	}
	// Popped in decreasing (generation, id): every descendant of a commit
	// within the walk comes out before it, so its flags are final.
	for q.Len() > 0 {
		gc := heap.Pop(&q).(*gcommit)
		f := flags[gc.id]
		if f == 3 {
			return gc.id, true, nil
		}
		for _, p := range gc.parents {
			if err := push(p, f); err != nil {
				return plumbing.ZeroHash, false, err
			}
		}
	}
	return plumbing.ZeroHash, false, nil
}

// genHeap is a max-heap of commits by (generation, id).
type genHeap []*gcommit

func (h genHeap) Len() int { return len(h) }
func (h genHeap) Less(i, j int) bool {
	return cmp.Or(cmp.Compare(h[i].gen, h[j].gen), compareHash(h[i].id, h[j].id)) > 0
}
func (h genHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *genHeap) Push(x any)   { *h = append(*h, x.(*gcommit)) }
func (h *genHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
