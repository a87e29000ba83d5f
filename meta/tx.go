package meta

import (
	"crypto/sha1"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/delugefs/delugefs/bt"
)

// Tx is one update's view of the namespace, valid only inside the function
// passed to Repo.Update. It sees the latest state, including the effects of
// updates grouped before it in the same commit. Its methods take cleaned,
// slash-separated paths relative to the root ("" is the root). A Tx is not
// safe for concurrent use.
type Tx struct {
	root    *node
	count   int
	objs    map[plumbing.Hash][]byte // blobs this update needs written
	changed bool
	done    bool
	// attach is set when the Repo can restore attached blobs; blobs are
	// the ones attached, blobBytes their total size.
	attach    bool
	blobs     []journalBlob
	blobBytes int
	// log is set when the Repo keeps the updates' operations for
	// operations records (Repo.UpdateLogged): ops then holds this
	// update's, encoded (oplog.go).
	log bool
	ops []byte
}

// MaxAttachedBlob is the largest blob Tx.AttachBlob takes.
const MaxAttachedBlob = 256 << 10

// AttachBlob makes the data of a blob (info is its info dictionary, data
// its whole contents, len(data) == info.Length) durable with this update:
// the bytes ride in the update's journal record, and a replay after a crash
// hands them to Options.RestoreBlob before the commit counts as applied.
// So a blob store may write a small blob without any fsync of its own
// (piece.Store.SealSmall) and let the commit that references it make it
// durable: one barrier for data and name. data must not be changed
// afterwards. The blob must be stored on the file system that holds the
// repository (ROOT/blobs beside ROOT/meta.git): the checkpoint that retires
// journal records makes it durable with the same syncfs.
//
// AttachBlob fails with ErrInvalid when the Repo cannot attach blobs (see
// Repo.AttachesBlobs), when data is longer than MaxAttachedBlob or does not
// have info's length. Nothing checks that data hashes to info: the
// restorer verifies it on replay. If the update fails, nothing is attached.
func (tx *Tx) AttachBlob(info *bt.Info, data []byte) error {
	tx.check()
	switch {
	case !tx.attach:
		return fmt.Errorf("attach blob: %w: the repository has no RestoreBlob (or no journal)", ErrInvalid)
	case info == nil || info.Length <= 0 || info.Length != int64(len(data)):
		return fmt.Errorf("attach blob: %w: info and data disagree", ErrInvalid)
	case len(data) > MaxAttachedBlob:
		return fmt.Errorf("attach blob: %w: %d bytes exceed %d", ErrInvalid, len(data), MaxAttachedBlob)
	}
	tx.blobs = append(tx.blobs, journalBlob{info: info, data: data})
	tx.blobBytes += len(data)
	return nil
}

func (tx *Tx) check() {
	if tx.done {
		panic("meta: Tx used after its update returned")
	}
}

// Get returns the entry at path.
func (tx *Tx) Get(path string) (*Entry, bool) {
	tx.check()
	return (&Snapshot{root: tx.root}).Get(path)
}

// ReadDir returns the children of the directory at path, sorted by name.
func (tx *Tx) ReadDir(path string) ([]DirEntry, bool) {
	tx.check()
	return (&Snapshot{root: tx.root}).ReadDir(path)
}

// Put creates or replaces the entry at path. The parent must be a
// directory. A file or symlink replaces a file or symlink; a directory
// over a directory changes its attributes and keeps its children (mkdir
// of an existing directory is the caller's ErrExist to give); a directory
// over a non-directory fails with ErrExist, a non-directory over a directory
// with ErrIsDir. Put copies e; Size and Hash are derived from Info (files)
// and Target (symlinks). Parent directories' mtimes are not changed.
func (tx *Tx) Put(path string, e *Entry) error {
	tx.check()
	parts, err := splitPath(path)
	if err != nil {
		return fmt.Errorf("put: %w", err)
	}
	e, err = checkEntry(e)
	if err != nil {
		return fmt.Errorf("put %q: %w", path, err)
	}
	n, data := tx.newNode(e)
	if len(parts) == 0 {
		if e.Kind != KindDir {
			return fmt.Errorf("put %q: %w: the root is a directory", path, ErrInvalid)
		}
		n.kids, n.desc = tx.root.kids, tx.root.desc
		carryTree(n, tx.root)
		tx.root = n
		tx.changed = true
		tx.logPut(path, e.Kind, data)
		return nil
	}
	added := false
	root, err := rebuild(tx.root, parts, func(dir *node, name string) (*node, error) {
		old, ok := dir.kids.Get(name)
		switch {
		case !ok:
			added = true
		case old.e.Kind == KindDir && e.Kind == KindDir:
			n.kids, n.desc = old.kids, old.desc // attribute change: same children, new marker
			carryTree(n, old)
		case old.e.Kind == KindDir:
			return nil, ErrIsDir
		case e.Kind == KindDir:
			return nil, ErrExist
		}
		return withKid(dir, name, n), nil
	})
	if err != nil {
		return fmt.Errorf("put %q: %w", path, err)
	}
	tx.root = root
	if added {
		tx.count++
	}
	tx.changed = true
	tx.logPut(path, e.Kind, data)
	return nil
}

func (tx *Tx) logPut(path string, k Kind, data []byte) {
	if tx.log {
		tx.ops = appendPut(tx.ops, k, path, data)
	}
}

// Remove removes the file, symlink or empty directory at path.
func (tx *Tx) Remove(path string) error {
	tx.check()
	parts, err := splitPath(path)
	if err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	if len(parts) == 0 {
		return fmt.Errorf("remove the root: %w", ErrInvalid)
	}
	root, err := rebuild(tx.root, parts, func(dir *node, name string) (*node, error) {
		old, ok := dir.kids.Get(name)
		if !ok {
			return nil, ErrNotExist
		}
		if old.e.Kind == KindDir && old.kids.Len() > 0 {
			return nil, ErrNotEmpty
		}
		return withoutKid(dir, name), nil
	})
	if err != nil {
		return fmt.Errorf("remove %q: %w", path, err)
	}
	tx.root = root
	tx.count--
	tx.changed = true
	if tx.log {
		tx.ops = appendOp(tx.ops, opRemove, path)
	}
	return nil
}

// Rename moves the entry at from to to with the semantics of rename(2):
// a file or symlink replaces a file or symlink (ErrIsDir over a directory);
// a directory, with all its contents, replaces an empty directory
// (ErrNotEmpty over a non-empty one, ErrNotDir over a non-directory);
// moving a directory into its own subtree, or moving the root, is
// ErrInvalid; renaming an entry onto itself does nothing. It is atomic: a
// snapshot shows the entry at from or at to, never both or neither.
// Mtimes (of the entry and of both parents) are not changed.
func (tx *Tx) Rename(from, to string) error {
	tx.check()
	fp, err := splitPath(from)
	if err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	tp, err := splitPath(to)
	if err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	fail := func(err error) error { return fmt.Errorf("rename %q to %q: %w", from, to, err) }
	if len(fp) == 0 || len(tp) == 0 {
		return fail(ErrInvalid)
	}
	src, err := lookup(tx.root, fp)
	if err != nil {
		return fail(err)
	}
	parent, err := lookup(tx.root, tp[:len(tp)-1])
	if err != nil {
		return fail(err)
	}
	if parent.e.Kind != KindDir {
		return fail(ErrNotDir)
	}
	if from == to {
		return nil
	}
	if strings.HasPrefix(to, from+"/") {
		return fail(ErrInvalid)
	}
	dst, ok := parent.kids.Get(tp[len(tp)-1])
	if ok {
		switch {
		case src.e.Kind == KindDir && dst.e.Kind != KindDir:
			return fail(ErrNotDir)
		case src.e.Kind == KindDir && dst.kids.Len() > 0:
			return fail(ErrNotEmpty)
		case src.e.Kind != KindDir && dst.e.Kind == KindDir:
			return fail(ErrIsDir)
		}
	}
	root, err := rebuild(tx.root, fp, func(dir *node, name string) (*node, error) {
		return withoutKid(dir, name), nil
	})
	if err != nil {
		return fail(err)
	}
	root, err = rebuild(root, tp, func(dir *node, name string) (*node, error) {
		return withKid(dir, name, src), nil
	})
	if err != nil {
		return fail(err) // cannot happen: to's parent is not inside from
	}
	tx.root = root
	if ok {
		tx.count--
	}
	tx.changed = true
	if tx.log {
		tx.ops = appendOp(tx.ops, opRename, from, to)
	}
	return nil
}

// newNode makes the node for a checked entry and queues its blob, which
// it returns.
func (tx *Tx) newNode(e *Entry) (*node, []byte) {
	n := &node{e: e}
	var data []byte
	switch e.Kind {
	case KindFile:
		data = encodeManifest(e)
		n.oid = tx.addBlob(data)
	case KindSymlink:
		data = []byte(e.Target)
		n.oid = tx.addBlob(data)
	case KindDir:
		data = encodeManifest(e)
		n.marker = tx.addBlob(data)
		n.kids = emptyKids()
	}
	return n, data
}

func (tx *Tx) addBlob(data []byte) plumbing.Hash {
	h := blobHash(data)
	if tx.objs == nil {
		tx.objs = make(map[plumbing.Hash][]byte)
	}
	tx.objs[h] = data
	return h
}

// objectHash returns the git object id of data of the given type.
func objectHash(typ string, data []byte) plumbing.Hash {
	s := sha1.New()
	s.Write([]byte(typ))
	s.Write([]byte{' '})
	s.Write(strconv.AppendInt(nil, int64(len(data)), 10))
	s.Write([]byte{0})
	s.Write(data)
	var h plumbing.Hash
	copy(h[:], s.Sum(nil))
	return h
}

func blobHash(data []byte) plumbing.Hash { return objectHash("blob", data) }

// rebuild copies the directories on the path to parts[:len-1] and lets f
// make the new parent of the last component. Every copied directory is
// marked changed (zero oid).
func rebuild(n *node, parts []string, f func(dir *node, name string) (*node, error)) (*node, error) {
	if n.e.Kind != KindDir {
		return nil, ErrNotDir
	}
	if len(parts) == 1 {
		return f(n, parts[0])
	}
	c, ok := n.kids.Get(parts[0])
	if !ok {
		return nil, ErrNotExist
	}
	nc, err := rebuild(c, parts[1:], f)
	if err != nil {
		return nil, err
	}
	return withKid(n, parts[0], nc), nil
}

func withKid(dir *node, name string, c *node) *node {
	cp := *dir
	touch(&cp, dir, name)
	if old, ok := dir.kids.Get(name); ok {
		cp.desc -= old.weight()
	}
	cp.desc += c.weight()
	cp.kids = dir.kids.Set(name, c)
	return &cp
}

func withoutKid(dir *node, name string) *node {
	cp := *dir
	touch(&cp, dir, name)
	if old, ok := dir.kids.Get(name); ok {
		cp.desc -= old.weight()
	}
	cp.kids = dir.kids.Delete(name)
	return &cp
}
