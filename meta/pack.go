package meta

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/delugefs/delugefs/internal/lowprio"
)

// Objects are written as git pack files: each flush writes the objects of
// the journaled commits it makes visible as one pack (objects/pack/
// pack-<checksum>.pack and its version-2 .idx), undeltified, instead of one
// loose file per object (creating inodes was half of a small-file close's
// CPU). A pack is written to a temp file, then renamed, then its index:
// a reader that finds the index finds the whole pack. When more than
// maxPacks packs exist, the smaller ones are merged into one (consolidate)
// by copying their entries, so lookups stay fast.
//
// Crash rules: a flush's pack holds only objects of journal records that
// are still live (direct flush) or is made durable before the branch moves
// (slow path); a merged pack is fsync'd before the packs it replaces are
// removed. So after a crash only packs of live records can be torn, and
// replay (Repo.replay) checks every pack's checksums, removes the torn
// ones, and writes the records' objects again.

// maxPacks is the number of packs above which the smaller ones are merged.
const maxPacks = 16

// packEntry types (git's OBJ_*).
const (
	objCommit   = 1
	objTree     = 2
	objBlob     = 3
	objTag      = 4
	objOfsDelta = 6
	objRefDelta = 7
)

func packType(typ string) byte {
	switch typ {
	case "commit":
		return objCommit
	case "tree":
		return objTree
	case "tag":
		return objTag
	}
	return objBlob
}

// appendEntryHeader appends a pack entry's type and size header.
func appendEntryHeader(b []byte, typ byte, size int) []byte {
	c := typ<<4 | byte(size&0x0f)
	size >>= 4
	for size > 0 {
		b = append(b, c|0x80)
		c = byte(size & 0x7f)
		size >>= 7
	}
	return append(b, c)
}

// entryHeader parses a pack entry's header: type, size, header length.
func entryHeader(b []byte) (typ byte, size int, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, 0, false
	}
	c := b[0]
	typ = c >> 4 & 7
	size = int(c & 0x0f)
	shift := 4
	n = 1
	for c&0x80 != 0 {
		if n >= len(b) || shift > 56 {
			return 0, 0, 0, false
		}
		c = b[n]
		size |= int(c&0x7f) << shift
		shift += 7
		n++
	}
	return typ, size, n, true
}

// looseToEntry converts the bytes of a loose-object file (the journal's
// format before packs) into a pack entry.
func looseToEntry(file []byte, zw *zlib.Writer) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(file))
	if err != nil {
		return nil, fmt.Errorf("inflate loose object: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("inflate loose object: %w", err)
	}
	sp := bytes.IndexByte(raw, ' ')
	nul := bytes.IndexByte(raw, 0)
	if sp < 0 || nul < sp {
		return nil, errors.New("meta: bad loose object header")
	}
	size, err := strconv.Atoi(string(raw[sp+1 : nul]))
	if err != nil || size != len(raw)-nul-1 {
		return nil, errors.New("meta: bad loose object size")
	}
	var buf bytes.Buffer
	return encodeEntry(&buf, zw, packType(string(raw[:sp])), raw[nul+1:])
}

// encodeEntry compresses data into a pack entry of type typ.
func encodeEntry(buf *bytes.Buffer, zw *zlib.Writer, typ byte, data []byte) ([]byte, error) {
	buf.Reset()
	var hd [16]byte
	buf.Write(appendEntryHeader(hd[:0], typ, len(data)))
	zw.Reset(buf)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil
}

// packObj is an object placed in a pack being written.
type packObj struct {
	id  plumbing.Hash
	crc uint32
	off uint64
}

// writePack writes entries (pack entries, distinct ids) as one pack and
// its index under dir/objects/pack: temp files, then renames (pack first).
// It returns the paths made. With sync set, both files are fsync'd before
// they are renamed.
func writePack(dir string, entries []journalObj, sync bool) ([]string, error) {
	size := 32
	for _, e := range entries {
		size += len(e.file)
	}
	out, err := newPackOut(dir, len(entries), size)
	if err != nil {
		return nil, fmt.Errorf("write pack: %w", err)
	}
	for _, e := range entries {
		if err := out.entry(e.id, e.file); err != nil {
			out.abort()
			return nil, fmt.Errorf("write pack: %w", err)
		}
	}
	made, err := out.finish(sync)
	if err != nil {
		return nil, fmt.Errorf("write pack: %w", err)
	}
	return made, nil
}

func writeFileSync(p string, data []byte, sync bool) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o444)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// encodeIdx builds a version-2 pack index. objs is sorted in place.
func encodeIdx(objs []packObj, packSum [20]byte) []byte {
	slices.SortFunc(objs, func(a, b packObj) int { return bytes.Compare(a.id[:], b.id[:]) })
	b := make([]byte, 0, 8+256*4+len(objs)*28+40)
	b = append(b, 0xff, 't', 'O', 'c', 0, 0, 0, 2)
	var fan [256]uint32
	for _, o := range objs {
		fan[o.id[0]]++
	}
	var c uint32
	for i := range fan {
		c += fan[i]
		b = binary.BigEndian.AppendUint32(b, c)
	}
	for _, o := range objs {
		b = append(b, o.id[:]...)
	}
	for _, o := range objs {
		b = binary.BigEndian.AppendUint32(b, o.crc)
	}
	var large []uint64
	for _, o := range objs {
		if o.off < 1<<31 {
			b = binary.BigEndian.AppendUint32(b, uint32(o.off))
		} else {
			b = binary.BigEndian.AppendUint32(b, 1<<31|uint32(len(large)))
			large = append(large, o.off)
		}
	}
	for _, off := range large {
		b = binary.BigEndian.AppendUint64(b, off)
	}
	b = append(b, packSum[:]...)
	sum := sha1.Sum(b)
	return append(b, sum[:]...)
}

// parseIdx reads a version-2 pack index and checks its checksum; it
// returns the objects in index (id) order and the pack's checksum.
func parseIdx(b []byte) ([]packObj, [20]byte, error) {
	var packSum [20]byte
	bad := errors.New("meta: bad pack index")
	if len(b) < 8+1024+40 || !bytes.Equal(b[:8], []byte{0xff, 't', 'O', 'c', 0, 0, 0, 2}) {
		return nil, packSum, bad
	}
	if sha1.Sum(b[:len(b)-20]) != [20]byte(b[len(b)-20:]) {
		return nil, packSum, errors.New("meta: pack index checksum mismatch")
	}
	n := int(binary.BigEndian.Uint32(b[8+255*4:]))
	names := 8 + 1024
	crcs := names + 20*n
	offs := crcs + 4*n
	large := offs + 4*n
	if large+40 > len(b) {
		return nil, packSum, bad
	}
	objs := make([]packObj, n)
	for i := range objs {
		copy(objs[i].id[:], b[names+20*i:])
		objs[i].crc = binary.BigEndian.Uint32(b[crcs+4*i:])
		off := binary.BigEndian.Uint32(b[offs+4*i:])
		if off&(1<<31) == 0 {
			objs[i].off = uint64(off)
			continue
		}
		k := large + 8*int(off&^(1<<31))
		if k+8 > len(b)-40 {
			return nil, packSum, bad
		}
		objs[i].off = binary.BigEndian.Uint64(b[k:])
	}
	copy(packSum[:], b[len(b)-40:])
	return objs, packSum, nil
}

// packNames lists the packs under dir/objects/pack that have an index
// (paths without the extension).
func packNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "objects", "pack"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".idx"); ok && strings.HasPrefix(n, "pack-") {
			out = append(out, filepath.Join(dir, "objects", "pack", n))
		}
	}
	return out, nil
}

// cleanPacks removes what a crash can leave in objects/pack: temp files
// and packs without an index. With verify set it also checks every pack
// against its index and checksums and removes those that fail (torn by a
// crash: see the crash rules above).
func cleanPacks(dir string, verify bool) error {
	pdir := filepath.Join(dir, "objects", "pack")
	ents, err := os.ReadDir(pdir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list packs: %w", err)
	}
	have := map[string]bool{}
	for _, e := range ents {
		have[e.Name()] = true
	}
	// Packs a consolidation replaced before the last stop: a merged pack
	// that was durable before the marker was made holds their objects.
	for _, e := range ents {
		if base, ok := strings.CutSuffix(e.Name(), retiredSuffix); ok {
			if err := removeRetired(filepath.Join(pdir, base)); err != nil {
				return err
			}
			delete(have, base+".idx")
			delete(have, base+".pack")
		}
	}
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(pdir, name)
		if !have[name] && (strings.HasSuffix(name, ".idx") || strings.HasSuffix(name, ".pack")) {
			continue // retired, removed above
		}
		switch {
		case strings.HasPrefix(name, "tmp_pack_") || strings.HasSuffix(name, ".idx.tmp"):
			os.Remove(p)
		case strings.HasSuffix(name, ".pack") && !have[strings.TrimSuffix(name, ".pack")+".idx"]:
			os.Remove(p)
		case verify && strings.HasSuffix(name, ".idx"):
			base := strings.TrimSuffix(p, ".idx")
			if err := verifyPack(base); err != nil {
				if err := os.Remove(p); err != nil {
					return fmt.Errorf("remove torn pack: %w", err)
				}
				os.Remove(base + ".pack")
			}
		}
	}
	return nil
}

// readPack reads the pack at base (.pack and .idx) and returns its entries
// in pack order; with verify set it checks the pack's checksum too (the
// index's is always checked). Delta entries are returned as they are (file
// holds the raw entry).
func readPack(base string, verify bool) ([]journalObj, error) {
	ib, err := os.ReadFile(base + ".idx")
	if err != nil {
		return nil, fmt.Errorf("read pack index: %w", err)
	}
	objs, sum, err := parseIdx(ib)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", base, err)
	}
	pb, err := os.ReadFile(base + ".pack")
	if err != nil {
		return nil, fmt.Errorf("read pack: %w", err)
	}
	if len(pb) < 32 || string(pb[:4]) != "PACK" || int(binary.BigEndian.Uint32(pb[8:12])) != len(objs) ||
		[20]byte(pb[len(pb)-20:]) != sum || verify && sha1.Sum(pb[:len(pb)-20]) != sum {
		return nil, fmt.Errorf("meta: pack %s does not match its index", base)
	}
	slices.SortFunc(objs, func(a, b packObj) int { return int(int64(a.off) - int64(b.off)) })
	out := make([]journalObj, len(objs))
	for i, o := range objs {
		end := uint64(len(pb) - 20)
		if i+1 < len(objs) {
			end = objs[i+1].off
		}
		if o.off < 12 || o.off >= end || end > uint64(len(pb)-20) {
			return nil, fmt.Errorf("meta: pack %s: bad offset", base)
		}
		out[i] = journalObj{id: o.id, file: pb[o.off:end]}
	}
	return out, nil
}

// consolidate merges the smaller packs into one when more than maxPacks
// exist, keeping every object (mergePacks: entries streamed from the old
// packs into the new one): the merged pack is written and fsync'd (with
// its directory) before the packs it replaces are retired (removed after
// retireAfter, index first). Packs that are not self-contained (offset
// deltas, made by git gc, say) are left alone.
//
// With w.background set (a Repo's writer) the merge runs on a goroutine of
// the lowest CPU priority (internal/lowprio) while updates go on: a merge
// takes tens of milliseconds, and seconds for a big history, which every
// close waited for when it ran under the repository's lock. consolidate
// only starts it; a later call (the next flush) takes the result
// (finishMerge), and waitMerge (Close) waits for it. Without background
// (tests) consolidate merges and finishes at once.
func (w *objWriter) consolidate() error {
	w.dropRetired(time.Now())
	if w.merge != nil {
		select {
		case <-w.merge.done:
			if err := w.finishMerge(); err != nil {
				return err
			}
		default:
			return nil // still merging
		}
	}
	if w.packs <= maxPacks {
		return nil
	}
	all, err := packNames(w.dir)
	if err != nil {
		return err
	}
	var names []string
	for _, n := range all {
		if _, old := w.retired[n]; !old {
			names = append(names, n)
		}
	}
	w.packs = len(names)
	if len(names) <= maxPacks {
		return nil
	}
	type pack struct {
		base string
		size int64
		mod  time.Time
	}
	var ps []pack
	for _, n := range names {
		st, err := os.Stat(n + ".pack")
		if err != nil {
			return fmt.Errorf("consolidate packs: %w", err)
		}
		ps = append(ps, pack{n, st.Size(), st.ModTime()})
	}
	slices.SortFunc(ps, func(a, b pack) int { return int(a.size - b.size) })
	// Geometric: merge the smallest packs up to the last one that is not
	// at least twice the size of all the packs smaller than it, so the
	// packs left keep doubling and each object is copied O(log n) times.
	k, below := 0, int64(0)
	for i, p := range ps {
		if p.size < 2*below {
			k = i + 1
		}
		below += p.size
	}
	k = max(k, len(ps)-maxPacks/2)
	// Oldest first (a merged pack is younger than what it holds, older
	// than what was written after it): each directory's trees then pass
	// in the order they were made, and each is a small delta against the
	// one before.
	sel := slices.Clone(ps[:k])
	slices.SortStableFunc(sel, func(a, b pack) int { return a.mod.Compare(b.mod) })
	bases := make([]string, k)
	for i, p := range sel {
		bases[i] = p.base
	}
	var merged int64
	for _, p := range sel {
		merged += p.size
	}
	m := &mergeJob{done: make(chan struct{}), merged: merged}
	w.merge = m
	dir := w.dir
	run := func() {
		defer close(m.done)
		m.made, m.gone, m.err = mergePacks(dir, bases)
		if m.err == nil && m.made != nil {
			m.err = syncDir(m.made[2])
		}
	}
	if !w.background {
		run()
		return w.finishMerge()
	}
	hook := w.mergeHook
	go func() { // ends with the merge
		lowprio.Lower()
		if hook != nil {
			hook()
		}
		run()
	}()
	return nil
}

// mergeJob is a consolidation's merge, running or done (done closed):
// the files it made and the packs it replaced, or its error.
type mergeJob struct {
	done       chan struct{}
	merged     int64 // bytes of the packs merged
	made, gone []string
	err        error
}

// waitMerge waits for a running merge and takes its result.
func (w *objWriter) waitMerge() error {
	if w.merge == nil {
		return nil
	}
	<-w.merge.done
	return w.finishMerge()
}

// finishMerge retires the packs a finished merge replaced.
func (w *objWriter) finishMerge() error {
	m := w.merge
	w.merge = nil
	if m.err != nil {
		return fmt.Errorf("consolidate packs: %w", m.err)
	}
	made, gone := m.made, m.gone
	if made == nil {
		return nil
	}
	newBase := strings.TrimSuffix(made[0], ".pack")
	if w.retired == nil {
		w.retired = map[string]time.Time{}
	}
	for _, b := range gone {
		if b == newBase {
			continue // the same objects in the same order: the same pack
		}
		// The marker makes the next Open remove the pack if this process
		// stops before it does (a lost marker leaves a duplicate that a
		// later consolidation merges).
		if err := os.WriteFile(b+retiredSuffix, nil, 0o444); err != nil {
			return fmt.Errorf("consolidate packs: %w", err)
		}
		w.retired[b] = time.Now()
	}
	// Packs written while it merged count too.
	w.packs = w.packs - len(gone) + 1
	w.packGen++
	if m.merged >= 16<<20 {
		// A big merge went through its caches and buffers: hand the
		// memory back to the OS now rather than carry it as RSS until the
		// scavenger gets to it (merges this big are rare: geometric).
		debug.FreeOSMemory()
	}
	return nil
}

// retireAfter is how long a pack replaced by a consolidation stays on disk
// for readers that listed the packs before it (a stateless git fetch reads
// the refs in one request and the objects in the next).
const retireAfter = 30 * time.Second

// retiredSuffix names the marker file of a pack a consolidation replaced
// (base + retiredSuffix): Open removes the pack (cleanPacks).
const retiredSuffix = ".retired"

// dropRetired removes the replaced packs older than retireAfter, index
// first, then the marker.
func (w *objWriter) dropRetired(now time.Time) {
	for b, when := range w.retired {
		if now.Sub(when) < retireAfter {
			continue
		}
		if removeRetired(b) == nil {
			delete(w.retired, b)
			w.packGen++
		}
	}
}

// removeRetired removes the retired pack at base: index, pack, marker.
func removeRetired(base string) error {
	for _, ext := range []string{".idx", ".pack", retiredSuffix} {
		if err := os.Remove(base + ext); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove retired pack: %w", err)
		}
	}
	return nil
}

// maxDeltaDepth bounds the delta chains writeTree makes (a reader applies
// that many deltas to rebuild a tree).
const maxDeltaDepth = 50

// makeDelta encodes target as a git delta against src: the common prefix
// and suffix copied, the middle inserted.
func makeDelta(src, dst []byte) []byte {
	p := 0
	for p < len(src) && p < len(dst) && src[p] == dst[p] {
		p++
	}
	s := 0
	for s < len(src)-p && s < len(dst)-p && src[len(src)-1-s] == dst[len(dst)-1-s] {
		s++
	}
	d := appendVarint(nil, len(src))
	d = appendVarint(d, len(dst))
	d = appendCopy(d, 0, p)
	d = appendInsert(d, dst[p:len(dst)-s])
	return appendCopy(d, len(src)-s, s)
}

func appendVarint(b []byte, n int) []byte {
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

// appendCopy appends copy instructions for src[off:off+n], in chunks of at
// most 64 KiB (a size of 0x10000 is encoded as no size bytes).
func appendCopy(b []byte, off, n int) []byte {
	for n > 0 {
		c := min(n, 0x10000)
		op := byte(0x80)
		var args []byte
		for i := range 4 {
			if v := byte(off >> (8 * i)); v != 0 {
				op |= 1 << i
				args = append(args, v)
			}
		}
		if c != 0x10000 {
			for i := range 3 {
				if v := byte(c >> (8 * i)); v != 0 {
					op |= 0x10 << i
					args = append(args, v)
				}
			}
		}
		b = append(b, op)
		b = append(b, args...)
		off += c
		n -= c
	}
	return b
}

// applyDelta rebuilds a delta's target from its base.
func applyDelta(src, d []byte) ([]byte, error) { return applyDeltaTo(nil, src, d) }

// applyDeltaTo is applyDelta appending to out (which must not overlap src).
func applyDeltaTo(out, src, d []byte) ([]byte, error) {
	bad := errors.New("meta: bad delta")
	varint := func() (int, bool) {
		n, shift := 0, 0
		for len(d) > 0 && shift < 63 {
			c := d[0]
			d = d[1:]
			n |= int(c&0x7f) << shift
			shift += 7
			if c&0x80 == 0 {
				return n, true
			}
		}
		return 0, false
	}
	ss, ok1 := varint()
	ts, ok2 := varint()
	if !ok1 || !ok2 || ss != len(src) || ts > 1<<30 {
		return nil, bad
	}
	if out == nil {
		out = make([]byte, 0, ts)
	}
	start := len(out)
	for len(d) > 0 {
		op := d[0]
		d = d[1:]
		if op&0x80 == 0 {
			n := int(op)
			if n == 0 || n > len(d) {
				return nil, bad
			}
			out = append(out, d[:n]...)
			d = d[n:]
			continue
		}
		var off, size int
		for i := range 7 {
			if op&(1<<i) == 0 {
				continue
			}
			if len(d) == 0 {
				return nil, bad
			}
			if i < 4 {
				off |= int(d[0]) << (8 * i)
			} else {
				size |= int(d[0]) << (8 * (i - 4))
			}
			d = d[1:]
		}
		if size == 0 {
			size = 0x10000
		}
		if off+size > len(src) {
			return nil, bad
		}
		out = append(out, src[off:off+size]...)
	}
	if len(out)-start != ts {
		return nil, bad
	}
	return out, nil
}
