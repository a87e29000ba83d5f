package merge

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Kind is what a Leaf stands for.
type Kind uint8

// The kinds of leaves. The zero Kind is invalid.
const (
	File    Kind = iota + 1 // a regular file; Hash names its manifest
	Symlink                 // a symbolic link; Hash names its target
	Dir                     // a directory marker; Hash names the directory's attributes
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case File:
		return "file"
	case Symlink:
		return "symlink"
	case Dir:
		return "dir"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Hash is a content id: a git object id (plumbing.Hash converts directly) or
// any other 20-byte id that is equal exactly when the contents are.
type Hash [20]byte

// String returns the id in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Leaf is one entry of a flattened tree. Two leaves are the same version
// when they are equal (==): a change of kind, content id or mode is a change.
type Leaf struct {
	Kind Kind
	Hash Hash
	Mode uint32
}

// compareLeaves is a total order on leaves, used wherever two versions must
// be ranked the same way on every peer.
func compareLeaves(x, y Leaf) int {
	if c := strings.Compare(string(x.Hash[:]), string(y.Hash[:])); c != 0 {
		return c
	}
	if x.Kind != y.Kind {
		return int(x.Kind) - int(y.Kind)
	}
	switch {
	case x.Mode < y.Mode:
		return -1
	case x.Mode > y.Mode:
		return 1
	}
	return 0
}

// Entry is a Leaf at a path. A path is slash-separated and relative to the
// root, with no leading or trailing slash and no empty component; the root
// itself is "" and may only hold a Dir marker.
type Entry struct {
	Path string
	Leaf Leaf
}

// Tree is a flattened namespace: every leaf with its path, sorted by
// Compare, each path at most once. A directory exists when it has a Dir
// marker or any leaf below it. The merge never modifies a Tree it is given.
type Tree []Entry

// Compare orders paths component by component (as a depth-first walk of
// directories sorted by name yields them): like strings.Compare, except
// that '/' sorts before every other byte. So a directory's descendants
// follow it immediately: "a", "a/x", "a-b", "a.txt".
func Compare(a, b string) int {
	n := min(len(a), len(b))
	x, y := a[:n], b[:n]
	for i := 0; i < len(x) && i < len(y); i++ {
		c, d := x[i], y[i]
		if c == d {
			continue
		}
		if c == '/' {
			return -1
		}
		if d == '/' {
			return 1
		}
		if c < d {
			return -1
		}
		return 1
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// FromMap returns the tree holding m's entries, sorted.
func FromMap(m map[string]Leaf) Tree {
	t := make(Tree, 0, len(m))
	for p, l := range m {
		t = append(t, Entry{p, l})
	}
	slices.SortFunc(t, func(x, y Entry) int { return Compare(x.Path, y.Path) })
	return t
}

// Map returns t's entries as a map from path to leaf.
func (t Tree) Map() map[string]Leaf {
	m := make(map[string]Leaf, len(t))
	for _, e := range t {
		m[e.Path] = e.Leaf
	}
	return m
}

// search returns the index of the first entry whose path is not before p.
func (t Tree) search(p string) int {
	i, _ := slices.BinarySearchFunc(t, p, func(e Entry, p string) int { return Compare(e.Path, p) })
	return i
}

// Get returns the leaf at path p, by binary search.
func (t Tree) Get(p string) (Leaf, bool) {
	i := t.search(p)
	if i < len(t) && t[i].Path == p {
		return t[i].Leaf, true
	}
	return Leaf{}, false
}

// occupied reports whether t has a leaf at p or below p.
func (t Tree) occupied(p string) bool {
	i := t.search(p)
	return i < len(t) && (t[i].Path == p || under(t[i].Path, p))
}

// hasBelow reports whether t has a leaf strictly below directory d.
func (t Tree) hasBelow(d string) bool {
	i := t.search(d)
	if i < len(t) && t[i].Path == d {
		i++
	}
	return i < len(t) && under(t[i].Path, d)
}

// under reports whether p lies strictly below directory d.
func under(p, d string) bool {
	if d == "" {
		return p != ""
	}
	return len(p) > len(d) && p[len(d)] == '/' && p[:len(d)] == d
}

// Check reports the first reason t is not a valid Tree: an invalid path or
// kind, a non-directory at the root, or entries out of order or repeated.
func (t Tree) Check() error {
	for i, e := range t {
		if err := checkEntry(e); err != nil {
			return err
		}
		if i > 0 && Compare(t[i-1].Path, e.Path) >= 0 {
			return fmt.Errorf("%w: path %q after %q: not sorted or repeated", ErrInvalid, e.Path, t[i-1].Path)
		}
	}
	return nil
}

func checkEntry(e Entry) error {
	if e.Leaf.Kind < File || e.Leaf.Kind > Dir {
		return fmt.Errorf("%w: path %q: %v", ErrInvalid, e.Path, e.Leaf.Kind)
	}
	p := e.Path
	if p == "" {
		if e.Leaf.Kind != Dir {
			return fmt.Errorf("%w: root is a %v", ErrInvalid, e.Leaf.Kind)
		}
		return nil
	}
	if p[0] == '/' || p[len(p)-1] == '/' || strings.Contains(p, "//") || strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%w: path %q", ErrInvalid, p)
	}
	return nil
}
