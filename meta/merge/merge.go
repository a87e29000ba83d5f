package merge

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrInvalid is returned (wrapped, with the offending path) for input the
// merge refuses: an unsorted tree, a malformed path, an unknown kind, a bad
// node id.
var ErrInvalid = errors.New("merge: invalid input")

// Head is one side of a merge: a tree and the identity its losing versions
// are named after.
type Head struct {
	Tree Tree
	// Node is the node id that appears in the names of this side's losing
	// versions: non-empty, at most 64 bytes, no '/' or NUL.
	Node string
	// Time appears, in UTC to the second, in the names of this side's
	// losing versions.
	Time time.Time
}

// ident orders heads the same way on every peer, for the rare choices that
// do not follow from the trees.
func (h *Head) ident(o *Head) int {
	if c := strings.Compare(h.Node, o.Node); c != 0 {
		return c
	}
	return h.Time.Compare(o.Time)
}

// EventKind says what the merge did at a path.
type EventKind uint8

// The things a merge reports.
const (
	// Conflict: both sides changed (or added) a file or symlink
	// differently. Winner's version stays at Path; Loser's is kept at Copy.
	Conflict EventKind = iota + 1
	// FileDir: one side has a file or symlink at Path, the other a
	// directory. The directory stays at Path; the file, from Loser, is kept
	// at Copy.
	FileDir
	// ModifyDelete: Winner changed Path (or something replaced it), Loser
	// deleted it; the change is kept.
	ModifyDelete
	// DirAttrs: both sides changed the attributes of directory Path
	// differently; Winner's marker is kept and Loser's dropped (no file
	// contents are involved).
	DirAttrs
	// DirKept: Loser deleted directory Path, but the merge keeps something
	// below it, so Winner's marker of it is kept too.
	DirKept
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case Conflict:
		return "conflict"
	case FileDir:
		return "file-dir"
	case ModifyDelete:
		return "modify-delete"
	case DirAttrs:
		return "dir-attrs"
	case DirKept:
		return "dir-kept"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is one thing the merge did that a user may want to know about.
// Winner and Loser are node ids (Head.Node); either may be empty when no
// single side is the cause.
type Event struct {
	Kind   EventKind
	Path   string
	Copy   string // Conflict, FileDir: where the losing version now is
	Winner string
	Loser  string
}

// String formats the event for a log line.
func (e Event) String() string {
	s := fmt.Sprintf("%v %q", e.Kind, e.Path)
	if e.Copy != "" {
		s += fmt.Sprintf(" -> %q", e.Copy)
	}
	return s + fmt.Sprintf(" (winner %q, loser %q)", e.Winner, e.Loser)
}

func compareEvents(x, y Event) int {
	if c := Compare(x.Path, y.Path); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(x.Kind, y.Kind), strings.Compare(x.Copy, y.Copy),
		strings.Compare(x.Winner, y.Winner), strings.Compare(x.Loser, y.Loser))
}

// Result is the outcome of a merge.
type Result struct {
	Tree   Tree    // the merged tree, sorted
	Events []Event // what happened, sorted by path, then kind
}

// Trees merges a and b, two heads whose merge base has the tree base. It is
// symmetric: Trees(base, a, b) and Trees(base, b, a) return the same
// Result. See the package documentation for the rules.
func Trees(base Tree, a, b Head) (Result, error) {
	for _, h := range []*Head{&a, &b} {
		if h.Node == "" || len(h.Node) > maxNode || strings.ContainsAny(h.Node, "/\x00") {
			return Result{}, fmt.Errorf("%w: node id %q", ErrInvalid, h.Node)
		}
	}
	m := merger{base: base, a: &a, b: &b}
	if err := m.walk(); err != nil {
		return Result{}, err
	}
	m.fixStructure()
	m.finish()
	slices.SortFunc(m.events, compareEvents)
	return Result{Tree: m.out, Events: m.events}, nil
}

// loser is a version that must move to a conflict name.
type loser struct {
	path string
	leaf Leaf
	head *Head
	ev   int // index in merger.events of the Conflict or FileDir event
}

type merger struct {
	base Tree
	a, b *Head

	out    Tree   // merged entries in order; removed ones are marked in gone
	gone   []bool // out[i] moves away (a file in a file/dir clash); nil when none
	adds   Tree   // entries to insert: restored markers, conflict copies
	losers []loser
	events []Event
}

// walk is the linear three-way walk over the sorted trees. It decides each
// path on its own and records the losers of conflicts.
func (m *merger) walk() error {
	base, a, b := m.base, m.a.Tree, m.b.Tree
	m.out = make(Tree, 0, max(len(a), len(b))+8)
	var i, j, k int
	var prev string
	for step := 0; i < len(base) || j < len(a) || k < len(b); step++ {
		// The smallest path among the three heads, and which heads hold
		// it (bits 1, 2, 4: base, ours, theirs). In the common case all
		// three hold one path and this costs two string comparisons.
		var p string
		src := 0
		if i < len(base) {
			p, src = base[i].Path, 1
		}
		if j < len(a) {
			if src == 0 {
				p, src = a[j].Path, 2
			} else if c := comparePaths(a[j].Path, p); c == 0 {
				src |= 2
			} else if c < 0 {
				p, src = a[j].Path, 2
			}
		}
		if k < len(b) {
			if src == 0 {
				p, src = b[k].Path, 4
			} else if c := comparePaths(b[k].Path, p); c == 0 {
				src |= 4
			} else if c < 0 {
				p, src = b[k].Path, 4
			}
		}
		// Each step's path must be greater than the last one's: this
		// catches any input that is unsorted or repeats a path.
		if step > 0 && Compare(prev, p) >= 0 {
			return fmt.Errorf("%w: path %q after %q: not sorted or repeated", ErrInvalid, p, prev)
		}
		prev = p
		var lb, la, lt Leaf
		hb, ha, ht := src&1 != 0, src&2 != 0, src&4 != 0
		if hb {
			lb = base[i].Leaf
			i++
		}
		if ha {
			la = a[j].Leaf
			j++
		}
		if ht {
			lt = b[k].Leaf
			k++
		}
		if err := checkEntry(Entry{p, firstLeaf(lb, hb, la, ha, lt, ht)}); err != nil {
			return err
		}
		if (hb && !validKind(lb.Kind)) || (ha && !validKind(la.Kind)) || (ht && !validKind(lt.Kind)) {
			return fmt.Errorf("%w: path %q: unknown kind", ErrInvalid, p)
		}
		if p == "" && ((hb && lb.Kind != Dir) || (ha && la.Kind != Dir) || (ht && lt.Kind != Dir)) {
			return fmt.Errorf("%w: root is not a directory", ErrInvalid)
		}
		m.decide(p, lb, hb, la, ha, lt, ht)
	}
	return nil
}

// comparePaths is Compare with a fast path for equal paths.
func comparePaths(x, y string) int {
	if x == y {
		return 0
	}
	return Compare(x, y)
}

func firstLeaf(lb Leaf, hb bool, la Leaf, ha bool, lt Leaf, ht bool) Leaf {
	switch {
	case hb:
		return lb
	case ha:
		return la
	}
	return lt
}

func validKind(k Kind) bool { return k >= File && k <= Dir }

// decide merges one path: base, ours and theirs leaves, each with whether
// it is present.
func (m *merger) decide(p string, lb Leaf, hb bool, la Leaf, ha bool, lt Leaf, ht bool) {
	same := func(x Leaf, hx bool, y Leaf, hy bool) bool { return hx == hy && (!hx || x == y) }
	switch {
	case same(la, ha, lt, ht): // unchanged, or the same change on both sides
		if ha {
			m.out = append(m.out, Entry{p, la})
		}
		return
	case same(la, ha, lb, hb): // only theirs changed
		if ht {
			m.out = append(m.out, Entry{p, lt})
		}
		return
	case same(lt, ht, lb, hb): // only ours changed
		if ha {
			m.out = append(m.out, Entry{p, la})
		}
		return
	}
	// Both changed, differently.
	switch {
	case !ha: // ours deleted, theirs modified: the modification wins
		m.out = append(m.out, Entry{p, lt})
		m.events = append(m.events, Event{Kind: ModifyDelete, Path: p, Winner: m.b.Node, Loser: m.a.Node})
		return
	case !ht:
		m.out = append(m.out, Entry{p, la})
		m.events = append(m.events, Event{Kind: ModifyDelete, Path: p, Winner: m.a.Node, Loser: m.b.Node})
		return
	}
	// Both present. Rank them by content, never by side, so that every
	// peer picks the same winner.
	win, lose, wh, lh := la, lt, m.a, m.b
	if compareLeaves(la, lt) < 0 {
		win, lose, wh, lh = lt, la, m.b, m.a
	}
	switch {
	case la.Kind == Dir && lt.Kind == Dir:
		m.out = append(m.out, Entry{p, win})
		m.events = append(m.events, Event{Kind: DirAttrs, Path: p, Winner: wh.Node, Loser: lh.Node})
	case la.Kind == Dir || lt.Kind == Dir: // the directory stays, the file moves
		dir, file, dh, fh := la, lt, m.a, m.b
		if lt.Kind == Dir {
			dir, file, dh, fh = lt, la, m.b, m.a
		}
		m.out = append(m.out, Entry{p, dir})
		m.lose(FileDir, p, file, fh, dh.Node)
	default:
		m.out = append(m.out, Entry{p, win})
		m.lose(Conflict, p, lose, lh, wh.Node)
	}
}

// lose records that version l of p, from head h, moves to a conflict name,
// and the event that says so.
func (m *merger) lose(k EventKind, p string, l Leaf, h *Head, winner string) {
	m.losers = append(m.losers, loser{p, l, h, len(m.events)})
	m.events = append(m.events, Event{Kind: k, Path: p, Winner: winner, Loser: h.Node})
}

// fixStructure makes the merged entries a tree again where the per-path
// decisions broke it: a file or symlink with entries below it (one side
// replaced a directory by a file, or deleted it, while the other added or
// modified something inside) moves to a conflict name, and a directory that
// keeps entries but lost its marker gets the marker back.
func (m *merger) fixStructure() {
	out := m.out
	var stack []string // directories open at this point of the walk
	for idx := range out {
		p := out[idx].Path
		for len(stack) > 0 && !under(p, stack[len(stack)-1]) {
			stack = stack[:len(stack)-1]
		}
		// Ancestors of p not yet open have no marker in out.
		if p != "" {
			start := 0 // offset in p where the first unopened ancestor's name begins
			if len(stack) > 0 {
				top := stack[len(stack)-1]
				if top != "" {
					start = len(top) + 1
				}
			} else {
				m.restore("", false)
				stack = append(stack, "")
			}
			for {
				n := strings.IndexByte(p[start:], '/')
				if n < 0 {
					break
				}
				d := p[:start+n]
				m.restore(d, false)
				stack = append(stack, d)
				start += n + 1
			}
		}
		l := out[idx].Leaf
		if l.Kind == Dir {
			stack = append(stack, p)
			continue
		}
		if idx+1 < len(out) && under(out[idx+1].Path, p) {
			// A file where the merge keeps a directory.
			if m.gone == nil {
				m.gone = make([]bool, len(out))
			}
			m.gone[idx] = true
			h, other := m.origin(p, l)
			m.lose(FileDir, p, l, h, other)
			m.restore(p, true)
			stack = append(stack, p)
		}
	}
}

// origin returns the head the merged leaf l at p came from, and the other
// head's node (empty when both hold l).
func (m *merger) origin(p string, l Leaf) (*Head, string) {
	la, ha := m.a.Tree.Get(p)
	lt, ht := m.b.Tree.Get(p)
	inA, inB := ha && la == l, ht && lt == l
	switch {
	case inA && !inB:
		return m.a, m.b.Node
	case inB && !inA:
		return m.b, m.a.Node
	case m.a.ident(m.b) <= 0: // both (or neither, with invalid input)
		return m.a, ""
	}
	return m.b, ""
}

// restore puts back the marker of directory d, which the merge keeps but
// whose marker it dropped, from the side that still has it. It does not
// when the other side has entries below d without a marker: that side
// removed the marker on purpose and kept the directory, a change that wins
// like any other. clash says a file stood at d (a file/dir clash, already
// reported); otherwise d was deleted as a directory and DirKept is
// reported.
func (m *merger) restore(d string, clash bool) {
	la, ha := m.a.Tree.Get(d)
	lt, ht := m.b.Tree.Get(d)
	ha, ht = ha && la.Kind == Dir, ht && lt.Kind == Dir
	var l Leaf
	var winner, loserNode string
	switch {
	case ha && ht: // not reached: the walk keeps one of two markers
		l = la
		if compareLeaves(la, lt) < 0 {
			l = lt
		}
	case ha:
		if m.b.Tree.hasBelow(d) {
			return
		}
		l, winner, loserNode = la, m.a.Node, m.b.Node
	case ht:
		if m.a.Tree.hasBelow(d) {
			return
		}
		l, winner, loserNode = lt, m.b.Node, m.a.Node
	default:
		return // no side has a marker: an implicit directory
	}
	m.adds = append(m.adds, Entry{d, l})
	if !clash {
		m.events = append(m.events, Event{Kind: DirKept, Path: d, Winner: winner, Loser: loserNode})
	}
}

// finish names the losers, in path order, and builds the final tree.
func (m *merger) finish() {
	if len(m.losers) == 0 && len(m.adds) == 0 && m.gone == nil {
		return
	}
	slices.SortFunc(m.losers, func(x, y loser) int {
		return cmp.Or(Compare(x.path, y.path), compareLeaves(x.leaf, y.leaf))
	})
	taken := make(map[string]bool)
	for _, l := range m.losers {
		var name string
		for n := 1; ; n++ {
			name = ConflictName(l.path, l.head.Node, l.head.Time, n)
			if !taken[name] && !m.out.occupied(name) {
				break
			}
		}
		taken[name] = true
		m.adds = append(m.adds, Entry{name, l.leaf})
		m.events[l.ev].Copy = name
	}
	slices.SortFunc(m.adds, func(x, y Entry) int { return Compare(x.Path, y.Path) })
	final := make(Tree, 0, len(m.out)+len(m.adds))
	i := 0
	for idx, e := range m.out {
		if m.gone != nil && m.gone[idx] {
			continue
		}
		for i < len(m.adds) && Compare(m.adds[i].Path, e.Path) < 0 {
			final = append(final, m.adds[i])
			i++
		}
		final = append(final, e)
	}
	final = append(final, m.adds[i:]...)
	m.out = final
}
