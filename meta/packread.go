package meta

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"
)

// packSet reads the objects of this repository's packs for the actor
// (Integrate): go-git's storage decodes a pack index with a read(2) per
// field, which made reloading the indexes after each flush most of an
// integration's time. An index is read whole, once, and searched in
// place; the pack is read with pread. Loose objects (none unless stock git
// wrote some while the node was stopped) are read from their files.
type packSet struct {
	dir   string
	gen   uint64 // objWriter.packGen the set was listed at
	ok    bool   // listed at least once
	packs map[string]*packFile
	loose bool // objects/ has loose object directories
	cache baseCache
	// Reused by readAt.
	buf []byte
	br  bytes.Reader
	zr  io.ReadCloser
}

type packFile struct {
	f     *os.File
	size  int64
	idx   []byte
	n     int    // objects
	names []byte // 20·n bytes, sorted
	offs  []byte // 4·n bytes
	large []byte
}

func newPackSet(dir string) *packSet {
	return &packSet{dir: dir, packs: map[string]*packFile{}, cache: baseCache{m: map[baseKey][]byte{}}}
}

// refresh lists the packs again when gen (objWriter.packGen) changed:
// new ones are opened, gone ones closed.
func (ps *packSet) refresh(gen uint64) error {
	if ps.ok && ps.gen == gen {
		return nil
	}
	names, err := packNames(ps.dir)
	if err != nil {
		return err
	}
	live := make(map[string]bool, len(names))
	for _, n := range names {
		live[n] = true
		if ps.packs[n] != nil {
			continue
		}
		pf, err := openPackFile(n)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed since it was listed
			}
			return err
		}
		ps.packs[n] = pf
	}
	for n, pf := range ps.packs {
		if !live[n] {
			pf.f.Close()
			delete(ps.packs, n)
		}
	}
	ps.loose = false
	if ents, err := os.ReadDir(filepath.Join(ps.dir, "objects")); err == nil {
		for _, e := range ents {
			if len(e.Name()) == 2 && e.IsDir() {
				ps.loose = true
				break
			}
		}
	}
	ps.cache.clear()
	ps.gen, ps.ok = gen, true
	return nil
}

func (ps *packSet) close() {
	for n, pf := range ps.packs {
		pf.f.Close()
		delete(ps.packs, n)
	}
	ps.ok = false
}

func openPackFile(base string) (*packFile, error) {
	idx, err := os.ReadFile(base + ".idx")
	if err != nil {
		return nil, err
	}
	if len(idx) < 8+1024+40 || !bytes.Equal(idx[:8], []byte{0xff, 't', 'O', 'c', 0, 0, 0, 2}) {
		return nil, fmt.Errorf("meta: %s.idx: not a version 2 pack index", base)
	}
	n := int(binary.BigEndian.Uint32(idx[8+255*4:]))
	names := 8 + 1024
	offs := names + 24*n // past the names and the CRCs
	if offs+4*n+40 > len(idx) || n < 0 {
		return nil, fmt.Errorf("meta: %s.idx: truncated", base)
	}
	f, err := os.Open(base + ".pack")
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &packFile{f: f, size: st.Size(), idx: idx, n: n, names: idx[names : names+20*n],
		offs: idx[offs : offs+4*n], large: idx[offs+4*n : len(idx)-40]}, nil
}

// find returns the offset of object h in the pack.
func (pf *packFile) find(h plumbing.Hash) (int64, bool) {
	fan := func(i int) int { return int(binary.BigEndian.Uint32(pf.idx[8+4*i:])) }
	lo, hi := 0, fan(int(h[0]))
	if h[0] > 0 {
		lo = fan(int(h[0]) - 1)
	}
	if hi > pf.n || lo > hi {
		return 0, false
	}
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := bytes.Compare(pf.names[20*m:20*m+20], h[:]); {
		case c == 0:
			off := binary.BigEndian.Uint32(pf.offs[4*m:])
			if off&(1<<31) == 0 {
				return int64(off), true
			}
			k := 8 * int(off&^(1<<31))
			if k+8 > len(pf.large) {
				return 0, false
			}
			return int64(binary.BigEndian.Uint64(pf.large[k:])), true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return 0, false
}

func (ps *packSet) find(h plumbing.Hash) (*packFile, int64, bool) {
	for _, pf := range ps.packs {
		if off, ok := pf.find(h); ok {
			return pf, off, true
		}
	}
	return nil, 0, false
}

// has reports whether a pack or a loose file holds h.
func (ps *packSet) has(h plumbing.Hash) bool {
	if _, _, ok := ps.find(h); ok {
		return true
	}
	if ps.loose {
		_, err := os.Stat(ps.loosePath(h))
		return err == nil
	}
	return false
}

func (ps *packSet) loosePath(h plumbing.Hash) string {
	s := h.String()
	return filepath.Join(ps.dir, "objects", s[:2], s[2:])
}

// maxChain bounds the delta chains read (git gc --aggressive makes 250).
const maxChain = 1000

// read returns object h's type and contents.
func (ps *packSet) read(h plumbing.Hash, depth int) (plumbing.ObjectType, []byte, error) {
	if pf, off, ok := ps.find(h); ok {
		return ps.readAt(pf, off, depth)
	}
	if ps.loose {
		if t, data, err := readLoose(ps.loosePath(h)); err == nil || !errors.Is(err, os.ErrNotExist) {
			return t, data, err
		}
	}
	return 0, nil, fmt.Errorf("object %s: %w", h, plumbing.ErrObjectNotFound)
}

// readAt reads the pack entry at off, resolving deltas.
func (ps *packSet) readAt(pf *packFile, off int64, depth int) (plumbing.ObjectType, []byte, error) {
	key := baseKey{pf, off}
	if d, ok := ps.cache.get(key); ok {
		return d.typ, d.data, nil
	}
	if depth > maxChain {
		return 0, nil, errors.New("delta chain too long")
	}
	limit := pf.size - 20 - off // the entry ends before the pack's checksum
	if off < 12 || limit <= 0 {
		return 0, nil, fmt.Errorf("pack offset %d out of range", off)
	}
	// One pread covers a small entry whole (most are manifests of a few
	// hundred bytes); a larger one takes a second.
	chunk, err := ps.pread(pf, off, min(limit, 4096))
	if err != nil {
		return 0, nil, err
	}
	p := 0
	next := func() (byte, bool) {
		if p >= len(chunk) {
			return 0, false
		}
		p++
		return chunk[p-1], true
	}
	c, _ := next()
	typ := c >> 4 & 7
	size := int64(c & 0x0f)
	for shift := 4; c&0x80 != 0; shift += 7 {
		var ok bool
		if c, ok = next(); !ok || shift > 56 {
			return 0, nil, errors.New("bad pack entry header")
		}
		size |= int64(c&0x7f) << shift
	}
	if size > maxOwnObject {
		return 0, nil, fmt.Errorf("pack entry of %d bytes", size)
	}
	var baseT plumbing.ObjectType
	var base []byte
	switch typ {
	case objCommit, objTree, objBlob, objTag:
	case objOfsDelta:
		c, ok := next()
		rel := int64(c & 0x7f)
		for ok && c&0x80 != 0 {
			if c, ok = next(); rel > 1<<48 {
				ok = false
			}
			rel = (rel+1)<<7 | int64(c&0x7f)
		}
		if !ok {
			return 0, nil, errors.New("bad delta offset")
		}
		if baseT, base, err = ps.readAt(pf, off-rel, depth+1); err != nil {
			return 0, nil, err
		}
	case objRefDelta:
		if p+20 > len(chunk) {
			return 0, nil, errors.New("truncated delta base")
		}
		id := plumbing.Hash(chunk[p : p+20])
		p += 20
		if baseT, base, err = ps.read(id, depth+1); err != nil {
			return 0, nil, err
		}
	default:
		return 0, nil, fmt.Errorf("pack entry of type %d", typ)
	}
	hdr := int64(p)
	// Deflate never grows data by more than 5 bytes per 16 KiB block,
	// plus the zlib header and checksum.
	// (The base's read reused the buffer: read the entry again.)
	if need := min(limit, hdr+size+size/1024+64); need > int64(len(chunk)) || base != nil {
		if chunk, err = ps.pread(pf, off, need); err != nil {
			return 0, nil, err
		}
	}
	data, err := ps.inflate(chunk[hdr:], size)
	if err != nil {
		return 0, nil, fmt.Errorf("pack entry at %d: %w", off, err)
	}
	t := plumbing.ObjectType(typ)
	if base != nil {
		if data, err = applyDelta(base, data); err != nil {
			return 0, nil, err
		}
		t = baseT
	}
	if depth > 0 {
		ps.cache.put(key, t, data) // a delta base: others of its chain follow
	}
	return t, data, nil
}

// pread reads n bytes of pf at off into the reusable buffer.
func (ps *packSet) pread(pf *packFile, off, n int64) ([]byte, error) {
	if int64(cap(ps.buf)) < n {
		ps.buf = make([]byte, n)
	}
	b := ps.buf[:n]
	if _, err := pf.f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("read pack: %w", err)
	}
	return b, nil
}

// inflate decompresses a zlib stream of exactly size bytes.
func (ps *packSet) inflate(z []byte, size int64) ([]byte, error) {
	ps.br.Reset(z)
	if ps.zr == nil {
		zr, err := zlib.NewReader(&ps.br)
		if err != nil {
			return nil, err
		}
		ps.zr = zr
	} else if err := ps.zr.(zlib.Resetter).Reset(&ps.br, nil); err != nil {
		return nil, err
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(ps.zr, data); err != nil {
		return nil, err
	}
	var one [1]byte
	if n, err := ps.zr.Read(one[:]); n != 0 || err != io.EOF {
		return nil, errors.New("entry longer than its size")
	}
	return data, nil
}

// readLoose reads a loose object file.
func readLoose(p string) (plumbing.ObjectType, []byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	zr, err := zlib.NewReader(bufio.NewReader(f))
	if err != nil {
		return 0, nil, err
	}
	defer zr.Close()
	br := bufio.NewReader(zr)
	hdr, err := br.ReadString(0)
	if err != nil {
		return 0, nil, fmt.Errorf("loose object %s: %w", p, err)
	}
	typ, sz, ok := bytes.Cut([]byte(hdr[:len(hdr)-1]), []byte(" "))
	t, err := plumbing.ParseObjectType(string(typ))
	n, err2 := strconv.ParseInt(string(sz), 10, 64)
	if !ok || err != nil || err2 != nil || n < 0 || n > maxOwnObject {
		return 0, nil, fmt.Errorf("loose object %s: bad header", p)
	}
	data, err := io.ReadAll(io.LimitReader(br, n+1))
	if err != nil || int64(len(data)) != n {
		return 0, nil, fmt.Errorf("loose object %s: bad data", p)
	}
	return t, data, nil
}

// baseCache keeps recently read delta bases, up to baseCacheBytes.
type baseCache struct {
	m     map[baseKey][]byte
	types map[baseKey]plumbing.ObjectType
	order []baseKey
	bytes int
}

type baseKey struct {
	pf  *packFile
	off int64
}

type cached struct {
	typ  plumbing.ObjectType
	data []byte
}

const baseCacheBytes = 64 << 20

func (c *baseCache) get(k baseKey) (cached, bool) {
	d, ok := c.m[k]
	if !ok {
		return cached{}, false
	}
	return cached{c.types[k], d}, true
}

func (c *baseCache) put(k baseKey, t plumbing.ObjectType, data []byte) {
	if _, ok := c.m[k]; ok || len(data) > baseCacheBytes/4 {
		return
	}
	if c.types == nil {
		c.types = map[baseKey]plumbing.ObjectType{}
	}
	for c.bytes+len(data) > baseCacheBytes && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		c.bytes -= len(c.m[old])
		delete(c.m, old)
		delete(c.types, old)
	}
	c.m[k], c.types[k] = data, t
	c.order = append(c.order, k)
	c.bytes += len(data)
}

func (c *baseCache) clear() {
	clear(c.m)
	clear(c.types)
	c.order, c.bytes = nil, 0
}
