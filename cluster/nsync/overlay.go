package nsync

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/memory"
)

// overlay is an object store whose writes go to memory and whose reads
// fall back to a read-only base (our repository). It deliberately does not
// implement storer.PackfileWriter, so go-git's parser decodes a pack into
// SetEncodedObject calls and resolves the bases of thin deltas through
// EncodedObject, from the received objects or from ours.
//
// Its methods are safe for concurrent use (mu guards mem and the counts;
// base, a go-git filesystem storage, is not safe for concurrent use and is
// guarded by baseMu).
type overlay struct {
	mu    sync.RWMutex
	mem   *memory.ObjectStorage
	order []plumbing.Hash // received objects, in arrival order
	bytes int64           // inflated bytes received
	lim   Limits

	baseMu sync.Mutex
	base   storer.EncodedObjectStorer // nil: no fallback
}

var _ storer.EncodedObjectStorer = (*overlay)(nil)

func newOverlay(base storer.EncodedObjectStorer, lim Limits) *overlay {
	return &overlay{mem: &memory.NewStorage().ObjectStorage, base: base, lim: lim}
}

// NewEncodedObject returns a new in-memory object.
func (o *overlay) NewEncodedObject() plumbing.EncodedObject {
	return &plumbing.MemoryObject{}
}

// SetEncodedObject stores obj in memory, within the limits.
func (o *overlay) SetEncodedObject(obj plumbing.EncodedObject) (plumbing.Hash, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := obj.Hash()
	if o.mem.HasEncodedObject(h) == nil {
		return h, nil
	}
	if len(o.order) >= o.lim.Objects {
		return plumbing.ZeroHash, fmt.Errorf("%w: more than %d objects", ErrTooLarge, o.lim.Objects)
	}
	if o.bytes+obj.Size() > o.lim.Inflated {
		return plumbing.ZeroHash, fmt.Errorf("%w: objects inflate to more than %d bytes", ErrTooLarge, o.lim.Inflated)
	}
	if _, err := o.mem.SetEncodedObject(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	o.order = append(o.order, h)
	o.bytes += obj.Size()
	return h, nil
}

// EncodedObject returns a received object, or one of ours.
func (o *overlay) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	o.mu.RLock()
	obj, err := o.mem.EncodedObject(t, h)
	o.mu.RUnlock()
	if err == nil || !errors.Is(err, plumbing.ErrObjectNotFound) || o.base == nil {
		return obj, err
	}
	o.baseMu.Lock()
	defer o.baseMu.Unlock()
	return o.base.EncodedObject(t, h)
}

// IterEncodedObjects iterates over the received objects, then over ours
// (an object received that we already held appears twice).
func (o *overlay) IterEncodedObjects(t plumbing.ObjectType) (storer.EncodedObjectIter, error) {
	o.mu.RLock()
	mine, err := o.mem.IterEncodedObjects(t)
	o.mu.RUnlock()
	if err != nil || o.base == nil {
		return mine, err
	}
	o.baseMu.Lock()
	theirs, err := o.base.IterEncodedObjects(t)
	o.baseMu.Unlock()
	if err != nil {
		return nil, err
	}
	return storer.NewMultiEncodedObjectIter([]storer.EncodedObjectIter{mine, &lockedIter{it: theirs, mu: &o.baseMu}}), nil
}

// HasEncodedObject says whether the object was received or is ours.
func (o *overlay) HasEncodedObject(h plumbing.Hash) error {
	if o.received(h) {
		return nil
	}
	if o.base == nil {
		return plumbing.ErrObjectNotFound
	}
	o.baseMu.Lock()
	defer o.baseMu.Unlock()
	return o.base.HasEncodedObject(h)
}

// EncodedObjectSize returns the size of a received object or of ours.
func (o *overlay) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	o.mu.RLock()
	n, err := o.mem.EncodedObjectSize(h)
	o.mu.RUnlock()
	if err == nil || !errors.Is(err, plumbing.ErrObjectNotFound) || o.base == nil {
		return n, err
	}
	o.baseMu.Lock()
	defer o.baseMu.Unlock()
	return o.base.EncodedObjectSize(h)
}

// AddAlternate is refused: the overlay is a private fetch buffer.
func (o *overlay) AddAlternate(string) error {
	return errors.New("nsync: alternates are not supported")
}

func (o *overlay) received(h plumbing.Hash) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.mem.HasEncodedObject(h) == nil
}

// counts returns the number and inflated bytes of the received objects.
func (o *overlay) counts() (int, int64) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(o.order), o.bytes
}

// checkClosed checks that every reference of every received object (a
// commit's tree and parents, a tree's entries, a tag's target) is a received
// object or one of ours, and that want is a commit. Our repository is closed
// under references (git's invariant), so the history of want is then whole.
// The work is linear in the objects received, not in the namespace.
func (o *overlay) checkClosed(want plumbing.Hash) error {
	if !want.IsZero() {
		c, err := o.EncodedObject(plumbing.AnyObject, want)
		if err != nil {
			return fmt.Errorf("%w: the head %s was not sent", ErrIncomplete, want)
		}
		if c.Type() != plumbing.CommitObject {
			return fmt.Errorf("%w: the head %s is a %s, not a commit", ErrBadPack, want, c.Type())
		}
	}
	o.mu.RLock()
	order := append([]plumbing.Hash(nil), o.order...)
	o.mu.RUnlock()
	has := func(h plumbing.Hash) bool { return o.HasEncodedObject(h) == nil }
	for _, h := range order {
		o.mu.RLock()
		obj, err := o.mem.EncodedObject(plumbing.AnyObject, h)
		o.mu.RUnlock()
		if err != nil {
			return fmt.Errorf("nsync: read received object %s: %w", h, err)
		}
		if err := references(obj, has); err != nil {
			return err
		}
	}
	return nil
}

// references checks that each object obj refers to exists.
func references(obj plumbing.EncodedObject, has func(plumbing.Hash) bool) error {
	h := obj.Hash()
	switch obj.Type() {
	case plumbing.CommitObject:
		var c object.Commit
		if err := c.Decode(obj); err != nil {
			return fmt.Errorf("%w: commit %s: %w", ErrBadPack, h, err)
		}
		if !has(c.TreeHash) {
			return fmt.Errorf("%w: tree %s of commit %s", ErrIncomplete, c.TreeHash, h)
		}
		for _, p := range c.ParentHashes {
			if !has(p) {
				return fmt.Errorf("%w: parent %s of commit %s", ErrIncomplete, p, h)
			}
		}
	case plumbing.TreeObject:
		var t object.Tree
		if err := t.Decode(obj); err != nil {
			return fmt.Errorf("%w: tree %s: %w", ErrBadPack, h, err)
		}
		for _, e := range t.Entries {
			if e.Mode == filemode.Submodule {
				continue // a gitlink names a commit of another repository
			}
			if !has(e.Hash) {
				return fmt.Errorf("%w: %q (%s) of tree %s", ErrIncomplete, e.Name, e.Hash, h)
			}
		}
	case plumbing.TagObject:
		var t object.Tag
		if err := t.Decode(obj); err != nil {
			return fmt.Errorf("%w: tag %s: %w", ErrBadPack, h, err)
		}
		if !has(t.Target) {
			return fmt.Errorf("%w: target %s of tag %s", ErrIncomplete, t.Target, h)
		}
	}
	return nil
}

// lockedIter serialises an iterator over a storage that is not safe for
// concurrent use.
type lockedIter struct {
	it storer.EncodedObjectIter
	mu *sync.Mutex
}

func (l *lockedIter) Next() (plumbing.EncodedObject, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.it.Next()
}

func (l *lockedIter) ForEach(fn func(plumbing.EncodedObject) error) error {
	for {
		obj, err := l.Next()
		if err != nil {
			if errors.Is(err, storer.ErrStop) || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := fn(obj); err != nil {
			if errors.Is(err, storer.ErrStop) {
				return nil
			}
			return err
		}
	}
}

func (l *lockedIter) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.it.Close()
}
