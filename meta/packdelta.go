package meta

import (
	"bytes"
	"compress/zlib"
	"container/list"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
)

// A flush stores each changed large directory's tree whole, then reference
// deltas against it within its pack (writeTree), so without help the
// history would hold one whole tree per directory per flush. A merge
// therefore stores a whole tree of at least minDeltaTree bytes as a
// reference delta against the latest version of the same directory's
// tree it has written (matched by the tree's marker entry, which adding
// or removing files does not change; a wrong match costs only space),
// when that delta is at most half the tree. To know each tree's contents
// it replays the delta chains as they pass, keeping the latest contents
// of each directory in a cache of at most mergeCacheBytes. Chains stay at
// most maxDeltaDepth long: a tree whose delta would pass that is stored as
// a delta against the directory's last tree written whole (its anchor)
// when that delta is at most an eighth of the tree, otherwise whole (and
// becomes the anchor).

// minDeltaTree is the size from which a merge stores trees as deltas (as
// writeTree).
const minDeltaTree = 1024

// mergeCacheBytes bounds the tree contents a merge keeps.
var mergeCacheBytes = 32 << 20 // a variable for tests

// mergeDeltas is the state of a merge's delta making.
type mergeDeltas struct {
	dir   string
	byKey map[plumbing.Hash]*treeVer // by marker blob id
	byID  map[plumbing.Hash]*treeVer
	lru   list.List // of *treeVer, least recently written first
	bytes int
	// depth holds the delta depth of every delta entry written (absent:
	// a whole object).
	depth map[plumbing.Hash]uint8
	raw   []byte // the entry being read
	inf   []byte // an inflated delta
	data  []byte // the object being resolved
	br    bytes.Reader
	zr    io.ReadCloser
	zw    *zlib.Writer
	buf   bytes.Buffer
	ps    *packSet // reads bases that left the cache, from the packs
	// Counts, for tests.
	redelta, whole int
}

// treeVer is the latest version of a directory's tree that a merge
// wrote, and the last one it wrote whole (the anchor).
type treeVer struct {
	key, id  plumbing.Hash
	data     []byte
	anchorID plumbing.Hash
	anchor   []byte
	el       *list.Element
}

func newMergeDeltas(dir string) *mergeDeltas {
	zw, _ := zlib.NewWriterLevel(nil, zlib.BestSpeed)
	return &mergeDeltas{dir: dir, byKey: map[plumbing.Hash]*treeVer{}, byID: map[plumbing.Hash]*treeVer{},
		depth: map[plumbing.Hash]uint8{}, zw: zw}
}

func (m *mergeDeltas) close() {
	if m.ps != nil {
		m.ps.close()
	}
}

// copy appends entry i of in to out: as it is, or, for a large tree, as a
// delta against the latest version of its directory's tree, or (a delta
// whose chain would grow too long) whole.
func (m *mergeDeltas) copy(in *packIn, i int, out *packOut) error {
	o := in.objs[i]
	hb, err := in.at(o.off, int(min(in.ends[i]-o.off, 32)))
	if err != nil {
		return err
	}
	typ, size, n, ok := entryHeader(hb)
	if !ok {
		return fmt.Errorf("meta: pack %s: bad entry header for %s", in.base, o.id)
	}
	if !(typ == objTree && size >= minDeltaTree || typ == objRefDelta) || size > maxOwnObject {
		if err := in.copyEntry(out, i); err != nil {
			return err
		}
		if typ == objRefDelta && len(hb) >= n+20 {
			m.setDepth(o.id, m.depthOf(plumbing.Hash(hb[n:n+20]))+1) // not resolved
		}
		return nil
	}
	raw, err := m.read(in, i)
	if err != nil {
		return err
	}
	var base plumbing.Hash
	t := typ
	if typ == objRefDelta {
		if len(raw) < n+20 {
			return fmt.Errorf("meta: pack %s: truncated delta %s", in.base, o.id)
		}
		base = plumbing.Hash(raw[n : n+20])
		if m.inf, err = m.inflate(m.inf, raw[n+20:], size); err != nil {
			return fmt.Errorf("meta: pack %s: object %s: %w", in.base, o.id, err)
		}
		var src []byte
		if t, src, err = m.contents(base); err != nil {
			return fmt.Errorf("meta: pack %s: base of %s: %w", in.base, o.id, err)
		}
		if m.data, err = applyDeltaTo(m.data[:0], src, m.inf); err != nil {
			return fmt.Errorf("meta: pack %s: object %s: %w", in.base, o.id, err)
		}
	} else if m.data, err = m.inflate(m.data, raw[n:], size); err != nil {
		return fmt.Errorf("meta: pack %s: object %s: %w", in.base, o.id, err)
	}
	data := m.data
	var key plumbing.Hash
	keyed := false
	if t == objTree && len(data) >= minDeltaTree {
		key, keyed = markerID(data)
	}
	var cand *treeVer
	if keyed {
		cand = m.byKey[key]
	}
	switch {
	case typ == objRefDelta && m.depthOf(base) < maxDeltaDepth:
		err = m.entry(out, o.id, raw)
		m.setDepth(o.id, m.depthOf(base)+1)
	case cand != nil && cand.id != o.id && m.depthOf(cand.id) < maxDeltaDepth &&
		m.tryDelta(out, o.id, cand.id, cand.data, data, len(data)/2):
		m.setDepth(o.id, m.depthOf(cand.id)+1)
		m.redelta++
	case cand != nil && cand.anchor != nil && m.depthOf(cand.anchorID) < maxDeltaDepth/2 &&
		m.tryDelta(out, o.id, cand.anchorID, cand.anchor, data, len(data)/8):
		// The chain is full: a delta against the last tree written
		// whole (larger, but far shorter than the tree) starts another.
		m.setDepth(o.id, m.depthOf(cand.anchorID)+1)
		m.redelta++
	case typ == objRefDelta:
		err = m.writeEntry(out, o.id, t, nil, data)
		m.whole++
	default:
		err = m.entry(out, o.id, raw)
	}
	if err != nil {
		return err
	}
	if keyed {
		m.remember(key, o.id, m.depthOf(o.id) == 0)
	}
	return nil
}

func (m *mergeDeltas) depthOf(id plumbing.Hash) int { return int(m.depth[id]) }

func (m *mergeDeltas) setDepth(id plumbing.Hash, d int) {
	if d > 0 {
		m.depth[id] = uint8(min(d, 255))
	}
}

// tryDelta writes data as a delta against base (whose contents are src)
// when that is at most limit bytes.
func (m *mergeDeltas) tryDelta(out *packOut, id, base plumbing.Hash, src, data []byte, limit int) bool {
	d := makeDelta(src, data)
	if len(d) > limit {
		return false
	}
	return m.writeEntry(out, id, objRefDelta, base[:], d) == nil
}

// entry writes a copied entry.
func (m *mergeDeltas) entry(out *packOut, id plumbing.Hash, raw []byte) error {
	return out.entry(id, raw)
}

// writeEntry writes an entry of type typ (with the base id of a delta)
// holding data, compressed.
func (m *mergeDeltas) writeEntry(out *packOut, id plumbing.Hash, typ byte, base, data []byte) error {
	m.buf.Reset()
	var hd [16]byte
	m.buf.Write(appendEntryHeader(hd[:0], typ, len(data)))
	m.buf.Write(base)
	m.zw.Reset(&m.buf)
	m.zw.Write(data)
	if err := m.zw.Close(); err != nil {
		return fmt.Errorf("compress object %s: %w", id, err)
	}
	return out.entry(id, m.buf.Bytes())
}

// remember makes m.data the latest version of key's tree (id), and its
// anchor if it was written whole; the buffer of the version it replaces
// is reused for the next object.
func (m *mergeDeltas) remember(key, id plumbing.Hash, whole bool) {
	tv := m.byKey[key]
	if tv == nil {
		tv = &treeVer{key: key}
		tv.el = m.lru.PushBack(tv)
		m.byKey[key] = tv
	} else {
		delete(m.byID, tv.id)
		m.lru.MoveToBack(tv.el)
	}
	if whole {
		m.bytes += len(m.data) - len(tv.anchor)
		tv.anchorID, tv.anchor = id, append(tv.anchor[:0], m.data...)
	}
	m.bytes += len(m.data) - len(tv.data)
	tv.id = id
	tv.data, m.data = m.data, tv.data[:0]
	m.byID[id] = tv
	for m.bytes > mergeCacheBytes && m.lru.Len() > 1 {
		old := m.lru.Remove(m.lru.Front()).(*treeVer)
		delete(m.byKey, old.key)
		delete(m.byID, old.id)
		m.bytes -= len(old.data) + len(old.anchor)
	}
}

// contents returns the type and contents of an object written earlier in
// the merge: from the cache, or read again from the packs.
func (m *mergeDeltas) contents(id plumbing.Hash) (byte, []byte, error) {
	if tv := m.byID[id]; tv != nil {
		return objTree, tv.data, nil
	}
	if m.ps == nil {
		m.ps = newPackSet(m.dir)
		if err := m.ps.refresh(1); err != nil {
			return 0, nil, err
		}
	}
	t, data, err := m.ps.read(id, 0)
	if m.ps.cache.bytes > mergeCacheBytes/4 {
		m.ps.cache.clear() // memory stays bounded
	}
	return byte(t), data, err
}

// read returns entry i of in whole (valid until the next call), checked
// against the CRC-32 its index records.
func (m *mergeDeltas) read(in *packIn, i int) ([]byte, error) {
	o := in.objs[i]
	n := int(in.ends[i] - o.off)
	if cap(m.raw) < n {
		m.raw = make([]byte, n)
	}
	b := m.raw[:n]
	if _, err := in.f.ReadAt(b, int64(o.off)); err != nil {
		return nil, fmt.Errorf("read pack %s: %w", in.base, err)
	}
	if crc32.ChecksumIEEE(b) != o.crc {
		return nil, fmt.Errorf("meta: pack %s: object %s fails its CRC", in.base, o.id)
	}
	return b, nil
}

// inflate decompresses z, a zlib stream of exactly size bytes, into dst's
// storage.
func (m *mergeDeltas) inflate(dst, z []byte, size int) ([]byte, error) {
	m.br.Reset(z)
	if m.zr == nil {
		zr, err := zlib.NewReader(&m.br)
		if err != nil {
			return nil, err
		}
		m.zr = zr
	} else if err := m.zr.(zlib.Resetter).Reset(&m.br, nil); err != nil {
		return nil, err
	}
	if cap(dst) < size {
		dst = make([]byte, size)
	}
	dst = dst[:size]
	if _, err := io.ReadFull(m.zr, dst); err != nil {
		return nil, err
	}
	var one [1]byte
	if n, err := m.zr.Read(one[:]); n != 0 || err != io.EOF {
		return nil, errors.New("entry longer than its size")
	}
	return dst, nil
}

// markerID returns the id of a tree's marker entry.
func markerID(tree []byte) (plumbing.Hash, bool) {
	for len(tree) > 0 {
		sp := bytes.IndexByte(tree, ' ')
		if sp < 0 {
			break
		}
		nul := bytes.IndexByte(tree[sp:], 0)
		if nul < 0 || sp+nul+21 > len(tree) {
			break
		}
		nul += sp
		if string(tree[sp+1:nul]) == markerName {
			return plumbing.Hash(tree[nul+1 : nul+21]), true
		}
		tree = tree[nul+21:]
	}
	return plumbing.Hash{}, false
}
