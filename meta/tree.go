package meta

import (
	"strings"

	"github.com/benbjohnson/immutable"
	"github.com/go-git/go-git/v5/plumbing"
)

// node is one entry of the persistent (copy-on-write) namespace tree. A node
// reachable from a published Snapshot is never modified; changes copy the
// nodes on the path from the root.
type node struct {
	e *Entry
	// oid is the git object of the entry: the manifest blob of a file, the
	// target blob of a symlink, the tree of a directory. For a directory a
	// zero oid means "changed since its tree was last written".
	oid plumbing.Hash
	// Directories only.
	prev   plumbing.Hash                       // the last tree written, while oid is zero (a delta base)
	marker plumbing.Hash                       // blob of the .delugefs marker (encodeManifest(e))
	desc   uint32                              // entries below (all descendants)
	kids   *immutable.SortedMap[string, *node] // children by user name
	// enc is the encoding of the last tree written (oid, or prev while oid
	// is zero), kept so that the next tree is made by splicing in only the
	// changed entries (splice.go); nil when not kept. dirty lists the
	// names of the children changed since that tree (nil: none). Both are
	// shared with the node's copies and never modified.
	enc   *treeEnc
	dirty *dirtyName
}

// weight is what n adds to its parent's desc: itself and its descendants.
func (n *node) weight() uint32 { return 1 + n.desc }

type nameCmp struct{}

func (nameCmp) Compare(a, b string) int { return strings.Compare(a, b) }

func emptyKids() *immutable.SortedMap[string, *node] {
	return immutable.NewSortedMap[string, *node](nameCmp{})
}

// lookup walks from root along parts. It returns the node, or an error
// ErrNotExist / ErrNotDir for the first failing component.
func lookup(root *node, parts []string) (*node, error) {
	n := root
	for _, p := range parts {
		if n.e.Kind != KindDir {
			return nil, ErrNotDir
		}
		c, ok := n.kids.Get(p)
		if !ok {
			return nil, ErrNotExist
		}
		n = c
	}
	return n, nil
}

func readDir(n *node) []DirEntry {
	out := make([]DirEntry, 0, n.kids.Len())
	it := n.kids.Iterator()
	for !it.Done() {
		k, v, _ := it.Next()
		out = append(out, DirEntry{Name: k, Entry: v.e})
	}
	return out
}

// Snapshot is an immutable view of the whole namespace at one commit. It is
// safe for concurrent use; reading it never blocks and never allocates more
// than the result.
type Snapshot struct {
	root  *node
	count int           // entries, not counting the root
	head  plumbing.Hash // commit this snapshot is (zero before the first)
	gen   uint64        // head's generation (0: not known yet, or no head)
}

// Get returns the entry at path ("" is the root directory).
func (s *Snapshot) Get(path string) (*Entry, bool) {
	parts, err := splitPath(path)
	if err != nil {
		return nil, false
	}
	n, err := lookup(s.root, parts)
	if err != nil {
		return nil, false
	}
	return n.e, true
}

// ReadDir returns the children of the directory at path, sorted by name
// (byte order). It reports false if path is not a directory.
func (s *Snapshot) ReadDir(path string) ([]DirEntry, bool) {
	parts, err := splitPath(path)
	if err != nil {
		return nil, false
	}
	n, err := lookup(s.root, parts)
	if err != nil || n.e.Kind != KindDir {
		return nil, false
	}
	return readDir(n), true
}

// Len returns the number of entries, not counting the root directory.
func (s *Snapshot) Len() int { return s.count }

// Head returns the commit this snapshot shows (zero for an empty repository
// that has never committed).
func (s *Snapshot) Head() plumbing.Hash { return s.head }

// Walk calls fn for every entry below the root in depth-first, name order,
// with the entry's path. It stops early and returns false if fn does.
func (s *Snapshot) Walk(fn func(path string, e *Entry) bool) bool {
	return walk(s.root, "", fn)
}

func walk(n *node, prefix string, fn func(string, *Entry) bool) bool {
	it := n.kids.Iterator()
	for !it.Done() {
		k, c, _ := it.Next()
		p := k
		if prefix != "" {
			p = prefix + "/" + k
		}
		if !fn(p, c.e) {
			return false
		}
		if c.e.Kind == KindDir && !walk(c, p, fn) {
			return false
		}
	}
	return true
}
