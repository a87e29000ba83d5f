package meta

import (
	"bytes"
	"cmp"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/benbjohnson/immutable"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/delugefs/delugefs/meta/merge"
)

// ErrBadRemote is returned (wrapped, with the object and what is wrong)
// when Integrate refuses a peer's commits: an object missing from the
// source, or a malformed commit, tree, manifest or marker. Nothing changes
// locally.
var ErrBadRemote = errors.New("meta: bad remote namespace")

// IntegrateResult says what Integrate did.
type IntegrateResult struct {
	Head     plumbing.Hash // our head afterwards
	Changed  bool          // our head moved
	Announce bool          // we made a new merge commit that peers should be told about
	Events   []merge.Event // conflicts and other merge decisions, for the log
}

// integration is an Integrate request.
type integration struct {
	head plumbing.Hash
	src  storer.EncodedObjectStorer
	res  IntegrateResult
}

// Integrate brings the commit head, whose objects src holds, into the
// namespace, following the frontier protocol of package merge: nothing
// when head is ours or an ancestor of our head; a fast-forward when our
// head is its ancestor; otherwise our new head is the frontier's only
// commit or the canonical merge of the frontier. See "Sync" in the
// package documentation.
//
// Waiting lazy updates are committed first. Integrate returns once the
// new head and every object it needs are durable and its snapshot is
// published; git readers see it, and Watch fires, after the next flush
// (as for Update). Events are those of the merge, if one was made.
//
// src may also hold objects this repository has; it is read only, from
// the actor, and must not be used by others meanwhile if it is not safe
// for concurrent use. Everything read from it is checked; a missing or
// malformed object fails the integration with ErrBadRemote and changes
// nothing. The ctx bounds the wait, as for Update: when it ends first,
// Integrate returns ctx.Err() and the integration may still happen.
func (r *Repo) Integrate(ctx context.Context, head plumbing.Hash, src storer.EncodedObjectStorer) (IntegrateResult, error) {
	if head.IsZero() || src == nil {
		return IntegrateResult{}, fmt.Errorf("meta: integrate: %w: zero head or nil source", ErrInvalid)
	}
	in := &integration{head: head, src: src}
	q := &request{ctx: ctx, integ: in, reply: make(chan error, 1)}
	select {
	case r.reqs <- q:
	case <-ctx.Done():
		return IntegrateResult{}, ctx.Err()
	case <-r.closed:
		return IntegrateResult{}, ErrClosed
	}
	select {
	case err := <-q.reply:
		return in.res, err
	case <-ctx.Done():
		return IntegrateResult{}, ctx.Err()
	case <-r.closed:
		return IntegrateResult{}, ErrClosed
	}
}

// runIntegrate runs one Integrate request in the actor (serveMu held).
func (r *Repo) runIntegrate(q *request) {
	if err := q.ctx.Err(); err != nil {
		q.reply <- err
		return
	}
	res, err := r.integrate(q.ctx, q.integ.head, q.integ.src)
	if err != nil {
		r.log.Warn("meta: integrate failed", "head", q.integ.head, "err", err)
		res = IntegrateResult{Head: r.snap.Load().head}
	}
	q.integ.res = res
	q.reply <- err
	if r.w.pendingBytes > maxPendingBytes || len(r.w.pending) > maxPendingObjects {
		r.flushAndNotify(false)
	}
}

// integrate is Integrate inside the actor.
func (r *Repo) integrate(ctx context.Context, h plumbing.Hash, src storer.EncodedObjectStorer) (IntegrateResult, error) {
	if err := r.commitLazy(); err != nil {
		return IntegrateResult{}, err
	}
	r.graph.trim()
	cur := r.snap.Load()
	res := IntegrateResult{Head: cur.head}
	if h == cur.head {
		r.stats.integrations.Add(1)
		return res, nil
	}
	fail := func(err error) (IntegrateResult, error) {
		if errors.Is(err, errBadCommit) && !errors.Is(err, ErrBadRemote) {
			err = fmt.Errorf("%w: %w", ErrBadRemote, err)
		}
		return res, fmt.Errorf("meta: integrate %s: %w", h, err)
	}
	rd := newReader(r, src)
	rd.ours = cur.root
	if !cur.head.IsZero() && r.hasOwn(h) {
		anc, err := r.graph.isAncestor(rd, h, cur.head)
		if err != nil {
			return fail(err)
		}
		if anc {
			r.stats.integrations.Add(1)
			return res, nil
		}
	}
	tImport := time.Now()
	if err := rd.importCommits(ctx, h); err != nil {
		return fail(err)
	}
	if debugTiming {
		fmt.Println("import", time.Since(tImport), len(rd.order))
	}
	target := h
	var merged *mergeOut
	ff := cur.head.IsZero()
	if !ff {
		var err error
		if ff, err = r.graph.isAncestor(rd, cur.head, h); err != nil {
			return fail(err)
		}
	}
	if !ff {
		fa, err := r.graph.frontier(rd, cur.head)
		if err != nil {
			return fail(err)
		}
		fb, err := r.graph.frontier(rd, h)
		if err != nil {
			return fail(err)
		}
		f, err := r.graph.maximal(rd, append(append([]plumbing.Hash(nil), fa...), fb...))
		if err != nil {
			return fail(err)
		}
		if len(f) == 1 {
			target = f[0]
		} else if merged, err = rd.canonical(ctx, f, cur.root); err != nil {
			return fail(err)
		} else {
			target = merged.id
		}
	}
	if target == cur.head {
		r.stats.integrations.Add(1)
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	req := commitReq{head: target}
	if merged != nil {
		req.root, req.gen, req.tree = merged.root, merged.gen, merged.tree
		req.copied = rd.copied(merged.root)
		data := merged.data
		req.encode = func(plumbing.Hash) []byte { return data }
		res.Announce = !r.hasOwn(target)
	} else {
		tc, err := r.graph.get(rd, target)
		if err != nil {
			return fail(err)
		}
		b := builder{rd: rd}
		if req.root, err = b.adopt(cur.root, tc.tree, "", 0); err != nil {
			return fail(err)
		}
		req.gen = tc.gen
		req.copied = rd.copied(nil)
	}
	if int(req.root.desc) > r.opts.MaxEntries {
		return res, fmt.Errorf("meta: integrate %s: %w: %d entries exceed %d", h, ErrBadRemote, req.root.desc, r.opts.MaxEntries)
	}
	req.count = int(req.root.desc)
	tWrite := time.Now()
	s, err := r.writeCommit(req)
	if debugTiming {
		fmt.Println("write", time.Since(tWrite), "total", time.Since(tImport))
	}
	if err != nil {
		return res, err
	}
	r.stats.integrations.Add(1)
	r.stats.copied.Add(uint64(len(rd.order)))
	if merged != nil {
		if res.Announce {
			r.stats.merges.Add(1)
		}
		res.Events = merged.events
		for _, e := range merged.events {
			if e.Kind == merge.Conflict || e.Kind == merge.FileDir {
				r.stats.conflicts.Add(1)
			}
		}
	} else {
		r.stats.ffs.Add(1)
	}
	res.Head, res.Changed = s.head, true
	return res, nil
}

// Reading our own objects (in the actor).

// ownPacks returns the actor's reader of our packs, listing them again
// when packs were written, merged or removed since the last call.
func (r *Repo) ownPacks() (*packSet, error) {
	if r.packs == nil {
		r.packs = newPackSet(r.gitDir)
	}
	if err := r.packs.refresh(r.w.packGen); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	return r.packs, nil
}

// hasOwn reports whether the repository holds object h (written or
// waiting to be).
func (r *Repo) hasOwn(h plumbing.Hash) bool {
	if r.w.has(h) {
		return true
	}
	ps, err := r.ownPacks()
	return err == nil && ps.has(h)
}

// maxOwnObject bounds an object read from our own repository.
const maxOwnObject = 1 << 30

// readOwn reads object h of our own repository.
func (r *Repo) readOwn(h plumbing.Hash) (plumbing.ObjectType, []byte, error) {
	if i, ok := r.w.ids[h]; ok {
		return r.w.pendingObject(i, 0)
	}
	ps, err := r.ownPacks()
	if err != nil {
		return 0, nil, err
	}
	t, data, err := ps.read(h, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("read object %s: %w", h, err)
	}
	return t, data, nil
}

// pendingObject returns the type and contents of the pending object at
// index i (depth counts delta hops).
func (w *objWriter) pendingObject(i, depth int) (plumbing.ObjectType, []byte, error) {
	o := w.pending[i]
	if raw, ok := w.raws[o.id]; ok {
		return plumbing.TreeObject, raw, nil
	}
	t, size, n, ok := entryHeader(o.file)
	if !ok {
		return 0, nil, fmt.Errorf("pending object %s: bad entry", o.id)
	}
	if t == objRefDelta {
		if len(o.file) < n+20 || depth > maxDeltaDepth+1 {
			return 0, nil, fmt.Errorf("pending object %s: bad delta", o.id)
		}
		base := plumbing.Hash(o.file[n : n+20])
		bi, ok := w.ids[base]
		if !ok {
			return 0, nil, fmt.Errorf("pending object %s: delta base %s is not pending", o.id, base)
		}
		bt, src, err := w.pendingObject(bi, depth+1)
		if err != nil {
			return 0, nil, err
		}
		d, err := inflate(o.file[n+20:], 1<<30)
		if err != nil {
			return 0, nil, fmt.Errorf("pending object %s: %w", o.id, err)
		}
		data, err := applyDelta(src, d)
		if err != nil {
			return 0, nil, fmt.Errorf("pending object %s: %w", o.id, err)
		}
		return bt, data, nil
	}
	data, err := inflate(o.file[n:], size)
	if err != nil || len(data) != size {
		return 0, nil, fmt.Errorf("pending object %s: bad data", o.id)
	}
	return plumbing.ObjectType(t), data, nil
}

func inflate(z []byte, max int) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	data, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		return nil, errors.New("inflated data too large")
	}
	return data, nil
}

// ownGetter reads our own objects only.
type ownGetter struct{ r *Repo }

func (g ownGetter) get(h plumbing.Hash) (plumbing.ObjectType, []byte, error) { return g.r.readOwn(h) }
func (g ownGetter) own(h plumbing.Hash) bool                                 { return g.r.hasOwn(h) }

func (r *Repo) ownGetter() objGetter { return ownGetter{r} }

// The reader of one integration: our objects, the peer's (checked, then
// kept in memory until they are written) and intermediate merge results.

// Bounds on objects read from peers (commits: maxCommitLen).
const maxTreeLen = 128 << 20

type reader struct {
	r        *Repo
	ours     *node // our root, whose objects need no look into the packs
	src      storer.EncodedObjectStorer
	imported map[plumbing.Hash]rawObject // checked objects from src that we lack
	order    []plumbing.Hash             // imported, in the order read
	scratch  map[plumbing.Hash]rawObject // trees of intermediate merge results
	trees    map[plumbing.Hash]*dirTree
	leaves   map[leafKey]*node // blobs decoded (and so checked) for a use
}

type leafKey struct {
	id   plumbing.Hash
	kind Kind
	mode filemode.FileMode
}

func newReader(r *Repo, src storer.EncodedObjectStorer) *reader {
	return &reader{r: r, src: src, imported: map[plumbing.Hash]rawObject{}, scratch: map[plumbing.Hash]rawObject{},
		trees: map[plumbing.Hash]*dirTree{}, leaves: map[leafKey]*node{}}
}

func (rd *reader) get(h plumbing.Hash) (plumbing.ObjectType, []byte, error) {
	if o, ok := rd.scratch[h]; ok {
		return o.typ, o.data, nil
	}
	if o, ok := rd.imported[h]; ok {
		return o.typ, o.data, nil
	}
	return rd.r.readOwn(h)
}

func (rd *reader) own(h plumbing.Hash) bool { return rd.r.hasOwn(h) }

// copied returns the objects to write: the imported ones, and the trees
// and markers of intermediate merge results (a fold of three or more
// commits) that the final tree root still uses.
func (rd *reader) copied(root *node) []rawObject {
	out := make([]rawObject, 0, len(rd.order))
	for _, h := range rd.order {
		out = append(out, rd.imported[h])
	}
	if len(rd.scratch) == 0 || root == nil {
		return out
	}
	seen := map[plumbing.Hash]bool{}
	var walk func(n *node)
	walk = func(n *node) {
		if n.e.Kind != KindDir {
			return
		}
		if !n.oid.IsZero() {
			o, ok := rd.scratch[n.oid]
			if !ok || seen[n.oid] {
				return // ours or the peer's: written already
			}
			seen[n.oid] = true
			out = append(out, o)
		}
		if o, ok := rd.scratch[n.marker]; ok && !seen[n.marker] {
			seen[n.marker] = true
			out = append(out, o)
		}
		it := n.kids.Iterator()
		for !it.Done() {
			_, c, _ := it.Next()
			walk(c)
		}
	}
	walk(root)
	return out
}

// write and writeTree make reader a sink for intermediate trees.
func (rd *reader) write(h plumbing.Hash, typ string, data []byte) error {
	t, err := plumbing.ParseObjectType(typ)
	if err != nil {
		return err
	}
	rd.scratch[h] = rawObject{id: h, typ: t, data: data}
	return nil
}

func (rd *reader) writeTree(h plumbing.Hash, data []byte, _ plumbing.Hash, _ []byte) error {
	return rd.write(h, "tree", data)
}

// fetch reads object h from the source, at most max bytes, and checks
// that its contents hash to h.
func (rd *reader) fetch(h plumbing.Hash, max int64) (plumbing.ObjectType, []byte, error) {
	o, err := rd.src.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: object %s missing from the source: %w", ErrBadRemote, h, err)
	}
	if o.Size() > max || o.Size() < 0 {
		return 0, nil, fmt.Errorf("%w: %v %s of %d bytes exceeds %d", ErrBadRemote, o.Type(), h, o.Size(), max)
	}
	rc, err := o.Reader()
	if err != nil {
		return 0, nil, fmt.Errorf("%w: read %s: %w", ErrBadRemote, h, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: read %s: %w", ErrBadRemote, h, err)
	}
	t := o.Type()
	switch t {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject:
	default:
		return 0, nil, fmt.Errorf("%w: object %s is a %v", ErrBadRemote, h, t)
	}
	if int64(len(data)) > max || objectHash(t.String(), data) != h {
		return 0, nil, fmt.Errorf("%w: object %s does not hash to its id", ErrBadRemote, h)
	}
	return t, data, nil
}

func (rd *reader) keep(h plumbing.Hash, t plumbing.ObjectType, data []byte) {
	rd.imported[h] = rawObject{id: h, typ: t, data: data}
	rd.order = append(rd.order, h)
}

// importCommits reads from the source every commit reachable from h that
// we lack, with their trees and blobs, checks them all, and puts the
// commits in the graph (checking their generations).
func (rd *reader) importCommits(ctx context.Context, h plumbing.Hash) error {
	var commits []plumbing.Hash
	stack := []plumbing.Hash{h}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := rd.imported[id]; ok || rd.r.hasOwn(id) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		t, data, err := rd.fetch(id, maxCommitLen)
		if err != nil {
			return err
		}
		if t != plumbing.CommitObject {
			return fmt.Errorf("%w: %s is a %v, not a commit", ErrBadRemote, id, t)
		}
		ci, err := parseCommit(data)
		if err != nil {
			return fmt.Errorf("%w: commit %s: %v", ErrBadRemote, id, err)
		}
		rd.keep(id, t, data)
		commits = append(commits, id)
		if err := rd.importTree(ci.tree, 0, rd.ours); err != nil {
			return fmt.Errorf("tree of commit %s: %w", id, err)
		}
		stack = append(stack, ci.parents...)
	}
	for _, id := range commits {
		if _, err := rd.r.graph.get(rd, id); err != nil {
			if errors.Is(err, errBadCommit) {
				return fmt.Errorf("%w: %v", ErrBadRemote, err)
			}
			return err
		}
	}
	return nil
}

// importTree reads tree h and what it references that we lack, checking
// everything. ours is our directory at the same path, if any: a child it
// holds with the same id is ours, without a look into the packs.
func (rd *reader) importTree(h plumbing.Hash, depth int, ours *node) error {
	if _, ok := rd.imported[h]; ok {
		return nil
	}
	if rd.r.hasOwn(h) {
		_, err := rd.tree(h) // one of ours: it must be a tree
		return err
	}
	if depth >= MaxDepth {
		return fmt.Errorf("%w: tree %s is nested deeper than %d", ErrBadRemote, h, MaxDepth)
	}
	t, data, err := rd.fetch(h, maxTreeLen)
	if err != nil {
		return err
	}
	if t != plumbing.TreeObject {
		return fmt.Errorf("%w: %s is a %v, not a tree", ErrBadRemote, h, t)
	}
	dt, err := parseDirTree(data, true)
	if err != nil {
		return fmt.Errorf("%w: tree %s: %v", ErrBadRemote, h, err)
	}
	rd.keep(h, t, data)
	rd.trees[h] = dt
	if !dt.marker.IsZero() && (ours == nil || ours.marker != dt.marker) {
		if err := rd.importBlob(dt.marker, KindDir, filemode.Regular); err != nil {
			return fmt.Errorf("marker of tree %s: %w", h, err)
		}
	}
	var it *kidsIter
	if ours != nil && ours.kids != nil {
		it = newKidsIter(ours)
	}
	for _, k := range dt.kids {
		var oc *node
		if it != nil {
			oc = it.find(k.name)
		}
		if oc != nil && oc.oid == k.id && oc.e.Kind == k.kind && (k.kind != KindFile || fileMode(oc.e) == k.mode) {
			continue // ours, and known to be what the tree says it is
		}
		if k.kind == KindDir {
			if oc != nil && oc.e.Kind != KindDir {
				oc = nil
			}
			err = rd.importTree(k.id, depth+1, oc)
		} else {
			err = rd.importBlob(k.id, k.kind, k.mode)
		}
		if err != nil {
			return fmt.Errorf("%q: %w", k.name, err)
		}
	}
	return nil
}

// kidsIter finds a directory's children by name, for names asked in
// increasing order: one walk over the children.
type kidsIter struct {
	it   *immutable.SortedMapIterator[string, *node]
	name string
	n    *node
	more bool
}

func newKidsIter(d *node) *kidsIter {
	k := &kidsIter{it: d.kids.Iterator()}
	k.next()
	return k
}

func (k *kidsIter) next() {
	if k.more = !k.it.Done(); k.more {
		k.name, k.n, _ = k.it.Next()
	}
}

// find returns the child called name (nil if none); names must be asked
// in increasing order.
func (k *kidsIter) find(name string) *node {
	for k.more && k.name < name {
		k.next()
	}
	if k.more && k.name == name {
		return k.n
	}
	return nil
}

// importBlob reads and checks blob h, used as kind with git mode mode
// (once per integration): one of the peer's, or one of ours that a tree of
// the peer's references (where our tree holds it at the same path, the
// caller knows it is right and does not ask).
func (rd *reader) importBlob(h plumbing.Hash, kind Kind, mode filemode.FileMode) error {
	if _, ok := rd.leaves[leafKey{h, kind, mode}]; ok {
		return nil // checked already
	}
	o, ok := rd.imported[h]
	if !ok && !rd.r.hasOwn(h) {
		max := int64(MaxManifestLen)
		if kind == KindSymlink {
			max = MaxTargetLen
		}
		t, data, err := rd.fetch(h, max)
		if err != nil {
			return err
		}
		if t != plumbing.BlobObject {
			return fmt.Errorf("%w: %s is a %v, not a blob", ErrBadRemote, h, t)
		}
		rd.keep(h, t, data)
		o, ok = rd.imported[h], true
	}
	if ok && o.typ != plumbing.BlobObject {
		return fmt.Errorf("%w: %s is a %v, not a blob", ErrBadRemote, h, o.typ)
	}
	_, err := rd.leaf(h, kind, mode) // decodes and checks it
	return err
}

// decodeLeaf makes the node of a file (manifest), symlink (target) or
// directory marker blob; a file's git mode must agree with its manifest.
func decodeLeaf(data []byte, kind Kind, mode filemode.FileMode) (*node, error) {
	switch kind {
	case KindFile:
		if len(data) > MaxManifestLen {
			return nil, fmt.Errorf("manifest of %d bytes", len(data))
		}
		e, err := decodeManifest(data, KindFile)
		if err != nil {
			return nil, err
		}
		if (mode == filemode.Executable) != (e.Mode&0o111 != 0) {
			return nil, fmt.Errorf("git mode %v disagrees with the manifest's mode %#o", mode, e.Mode)
		}
		return &node{e: e}, nil
	case KindSymlink:
		if len(data) > MaxTargetLen {
			return nil, fmt.Errorf("symlink target of %d bytes", len(data))
		}
		e, err := checkEntry(&Entry{Kind: KindSymlink, Mode: 0o777, Target: string(data)})
		if err != nil {
			return nil, err
		}
		return &node{e: e}, nil
	case KindDir:
		if len(data) > MaxManifestLen {
			return nil, fmt.Errorf("marker of %d bytes", len(data))
		}
		e, err := decodeManifest(data, KindDir)
		if err != nil {
			return nil, err
		}
		return &node{e: e}, nil
	}
	return nil, fmt.Errorf("kind %v", kind)
}

// leaf returns the node of blob h used as kind (reading and decoding it
// once per integration).
func (rd *reader) leaf(h plumbing.Hash, kind Kind, mode filemode.FileMode) (*node, error) {
	key := leafKey{h, kind, mode}
	if n, ok := rd.leaves[key]; ok {
		return n, nil
	}
	t, data, err := rd.get(h)
	if err != nil {
		return nil, err
	}
	if t != plumbing.BlobObject {
		err = fmt.Errorf("%s is a %v, not a blob", h, t)
	}
	var n *node
	if err == nil {
		n, err = decodeLeaf(data, kind, mode)
	}
	if err != nil {
		// Only a peer's tree references an object as what it is not
		// (ours were checked when they were written, or skipped by Open).
		return nil, fmt.Errorf("%w: %v %s: %v", ErrBadRemote, kind, h, err)
	}
	n.oid = h
	rd.leaves[key] = n
	return n, nil
}

// tree returns the parsed tree h: strictly parsed when imported, as Open
// would load it when it is our own.
func (rd *reader) tree(h plumbing.Hash) (*dirTree, error) {
	if dt, ok := rd.trees[h]; ok {
		return dt, nil
	}
	t, data, err := rd.get(h)
	if err != nil {
		return nil, err
	}
	if t != plumbing.TreeObject {
		return nil, fmt.Errorf("%w: %s is a %v, not a tree", ErrBadRemote, h, t)
	}
	dt, err := parseDirTree(data, false)
	if err != nil {
		return nil, fmt.Errorf("%w: tree %s: %v", ErrBadRemote, h, err)
	}
	rd.trees[h] = dt
	return dt, nil
}

// dirTree is a parsed git tree: the marker and the children by user name.
type dirTree struct {
	marker plumbing.Hash // zero when there is none
	kids   []dirKid      // sorted by name
}

type dirKid struct {
	name string // user name
	kind Kind
	mode filemode.FileMode // git mode
	id   plumbing.Hash
}

// parseDirTree parses a git tree. Strict (a peer's tree): it must be in
// the form writeTrees makes (canonical modes, git order, valid escaped
// names, no name twice, a marker that is a regular file) or it fails.
// Otherwise (our own) what Open would skip is skipped.
func parseDirTree(data []byte, strict bool) (*dirTree, error) {
	dt := &dirTree{}
	var prev treeEnt
	bad := func(format string, args ...any) error {
		if strict {
			return fmt.Errorf(format, args...)
		}
		return nil
	}
	for i := 0; len(data) > 0; i++ {
		sp := bytes.IndexByte(data, ' ')
		if sp < 0 {
			return nil, errors.New("truncated entry")
		}
		ms := string(data[:sp])
		nul := bytes.IndexByte(data[sp+1:], 0)
		if nul < 0 || len(data) < sp+1+nul+1+20 {
			return nil, errors.New("truncated entry")
		}
		gname := string(data[sp+1 : sp+1+nul])
		id := plumbing.Hash(data[sp+1+nul+1 : sp+1+nul+1+20])
		data = data[sp+1+nul+1+20:]
		var mode filemode.FileMode
		var kind Kind
		switch ms {
		case "40000":
			mode, kind = filemode.Dir, KindDir
		case "100644":
			mode, kind = filemode.Regular, KindFile
		case "100755":
			mode, kind = filemode.Executable, KindFile
		case "120000":
			mode, kind = filemode.Symlink, KindSymlink
		case "100664":
			mode, kind = filemode.Regular, KindFile
			if err := bad("entry %q: mode %s", gname, ms); err != nil {
				return nil, err
			}
		default:
			if err := bad("entry %q: mode %s", gname, ms); err != nil {
				return nil, err
			}
			continue
		}
		cur := treeEnt{gname, mode, id}
		if strict && i > 0 && gitLess(prev, cur) >= 0 {
			return nil, fmt.Errorf("entry %q after %q: not in git order", gname, prev.name)
		}
		prev = cur
		if gname == markerName {
			if mode != filemode.Regular || !dt.marker.IsZero() {
				if err := bad("marker with mode %v", mode); err != nil {
					return nil, err
				}
				continue
			}
			dt.marker = id
			continue
		}
		name, err := unescapeName(gname)
		if err != nil {
			if err := bad("%v", err); err != nil {
				return nil, err
			}
			continue
		}
		dt.kids = append(dt.kids, dirKid{name: name, kind: kind, mode: mode, id: id})
	}
	sorted := true
	for i := 1; i < len(dt.kids) && sorted; i++ {
		sorted = dt.kids[i-1].name < dt.kids[i].name
	}
	if !sorted {
		sortKids(dt.kids)
		out := dt.kids[:0]
		for i, k := range dt.kids {
			if i > 0 && k.name == dt.kids[i-1].name {
				if err := bad("name %q twice", k.name); err != nil {
					return nil, err
				}
				continue
			}
			out = append(out, k)
		}
		dt.kids = out
	}
	return dt, nil
}

func sortKids(k []dirKid) {
	// Stable, so that of two entries with one name (skipped in our own
	// trees) the first in git order stays, as Open keeps it.
	slices.SortStableFunc(k, func(a, b dirKid) int { return strings.Compare(a.name, b.name) })
}

// The merge.

// Leaf modes in flattened trees: a file's or symlink's is its git mode, a
// directory marker's 100644. A directory whose contents the merge takes
// whole from one side ("stub") is a Dir leaf whose Hash is its tree id and
// whose Mode is stubMode, and has nothing below it.
const (
	markerMode = uint32(filemode.Regular)
	stubMode   = uint32(filemode.Dir)
)

// side is what one side of a merge holds at a path.
type side struct {
	kind Kind // 0: nothing
	id   plumbing.Hash
	mode filemode.FileMode
}

// flattener flattens base, ours and theirs for merge.Trees, descending
// only where all three differ: where two sides hold the same thing at a
// path, the merge's outcome for everything below it is one side's
// (unchanged, the same change on both sides, or a change on one side), so
// a directory there is one stub leaf instead of its contents.
type flattener struct {
	rd  *reader
	out [3]merge.Tree
}

func (f *flattener) walk(p string, s [3]side) error {
	anyDir := false
	for _, x := range s {
		anyDir = anyDir || x.kind == KindDir
	}
	if !anyDir || s[0] == s[1] || s[0] == s[2] || s[1] == s[2] {
		for i, x := range s {
			switch x.kind {
			case 0:
			case KindDir:
				f.out[i] = append(f.out[i], merge.Entry{Path: p, Leaf: merge.Leaf{Kind: merge.Dir, Hash: merge.Hash(x.id), Mode: stubMode}})
			default:
				f.out[i] = append(f.out[i], merge.Entry{Path: p, Leaf: leafOf(x)})
			}
		}
		return nil
	}
	var kids [3][]dirKid
	for i, x := range s {
		switch x.kind {
		case 0:
		case KindDir:
			dt, err := f.rd.tree(x.id)
			if err != nil {
				return err
			}
			if !dt.marker.IsZero() {
				f.out[i] = append(f.out[i], merge.Entry{Path: p, Leaf: merge.Leaf{Kind: merge.Dir, Hash: merge.Hash(dt.marker), Mode: markerMode}})
			}
			kids[i] = dt.kids
		default:
			f.out[i] = append(f.out[i], merge.Entry{Path: p, Leaf: leafOf(x)})
		}
	}
	var at [3]int
	for {
		name, found := "", false
		for i := range kids {
			if at[i] < len(kids[i]) && (!found || kids[i][at[i]].name < name) {
				name, found = kids[i][at[i]].name, true
			}
		}
		if !found {
			return nil
		}
		var cs [3]side
		for i := range kids {
			if at[i] < len(kids[i]) && kids[i][at[i]].name == name {
				k := kids[i][at[i]]
				cs[i] = side{kind: k.kind, id: k.id, mode: k.mode}
				at[i]++
			}
		}
		if err := f.walk(join(p, name), cs); err != nil {
			return err
		}
	}
}

func leafOf(x side) merge.Leaf {
	k := merge.File
	if x.kind == KindSymlink {
		k = merge.Symlink
	}
	return merge.Leaf{Kind: k, Hash: merge.Hash(x.id), Mode: uint32(x.mode)}
}

// mergeOut is a canonical merge, built but not written.
type mergeOut struct {
	id     plumbing.Hash // the merge commit
	data   []byte        // its object
	root   *node         // its tree (directories the merge changed are not written yet)
	tree   plumbing.Hash // root's tree id
	gen    uint64
	events []merge.Event
}

// Merge commits are signed by mergeSig: fixed, so that every peer makes
// the same commit.
const mergeSig = "delugefs merge <merge@delugefs>"

// maxMergeEvents bounds the events a merge commit's message lists.
const maxMergeEvents = 100

// canonical builds the canonical merge of frontier f (sorted by id, more
// than one commit): tree the fold of merge.Trees over f in order, each
// step against the latest common ancestor of what is merged so far and the
// next commit; parents f; time the latest of theirs; fixed signature; a
// message made of the events. ours is our current tree, whose nodes are
// reused where the merged tree holds them.
func (rd *reader) canonical(ctx context.Context, f []plumbing.Hash, ours *node) (*mergeOut, error) {
	g := rd.r.graph
	first, err := g.get(rd, f[0])
	if err != nil {
		return nil, err
	}
	acc := merge.Head{Node: first.node, Time: time.Unix(first.time, 0)}
	accTree := first.tree
	latest, gen := first.time, first.gen
	var root *node
	var events []merge.Event
	for i, id := range f[1:] {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := g.get(rd, id)
		if err != nil {
			return nil, err
		}
		base, ok, err := g.lca(rd, f[:i+1], id)
		if err != nil {
			return nil, err
		}
		fl := flattener{rd: rd}
		for k := range fl.out {
			fl.out[k] = make(merge.Tree, 0, int(ours.desc)+1)
		}
		var bs side
		if ok {
			bc, err := g.get(rd, base)
			if err != nil {
				return nil, err
			}
			bs = side{kind: KindDir, id: bc.tree, mode: filemode.Dir}
		}
		if err := fl.walk("", [3]side{bs, {kind: KindDir, id: accTree, mode: filemode.Dir}, {kind: KindDir, id: c.tree, mode: filemode.Dir}}); err != nil {
			return nil, err
		}
		acc.Tree = fl.out[1]
		next := merge.Head{Tree: fl.out[2], Node: c.node, Time: time.Unix(c.time, 0)}
		res, err := merge.Trees(fl.out[0], acc, next)
		if err != nil {
			return nil, fmt.Errorf("merge %s into %s: %w", id, f[:i+1], err)
		}
		events = append(events, res.Events...)
		b := builder{rd: rd}
		if root, err = b.build(res.Tree, ours); err != nil {
			return nil, err
		}
		if i+2 < len(f) {
			// An intermediate result: its tree ids feed the next step.
			if root, err = writeTrees(rd, root); err != nil {
				return nil, err
			}
			accTree = root.oid
		}
		if cmp.Or(next.Time.Compare(acc.Time), strings.Compare(next.Node, acc.Node)) > 0 {
			acc.Node, acc.Time = next.Node, next.Time
		}
		latest, gen = max(latest, c.time), max(gen, c.gen)
	}
	// The tree id, for the commit (the trees are encoded again when the
	// commit is written, with deltas where they help).
	written, err := writeTrees(discard{}, root)
	if err != nil {
		return nil, err
	}
	sig := mergeSig + " " + strconv.FormatInt(latest, 10) + " +0000"
	data := encodeCommitObject(written.oid, f, sig, sig, mergeMessage(f, events), gen+1)
	return &mergeOut{id: objectHash("commit", data), data: data, root: root, tree: written.oid, gen: gen + 1, events: events}, nil
}

// discard is a sink that keeps nothing: for computing tree ids.
type discard struct{}

func (discard) write(plumbing.Hash, string, []byte) error                    { return nil }
func (discard) writeTree(plumbing.Hash, []byte, plumbing.Hash, []byte) error { return nil }

// mergeMessage is a merge commit's message: a function of the parents and
// the events only.
func mergeMessage(parents []plumbing.Hash, events []merge.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "merge %d commits\n", len(parents))
	if len(events) > 0 {
		b.WriteString("\n")
		for i, e := range events {
			if i == maxMergeEvents {
				fmt.Fprintf(&b, "... and %d more\n", len(events)-i)
				break
			}
			b.WriteString(strings.Map(func(c rune) rune {
				if c == '\n' || c == '\r' || c == 0 {
					return ' '
				}
				return c
			}, e.String()) + "\n")
		}
	}
	return b.String()
}

// builder makes the nodes of a merged or fetched tree, reusing our own
// nodes wherever they hold the same object.
type builder struct {
	rd *reader
}

// openDir is a directory being built.
type openDir struct {
	path  string
	depth int // components below the root
	e     *Entry
	mark  plumbing.Hash
	kb    kidsBuilder
	desc  uint32
	ours  *node // our directory at path, if any
}

// checkPath applies the limits Open applies to what it loads.
func checkPath(p string, depth int, kind Kind) error {
	switch {
	case len(p) > MaxPathLen:
		return fmt.Errorf("%w: path %q is longer than %d bytes", ErrBadRemote, p, MaxPathLen)
	case depth > MaxDepth || kind == KindDir && depth >= MaxDepth:
		return fmt.Errorf("%w: path %q is deeper than %d", ErrBadRemote, p, MaxDepth)
	}
	return nil
}

// build makes the root node of the merged tree res (sorted, with stubs).
// ours is our current root. Directories the merge changed get zero oids.
func (b *builder) build(res merge.Tree, ours *node) (*node, error) {
	var stack []*openDir
	var root *node
	closeTop := func() {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := &node{e: d.e, marker: d.mark, kids: d.kb.Map(), desc: d.desc}
		if d.ours != nil && d.ours.e.Kind == KindDir {
			n.prev = d.ours.oid // delta base, if it is pending
			if n.prev.IsZero() {
				n.prev = d.ours.prev
			}
		}
		if len(stack) == 0 {
			root = n
			return
		}
		parent := stack[len(stack)-1]
		parent.kb.Set(baseName(d.path), n)
		parent.desc += n.weight()
	}
	open := func(p string, e *Entry, mark plumbing.Hash) {
		d := &openDir{path: p, e: e, mark: mark, kb: newKidsBuilder()}
		if len(stack) > 0 {
			parent := stack[len(stack)-1]
			d.depth = parent.depth + 1
			if parent.ours != nil {
				if c, ok := parent.ours.kids.Get(baseName(p)); ok && c.e.Kind == KindDir {
					d.ours = c
				}
			}
		} else {
			d.ours = ours
		}
		stack = append(stack, d)
	}
	implicit := func() *Entry { return &Entry{Kind: KindDir, Mode: 0o755} }
	for idx, ent := range res {
		p, l := ent.Path, ent.Leaf
		if p == "" {
			if idx != 0 || l.Kind != merge.Dir {
				return nil, fmt.Errorf("merged tree: bad root entry")
			}
			if l.Mode == stubMode {
				if len(res) != 1 {
					return nil, fmt.Errorf("merged tree: entries below a whole root")
				}
				if ours != nil && ours.oid == plumbing.Hash(l.Hash) {
					return ours, nil
				}
				return b.adopt(ours, plumbing.Hash(l.Hash), "", 0)
			}
			e, err := b.dirEntry(ours, plumbing.Hash(l.Hash))
			if err != nil {
				return nil, err
			}
			open("", e, plumbing.Hash(l.Hash))
			continue
		}
		if len(stack) == 0 {
			open("", implicit(), plumbing.ZeroHash)
		}
		for !under(p, stack[len(stack)-1].path) {
			closeTop()
		}
		// Open the directories between the top and p's parent that have
		// no marker in the merged tree.
		for {
			top := stack[len(stack)-1].path
			rest := p
			if top != "" {
				rest = p[len(top)+1:]
			}
			i := strings.IndexByte(rest, '/')
			if i < 0 {
				break
			}
			d := join(top, rest[:i])
			if err := checkPath(d, stack[len(stack)-1].depth+1, KindDir); err != nil {
				return nil, err
			}
			open(d, implicit(), plumbing.ZeroHash)
		}
		parent := stack[len(stack)-1]
		name := baseName(p)
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("%w: merged path %q: %v", ErrBadRemote, p, err)
		}
		var kind Kind
		switch l.Kind {
		case merge.Dir:
			kind = KindDir
		case merge.Symlink:
			kind = KindSymlink
		default:
			kind = KindFile
		}
		if err := checkPath(p, parent.depth+1, kind); err != nil {
			return nil, err
		}
		var oc *node
		if parent.ours != nil {
			oc, _ = parent.ours.kids.Get(name)
		}
		id := plumbing.Hash(l.Hash)
		var c *node
		switch {
		case kind == KindDir && l.Mode == stubMode:
			if oc != nil && oc.e.Kind == KindDir && oc.oid == id {
				c = oc
			} else {
				if oc != nil && oc.e.Kind != KindDir {
					oc = nil
				}
				var err error
				if c, err = b.adopt(oc, id, p, parent.depth+1); err != nil {
					return nil, err
				}
			}
		case kind == KindDir:
			if oc != nil && oc.e.Kind != KindDir {
				oc = nil
			}
			e, err := b.dirEntry(oc, id)
			if err != nil {
				return nil, err
			}
			open(p, e, id)
			continue
		default:
			if oc != nil && oc.e.Kind == kind && oc.oid == id && (kind != KindFile || uint32(fileMode(oc.e)) == l.Mode) {
				c = oc
			} else {
				var err error
				if c, err = b.rd.leaf(id, kind, filemode.FileMode(l.Mode)); err != nil {
					return nil, fmt.Errorf("%q: %w", p, err)
				}
			}
		}
		parent.kb.Set(name, c)
		parent.desc += c.weight()
	}
	if len(stack) == 0 && root == nil {
		open("", implicit(), plumbing.ZeroHash)
	}
	for len(stack) > 0 {
		closeTop()
	}
	return root, nil
}

// dirEntry returns the entry of a directory whose marker is blob mark,
// reusing our directory's (old) when it has the same marker.
func (b *builder) dirEntry(old *node, mark plumbing.Hash) (*Entry, error) {
	if old != nil && old.marker == mark {
		return old.e, nil
	}
	n, err := b.rd.leaf(mark, KindDir, filemode.Regular)
	if err != nil {
		return nil, fmt.Errorf("directory marker: %w", err)
	}
	return n.e, nil
}

// adopt returns the node of tree h at path p (depth components below the
// root), reusing the nodes of old, our directory at p (nil if none),
// wherever they hold the same objects: the work is in the size of the
// difference.
func (b *builder) adopt(old *node, h plumbing.Hash, p string, depth int) (*node, error) {
	if old != nil && old.oid == h {
		return old, nil
	}
	dt, err := b.rd.tree(h)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", p, err)
	}
	n := &node{oid: h, marker: dt.marker}
	switch {
	case dt.marker.IsZero():
		n.e = &Entry{Kind: KindDir, Mode: 0o755}
	default:
		if n.e, err = b.dirEntry(old, dt.marker); err != nil {
			return nil, fmt.Errorf("%q: %w", p, err)
		}
	}
	kid := func(k dirKid, oc *node) (*node, error) {
		cp := join(p, k.name)
		if err := checkPath(cp, depth+1, k.kind); err != nil {
			return nil, err
		}
		if oc != nil && oc.e.Kind == k.kind && oc.oid == k.id && (k.kind != KindFile || fileMode(oc.e) == k.mode) {
			return oc, nil
		}
		if k.kind == KindDir {
			if oc != nil && oc.e.Kind != KindDir {
				oc = nil
			}
			return b.adopt(oc, k.id, cp, depth+1)
		}
		c, err := b.rd.leaf(k.id, k.kind, k.mode)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", cp, err)
		}
		return c, nil
	}
	if old == nil || old.kids == nil {
		kb := newKidsBuilder()
		for _, k := range dt.kids {
			c, err := kid(k, nil)
			if err != nil {
				return nil, err
			}
			kb.Set(k.name, c)
			n.desc += c.weight()
		}
		n.kids = kb.Map()
		return n, nil
	}
	// Edit old's children: a walk over both sorted lists, and a persistent
	// map update for each child that differs.
	kids, desc := old.kids, old.desc
	it := old.kids.Iterator()
	oname, oc, more := "", (*node)(nil), false
	nextOld := func() {
		if more = !it.Done(); more {
			oname, oc, _ = it.Next()
		}
	}
	nextOld()
	for _, k := range dt.kids {
		for more && oname < k.name {
			kids = kids.Delete(oname)
			desc -= oc.weight()
			nextOld()
		}
		var prev *node
		if more && oname == k.name {
			prev = oc
			nextOld()
		}
		c, err := kid(k, prev)
		if err != nil {
			return nil, err
		}
		if c == prev {
			continue
		}
		if prev != nil {
			desc -= prev.weight()
		}
		kids = kids.Set(k.name, c)
		desc += c.weight()
	}
	for more {
		kids = kids.Delete(oname)
		desc -= oc.weight()
		nextOld()
	}
	n.kids, n.desc = kids, desc
	return n, nil
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// under reports whether p lies strictly below directory d.
func under(p, d string) bool {
	if d == "" {
		return p != ""
	}
	return len(p) > len(d) && p[len(d)] == '/' && p[:len(d)] == d
}

var debugTiming = false
