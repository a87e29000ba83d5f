package meta

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"slices"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// objWriter writes git objects as packs (pack.go) without fsync; the caller
// makes a whole batch durable with one barrier (sync). Owned by the actor.
type objWriter struct {
	dir     string   // the bare repository
	written []string // files and directories made since the last sync
	// pending holds the pack entries of the current commit, made
	// (compressed) but not yet written: they go into the commit's journal
	// record first, then into a pack (flush) after the callers are
	// answered, off the latency path. ids holds their ids.
	pending []journalObj
	ids     map[plumbing.Hash]int // index in pending
	// raws holds the data of the large pending trees (delta bases for
	// writeTree) and depth the length of their delta chains.
	raws         map[plumbing.Hash][]byte
	depth        map[plumbing.Hash]int
	pendingBytes int
	packs        int // packs in objects/pack (for consolidate)
	// retired holds the packs a consolidation replaced, by base name, with
	// when: they stay on disk for retireAfter, so a reader (the API's
	// upload-pack) that listed the packs just before still finds them.
	retired map[string]time.Time
	zw      *zlib.Writer // BestSpeed, for objects of smallObject to bigObject
	zwBig   *zlib.Writer // NoCompression, for trees and the others
	buf     bytes.Buffer
	n       int // objects written since the last sync (for tests and stats)
	// packGen counts changes to the set of packs (writes, merges,
	// removals), so that readers know when to reload pack indexes.
	packGen uint64
	// merge is the consolidation running or done and not yet taken
	// (consolidate); background runs merges on their own goroutine.
	merge      *mergeJob
	background bool
	mergeHook  func() // tests: runs before a background merge
}

// bigObject is the size above which objects are stored without
// compression. Trees are never compressed: mostly SHA-1s, they gain
// little, and deflating a large directory's tree on every commit was a
// fifth of the CPU of a small-file close. git gc compresses them later.
const bigObject = 256 << 10

// smallObject is the size below which objects are stored without
// compression: deflate's fixed cost (Huffman tables) dominates for a
// manifest of a few hundred bytes, and saves little.
const smallObject = 2 << 10

func newObjWriter(gitDir string) *objWriter {
	zw, _ := zlib.NewWriterLevel(nil, zlib.BestSpeed)
	zwBig, _ := zlib.NewWriterLevel(nil, zlib.NoCompression)
	return &objWriter{dir: gitDir, ids: make(map[plumbing.Hash]int), raws: make(map[plumbing.Hash][]byte),
		depth: make(map[plumbing.Hash]int), zw: zw, zwBig: zwBig}
}

// write makes data a pending object of the given type unless an object
// with that id is already pending. (Objects already in packs are not
// looked for: a duplicate in another pack is harmless, and consolidate
// drops it.)
func (w *objWriter) write(h plumbing.Hash, typ string, data []byte) error {
	if w.has(h) {
		return nil
	}
	zw := w.zw
	if len(data) > bigObject || len(data) < smallObject || typ == "tree" {
		zw = w.zwBig
	}
	e, err := encodeEntry(&w.buf, zw, packType(typ), data)
	if err != nil {
		return fmt.Errorf("compress object %s: %w", h, err)
	}
	w.add(journalObj{id: h, file: e})
	return nil
}

// writeTree is write for a tree whose directory's previous tree was base
// (zero if none). When base is pending too (written since the last flush,
// so in the same pack, and in this or an earlier live journal record) and
// the chain through it is short, the tree is stored as a reference delta
// against it: a commit into a directory of thousands of entries then
// journals and packs a few dozen bytes, not the whole tree. delta, when
// not nil, is a delta that makes data from base's tree (made by splicing);
// otherwise writeTree makes one.
func (w *objWriter) writeTree(h plumbing.Hash, data []byte, base plumbing.Hash, delta []byte) error {
	if w.has(h) {
		return nil
	}
	if len(data) < 1024 {
		return w.write(h, "tree", data)
	}
	if src, ok := w.raws[base]; ok && w.depth[base] < maxDeltaDepth {
		d := delta
		if d == nil {
			d = makeDelta(src, data)
		}
		if len(d) <= len(data)/2 {
			w.buf.Reset()
			var hd [16]byte
			w.buf.Write(appendEntryHeader(hd[:0], objRefDelta, len(d)))
			w.buf.Write(base[:])
			zw := w.zw
			if len(d) < smallObject {
				zw = w.zwBig // a splice's delta is a few dozen bytes
			}
			zw.Reset(&w.buf)
			zw.Write(d)
			if err := zw.Close(); err != nil {
				return fmt.Errorf("compress object %s: %w", h, err)
			}
			w.add(journalObj{id: h, file: bytes.Clone(w.buf.Bytes())})
			w.raws[h], w.depth[h] = data, w.depth[base]+1
			w.pendingBytes += len(data)
			return nil
		}
	}
	if err := w.write(h, "tree", data); err != nil {
		return err
	}
	w.raws[h], w.depth[h] = data, 0
	w.pendingBytes += len(data)
	return nil
}

// has reports whether the object h is pending.
func (w *objWriter) has(h plumbing.Hash) bool {
	_, ok := w.ids[h]
	return ok
}

func (w *objWriter) add(o journalObj) {
	if w.has(o.id) {
		return
	}
	w.ids[o.id] = len(w.pending)
	w.pending = append(w.pending, o)
	w.pendingBytes += len(o.file)
}

// drop forgets the pending objects from index first on (a failed commit's).
func (w *objWriter) drop(first int) {
	if len(w.pending) < first {
		return
	}
	for _, o := range w.pending[first:] {
		delete(w.ids, o.id)
		w.pendingBytes -= len(o.file) + len(w.raws[o.id])
		delete(w.raws, o.id)
		delete(w.depth, o.id)
	}
	clear(w.pending[first:])
	w.pending = w.pending[:first]
}

// flush writes the pending objects as one pack. With direct set (every
// pending object is in a live journal record, which replay rewrites if a
// crash tears the pack) nothing is fsync'd (see syncObjects); otherwise
// the pack is fsync'd before it is renamed into place, so that no torn
// pack ever shadows objects written later.
func (w *objWriter) flush(direct bool) error {
	if len(w.pending) == 0 {
		return nil
	}
	made, err := writePack(w.dir, w.pending, !direct)
	if err != nil {
		return err
	}
	w.written = append(w.written, made...)
	w.n += len(w.pending)
	w.packs++
	w.packGen++
	w.pending, w.pendingBytes = nil, 0
	clear(w.ids)
	clear(w.raws)
	clear(w.depth)
	return nil
}

// treeEnt is one entry of a git tree being encoded.
type treeEnt struct {
	name string // git (escaped) name
	mode filemode.FileMode
	oid  plumbing.Hash
}

// gitLess orders tree entries as git does: by name, a tree's name compared
// as if followed by '/'.
func gitLess(a, b treeEnt) int {
	an, bn := a.name, b.name
	if a.mode == filemode.Dir {
		an += "/"
	}
	if b.mode == filemode.Dir {
		bn += "/"
	}
	switch {
	case an < bn:
		return -1
	case an > bn:
		return 1
	}
	return 0
}

func encodeTree(ents []treeEnt) []byte {
	b, _ := encodeTreeOffs(ents, false)
	return b
}

// encodeTreeOffs is encodeTree that also returns each entry's offset when
// offs is set.
func encodeTreeOffs(ents []treeEnt, offs bool) ([]byte, []uint32) {
	sorted := true
	for i := 1; i < len(ents); i++ {
		if gitLess(ents[i-1], ents[i]) >= 0 {
			sorted = false
			break
		}
	}
	if !sorted {
		slices.SortFunc(ents, gitLess)
	}
	size := 0
	for _, e := range ents {
		size += len(e.name) + 28
	}
	b := make([]byte, 0, size)
	var o []uint32
	if offs {
		o = make([]uint32, 0, len(ents))
	}
	for _, e := range ents {
		if offs {
			o = append(o, uint32(len(b)))
		}
		b = appendTreeEnt(b, e.mode, e.name, e.oid)
	}
	return b, o
}

func modeString(m filemode.FileMode) string {
	switch m {
	case filemode.Dir:
		return "40000"
	case filemode.Executable:
		return "100755"
	case filemode.Symlink:
		return "120000"
	case filemode.Submodule:
		return "160000"
	}
	return "100644"
}

// objSink takes the objects writeTrees makes: the objWriter, or a scratch
// store for trees that are only computed (intermediate merge results).
type objSink interface {
	write(h plumbing.Hash, typ string, data []byte) error
	writeTree(h plumbing.Hash, data []byte, base plumbing.Hash, delta []byte) error
}

// writeTrees writes the git trees of every changed directory under n
// (bottom-up) and returns n with its tree id filled in; unchanged subtrees
// are not visited. New nodes are returned rather than modified, since n
// may be shared with a published snapshot.
func (w *objWriter) writeTrees(n *node) (*node, error) { return writeTrees(w, n) }

func writeTrees(w objSink, n *node) (*node, error) {
	if !n.oid.IsZero() {
		return n, nil
	}
	cp := *n
	cp.dirty, cp.enc = nil, nil
	if cp.marker.IsZero() {
		m := encodeManifest(n.e)
		cp.marker = blobHash(m)
		if err := w.write(cp.marker, "blob", m); err != nil {
			return nil, err
		}
	}
	var (
		data, delta []byte
		offs        []uint32
		err         error
	)
	if n.enc != nil && !n.prev.IsZero() && n.enc.id == n.prev {
		data, offs, delta, err = spliceTrees(w, &cp, n)
	} else {
		data, offs, err = encodeTrees(w, &cp, n)
	}
	if err != nil {
		return nil, err
	}
	cp.oid = objectHash("tree", data)
	if len(offs) >= spliceMinEntries {
		cp.enc = &treeEnc{id: cp.oid, data: data, offs: offs}
	}
	if err := w.writeTree(cp.oid, data, n.prev, delta); err != nil {
		return nil, err
	}
	return &cp, nil
}

// encodeTrees encodes the tree of n whole, writing the trees of changed
// subdirectories first (into cp.kids). It returns the entries' offsets
// when the encoding is to be kept.
func encodeTrees(w objSink, cp, n *node) ([]byte, []uint32, error) {
	kids := n.kids
	ents := make([]treeEnt, 0, kids.Len()+1)
	ents = append(ents, treeEnt{markerName, filemode.Regular, cp.marker})
	it := n.kids.Iterator()
	for !it.Done() {
		name, c, _ := it.Next()
		if c.e.Kind == KindDir && c.oid.IsZero() {
			nc, err := writeTrees(w, c)
			if err != nil {
				return nil, nil, err
			}
			kids = kids.Set(name, nc)
			c = nc
		}
		ents = append(ents, treeEnt{escapeName(name), kidMode(c), c.oid})
	}
	cp.kids = kids
	data, offs := encodeTreeOffs(ents, len(ents) >= spliceMinEntries)
	return data, offs, nil
}

// fileMode is the git mode of a regular file's entry.
func fileMode(e *Entry) filemode.FileMode {
	if e.Mode&0o111 != 0 {
		return filemode.Executable
	}
	return filemode.Regular
}
