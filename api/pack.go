package api

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// maxTreeDepth bounds the recursion into trees (meta allows far less).
const maxTreeDepth = 2048

// errNotCommit is returned for a want that is not a commit we hold.
var errNotCommit = errors.New("not our ref")

// Commit walk flags.
const (
	flagQueued        uint8 = 1 << iota // queued as wanted
	flagUninteresting                   // the client has it (reachable from a common have)
	flagAdded                           // in the list of commits to send
)

// packWalk computes the objects to send: every object reachable from the
// wants that a client holding everything reachable from the haves (and
// their ancestors) lacks. It may include a few objects the client has
// (after clock skew, or a file moved to another path); it never leaves one
// out.
//
// Commits: a walk in committer-time order from wants and haves together,
// like git's: the haves' ancestry is painted uninteresting, and the walk
// stops as soon as only uninteresting commits are queued, so it reads the
// commits since the merge base, not the whole history.
//
// Trees: each commit to send is compared with its parents path by path; a
// subtree or blob equal to the parent's at the same path is skipped (the
// client has it, or gets it with the parent), so the work is in the size
// of the changes, not of the tree.
type packWalk struct {
	ctx     context.Context
	s       storer.EncodedObjectStorer
	commits map[plumbing.Hash]*object.Commit
	flags   map[plumbing.Hash]uint8
	queue   commitQueue
	sent    map[plumbing.Hash]bool
	out     []plumbing.Hash
}

func objectsToSend(ctx context.Context, s storer.EncodedObjectStorer, wants, haves []plumbing.Hash) ([]plumbing.Hash, error) {
	w := &packWalk{
		ctx:     ctx,
		s:       s,
		commits: make(map[plumbing.Hash]*object.Commit),
		flags:   make(map[plumbing.Hash]uint8),
		sent:    make(map[plumbing.Hash]bool),
	}
	send, err := w.walkCommits(wants, haves)
	if err != nil {
		return nil, err
	}
	// Parents before children: a commit's walk relies on its parents'
	// (skipped paths) and on trees walked before (skipped subtrees), so
	// everything it relies on must be complete already.
	for _, c := range topoOrder(send) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := w.addCommit(c); err != nil {
			return nil, err
		}
	}
	return w.out, nil
}

// topoOrder returns commits with every parent in the set before its
// children (a depth-first post-order over parents).
func topoOrder(commits []*object.Commit) []*object.Commit {
	in := make(map[plumbing.Hash]*object.Commit, len(commits))
	for _, c := range commits {
		in[c.Hash] = c
	}
	done := make(map[plumbing.Hash]bool, len(commits))
	out := make([]*object.Commit, 0, len(commits))
	type frame struct {
		c    *object.Commit
		next int // next parent to visit
	}
	var stack []frame
	for _, root := range commits {
		if done[root.Hash] {
			continue
		}
		done[root.Hash] = true
		stack = append(stack[:0], frame{c: root})
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.next < len(f.c.ParentHashes) {
				p := f.c.ParentHashes[f.next]
				f.next++
				if pc, ok := in[p]; ok && !done[p] {
					done[p] = true
					stack = append(stack, frame{c: pc})
				}
				continue
			}
			out = append(out, f.c)
			stack = stack[:len(stack)-1]
		}
	}
	return out
}

func (w *packWalk) commit(h plumbing.Hash) (*object.Commit, error) {
	if c, ok := w.commits[h]; ok {
		return c, nil
	}
	c, err := object.GetCommit(w.s, h)
	if err != nil {
		return nil, err
	}
	w.commits[h] = c
	return c, nil
}

// walkCommits returns the commits to send, newest first.
func (w *packWalk) walkCommits(wants, haves []plumbing.Hash) ([]*object.Commit, error) {
	for _, h := range haves {
		c, err := w.commit(h)
		if err != nil {
			continue // not a commit (or not ours): it limits nothing
		}
		if w.flags[h]&flagUninteresting == 0 {
			w.flags[h] |= flagUninteresting
			heap.Push(&w.queue, c)
		}
	}
	for _, h := range wants {
		c, err := w.commit(h)
		if err != nil {
			return nil, fmt.Errorf("want %s: %w", h, errNotCommit)
		}
		if w.flags[h]&(flagQueued|flagUninteresting) == 0 {
			w.flags[h] |= flagQueued
			heap.Push(&w.queue, c)
		}
	}
	var send []*object.Commit
	for w.queue.Len() > 0 && w.anyWanted() {
		if err := w.ctx.Err(); err != nil {
			return nil, err
		}
		c := heap.Pop(&w.queue).(*object.Commit)
		f := w.flags[c.Hash]
		if f&flagUninteresting != 0 {
			for _, p := range c.ParentHashes {
				if w.flags[p]&flagUninteresting != 0 {
					continue
				}
				pc, err := w.commit(p)
				if err != nil {
					continue // the client has it; we need not read it
				}
				w.flags[p] |= flagUninteresting
				heap.Push(&w.queue, pc)
			}
			continue
		}
		if f&flagAdded != 0 {
			continue
		}
		w.flags[c.Hash] |= flagAdded
		send = append(send, c)
		for _, p := range c.ParentHashes {
			if w.flags[p]&(flagQueued|flagUninteresting) != 0 {
				continue
			}
			pc, err := w.commit(p)
			if err != nil {
				return nil, fmt.Errorf("read parent %s of %s: %w", p, c.Hash, err)
			}
			w.flags[p] |= flagQueued
			heap.Push(&w.queue, pc)
		}
	}
	return send, nil
}

// anyWanted reports whether a queued commit may still have to be sent.
func (w *packWalk) anyWanted() bool {
	for _, c := range w.queue {
		if w.flags[c.Hash]&flagUninteresting == 0 {
			return true
		}
	}
	return false
}

// addCommit adds c and the parts of its tree that differ from its
// parents' trees.
func (w *packWalk) addCommit(c *object.Commit) error {
	if w.sent[c.Hash] {
		return nil
	}
	w.sent[c.Hash] = true
	w.out = append(w.out, c.Hash)
	var bases []plumbing.Hash
	for _, p := range c.ParentHashes {
		if pc, err := w.commit(p); err == nil {
			bases = append(bases, pc.TreeHash)
		}
	}
	return w.addTree(c.TreeHash, bases, 0)
}

// addTree adds tree h and what it holds that differs from the base trees
// (the trees at the same path in the parents).
func (w *packWalk) addTree(h plumbing.Hash, bases []plumbing.Hash, depth int) error {
	if w.sent[h] {
		return nil
	}
	for _, b := range bases {
		if b == h {
			return nil
		}
	}
	if depth > maxTreeDepth {
		return fmt.Errorf("tree %s: deeper than %d", h, maxTreeDepth)
	}
	t, err := object.GetTree(w.s, h)
	if err != nil {
		return fmt.Errorf("read tree %s: %w", h, err)
	}
	w.sent[h] = true
	w.out = append(w.out, h)
	baseEntries := make([]map[string]object.TreeEntry, 0, len(bases))
	for _, b := range bases {
		bt, err := object.GetTree(w.s, b)
		if err != nil {
			continue // compare with less: may send more, never less
		}
		m := make(map[string]object.TreeEntry, len(bt.Entries))
		for _, e := range bt.Entries {
			m[e.Name] = e
		}
		baseEntries = append(baseEntries, m)
	}
	for _, e := range t.Entries {
		if e.Mode == filemode.Submodule {
			continue
		}
		same := false
		var sub []plumbing.Hash
		for _, m := range baseEntries {
			be, ok := m[e.Name]
			if !ok {
				continue
			}
			if be.Hash == e.Hash {
				same = true
				break
			}
			if be.Mode == filemode.Dir {
				sub = append(sub, be.Hash)
			}
		}
		if same {
			continue
		}
		if e.Mode == filemode.Dir {
			if err := w.addTree(e.Hash, sub, depth+1); err != nil {
				return err
			}
			continue
		}
		if !w.sent[e.Hash] {
			w.sent[e.Hash] = true
			w.out = append(w.out, e.Hash)
		}
	}
	return nil
}

// commitQueue is a max-heap of commits by committer time (newest first),
// ties broken by hash so the walk is deterministic.
type commitQueue []*object.Commit

func (q commitQueue) Len() int { return len(q) }
func (q commitQueue) Less(i, j int) bool {
	ti, tj := q[i].Committer.When, q[j].Committer.When
	if !ti.Equal(tj) {
		return ti.After(tj)
	}
	return bytes.Compare(q[i].Hash[:], q[j].Hash[:]) < 0
}
func (q commitQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *commitQueue) Push(x any)   { *q = append(*q, x.(*object.Commit)) }
func (q *commitQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return c
}
