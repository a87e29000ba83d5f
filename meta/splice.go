package meta

import (
	"bytes"
	"slices"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// A directory's next tree is made from its last one by splicing: a
// directory node keeps the encoding of the last tree written for it
// (treeEnc: the bytes and each entry's offset, in git order) and the names
// of the children changed since (dirtyName, pushed by withKid and
// withoutKid), so that writeTrees re-encodes only those entries, copies
// the rest with one memmove, and writes the ref delta against the previous
// tree from the same edit list, without scanning it. Directories without
// a kept encoding (after Open, built by Integrate, small, or changed in
// more than maxDirty names) are encoded whole.

// spliceMinEntries is the number of tree entries (the marker included)
// from which a directory keeps its encoding: smaller trees are cheap to
// encode whole and would only cost memory. (A variable for tests.)
var spliceMinEntries = 64

// maxDirty is the length of a directory's list of changed names at which
// it drops its kept encoding: its next tree is encoded whole.
const maxDirty = 1024

// splices counts the trees made by splicing (for tests).
var splices atomic.Uint64

// treeEnc is the encoding of a directory's tree: never modified.
type treeEnc struct {
	id   plumbing.Hash
	data []byte
	offs []uint32 // start of each entry in data, in git order
}

// dirtyName is a persistent list of the names of a directory's children
// changed since its tree was last written (repeats allowed).
type dirtyName struct {
	name string
	next *dirtyName
	n    int // length of the list from here
}

// touch marks cp, a fresh copy of directory dir, changed in its child
// name: its tree must be written again.
func touch(cp, dir *node, name string) {
	if !dir.oid.IsZero() {
		cp.prev, cp.dirty = dir.oid, nil
	}
	cp.oid = plumbing.ZeroHash
	switch {
	case cp.enc == nil:
		cp.dirty = nil
	case cp.enc.id != cp.prev || cp.dirty != nil && cp.dirty.n >= maxDirty:
		cp.enc, cp.dirty = nil, nil
	default:
		n := 1
		if cp.dirty != nil {
			n += cp.dirty.n
		}
		cp.dirty = &dirtyName{name: name, next: cp.dirty, n: n}
	}
}

// carryTree gives n, a new node for directory old with the same children
// (an attribute change), old's last tree as its delta base and old's kept
// encoding.
func carryTree(n, old *node) {
	n.prev, n.enc, n.dirty = old.oid, old.enc, nil
	if n.prev.IsZero() {
		n.prev, n.dirty = old.prev, old.dirty
	}
}

// kidMode is the git mode of child c's entry.
func kidMode(c *node) filemode.FileMode {
	switch c.e.Kind {
	case KindDir:
		return filemode.Dir
	case KindSymlink:
		return filemode.Symlink
	}
	return fileMode(c.e)
}

// treeChange is one entry of a tree being spliced: git (escaped) name and
// new mode and object, or mode 0 for an entry removed.
type treeChange struct {
	name string
	mode filemode.FileMode
	oid  plumbing.Hash
}

// spliceTrees makes the tree of n, whose kept encoding is its last tree's,
// by splicing in the entries of the changed children (writing the trees
// of changed subdirectories first, into cp.kids) and the marker. It
// returns the encoding and a delta against n.enc.
func spliceTrees(w objSink, cp, n *node) ([]byte, []uint32, []byte, error) {
	names := make([]string, 0, n.dirty.len())
	for d := n.dirty; d != nil; d = d.next {
		names = append(names, d.name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	chs := make([]treeChange, 0, len(names)+1)
	chs = append(chs, treeChange{markerName, filemode.Regular, cp.marker})
	kids := n.kids
	for _, name := range names {
		c, ok := kids.Get(name)
		if !ok {
			chs = append(chs, treeChange{name: escapeName(name)})
			continue
		}
		if c.e.Kind == KindDir && c.oid.IsZero() {
			nc, err := writeTrees(w, c)
			if err != nil {
				return nil, nil, nil, err
			}
			kids = kids.Set(name, nc)
			c = nc
		}
		chs = append(chs, treeChange{escapeName(name), kidMode(c), c.oid})
	}
	cp.kids = kids
	data, offs, delta := n.enc.splice(chs)
	splices.Add(1)
	return data, offs, delta, nil
}

func (d *dirtyName) len() int {
	if d == nil {
		return 0
	}
	return d.n
}

// gitCmp compares the name a (a tree's if ad) with b (a tree's if bd) in
// git's tree order: a tree's name compares as if followed by '/'.
func gitCmp[A, B ~string | ~[]byte](a A, ad bool, b B, bd bool) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	ca, cb := -1, -1
	switch {
	case n < len(a):
		ca = int(a[n])
	case ad:
		ca = '/'
	}
	switch {
	case n < len(b):
		cb = int(b[n])
	case bd:
		cb = '/'
	}
	return ca - cb
}

// end is the end of entry i.
func (t *treeEnc) end(i int) int {
	if i+1 < len(t.offs) {
		return int(t.offs[i+1])
	}
	return len(t.data)
}

// entry returns the name of entry i and whether it is a tree.
func (t *treeEnc) entry(i int) ([]byte, bool) {
	b := t.data[t.offs[i]:t.end(i)]
	sp := bytes.IndexByte(b, ' ')
	nul := bytes.IndexByte(b, 0)
	return b[sp+1 : nul], sp == 5 // only "40000" has five digits
}

// search returns the index of the first entry not before the name (a
// tree's if dir) and whether that entry has it.
func (t *treeEnc) search(name string, dir bool) (int, bool) {
	i, j := 0, len(t.offs)
	for i < j {
		h := int(uint(i+j) >> 1)
		en, ed := t.entry(h)
		if gitCmp(name, dir, en, ed) > 0 {
			i = h + 1
		} else {
			j = h
		}
	}
	if i == len(t.offs) {
		return i, false
	}
	en, ed := t.entry(i)
	return i, gitCmp(name, dir, en, ed) == 0
}

// splice returns the encoding of t with the entries of chs (distinct
// names) replaced, added or removed, its entry offsets, and a git delta
// that makes it from t: copies of the unchanged runs of t, the new entries
// inserted.
func (t *treeEnc) splice(chs []treeChange) ([]byte, []uint32, []byte) {
	type ins struct {
		pos        int
		name       string
		dir        bool
		start, end int // in buf
	}
	var (
		dels []int
		adds []ins
		buf  []byte
	)
	for _, c := range chs {
		start := len(buf)
		if c.mode != 0 {
			buf = appendTreeEnt(buf, c.mode, c.name, c.oid)
		}
		dir := c.mode == filemode.Dir
		i, found := t.search(c.name, false)
		pos := i
		if !found {
			i, found = t.search(c.name, true)
			if dir {
				pos = i
			}
		} else if dir {
			pos, _ = t.search(c.name, true)
		}
		if found {
			if c.mode != 0 && bytes.Equal(t.data[t.offs[i]:t.end(i)], buf[start:]) {
				buf = buf[:start]
				continue
			}
			dels = append(dels, i)
		}
		if c.mode != 0 {
			adds = append(adds, ins{pos, c.name, dir, start, len(buf)})
		}
	}
	slices.Sort(dels)
	slices.SortFunc(adds, func(a, b ins) int {
		if a.pos != b.pos {
			return a.pos - b.pos
		}
		return gitCmp(a.name, a.dir, b.name, b.dir)
	})
	size := len(t.data) + len(buf)
	for _, i := range dels {
		size -= t.end(i) - int(t.offs[i])
	}
	data := make([]byte, 0, size)
	offs := make([]uint32, 0, len(t.offs)-len(dels)+len(adds))
	delta := appendVarint(nil, len(t.data))
	delta = appendVarint(delta, size)
	cur, insFrom := 0, -1 // next entry of t to copy; start of the insertion being made
	copyTo := func(to int) {
		if to <= cur {
			return
		}
		if insFrom >= 0 {
			delta = appendInsert(delta, data[insFrom:])
			insFrom = -1
		}
		a, b := int(t.offs[cur]), len(t.data)
		if to < len(t.offs) {
			b = int(t.offs[to])
		}
		shift := len(data) - a
		data = append(data, t.data[a:b]...)
		for _, o := range t.offs[cur:to] {
			offs = append(offs, uint32(int(o)+shift))
		}
		delta = appendCopy(delta, a, b-a)
		cur = to
	}
	for ai, di := 0, 0; ai < len(adds) || di < len(dels); {
		if ai < len(adds) && (di == len(dels) || adds[ai].pos <= dels[di]) {
			a := adds[ai]
			copyTo(a.pos)
			if insFrom < 0 {
				insFrom = len(data)
			}
			offs = append(offs, uint32(len(data)))
			data = append(data, buf[a.start:a.end]...)
			ai++
			continue
		}
		copyTo(dels[di])
		cur = max(cur, dels[di]+1)
		di++
	}
	copyTo(len(t.offs))
	if insFrom >= 0 {
		delta = appendInsert(delta, data[insFrom:])
	}
	return data, offs, delta
}

// appendTreeEnt appends one tree entry.
func appendTreeEnt(b []byte, mode filemode.FileMode, name string, oid plumbing.Hash) []byte {
	b = append(b, modeString(mode)...)
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, 0)
	return append(b, oid[:]...)
}

// appendInsert appends delta instructions that insert data.
func appendInsert(d, data []byte) []byte {
	for len(data) > 0 {
		n := min(len(data), 127)
		d = append(d, byte(n))
		d = append(d, data[:n]...)
		data = data[n:]
	}
	return d
}
