package meta

import (
	"bufio"
	"cmp"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
)

// packOut writes a pack as a stream into a temp file under objects/pack:
// the pack's SHA-1 is computed as the bytes go out, and only each entry's
// id, offset and CRC-32 are kept (for the index), so writing a pack costs
// memory in its number of objects, not its size.
type packOut struct {
	pdir string
	f    *os.File
	bw   *bufio.Writer
	h    hash.Hash
	off  uint64
	objs []packObj
}

// newPackOut starts a pack of n entries under dir/objects/pack, of about
// size bytes (for its buffer).
func newPackOut(dir string, n, size int) (*packOut, error) {
	pdir := filepath.Join(dir, "objects", "pack")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(pdir, "tmp_pack_")
	if err != nil {
		return nil, err
	}
	p := &packOut{pdir: pdir, f: f, bw: bufio.NewWriterSize(f, min(max(size, 4<<10), 256<<10)), h: sha1.New(),
		objs: make([]packObj, 0, n)}
	hd := binary.BigEndian.AppendUint32(append(make([]byte, 0, 12), "PACK"...), 2)
	if err := p.write(binary.BigEndian.AppendUint32(hd, uint32(n))); err != nil {
		p.abort()
		return nil, err
	}
	return p, nil
}

// write appends b to the pack.
func (p *packOut) write(b []byte) error {
	p.h.Write(b)
	p.off += uint64(len(b))
	_, err := p.bw.Write(b)
	return err
}

// entry appends a whole entry.
func (p *packOut) entry(id plumbing.Hash, e []byte) error {
	p.objs = append(p.objs, packObj{id: id, crc: crc32.ChecksumIEEE(e), off: p.off})
	return p.write(e)
}

// abort removes the temp file.
func (p *packOut) abort() {
	p.f.Close()
	os.Remove(p.f.Name())
}

// finish ends the pack (its checksum), writes its index and renames both
// into place, pack first; with sync set both are fsync'd before they are
// renamed. It returns the paths made. The pack must hold as many entries
// as newPackOut was told. On an error the temp files are removed.
func (p *packOut) finish(sync bool) (made []string, err error) {
	defer func() {
		if err != nil {
			p.abort()
		}
	}()
	var sum [20]byte
	p.h.Sum(sum[:0])
	if _, err = p.bw.Write(sum[:]); err != nil {
		return nil, err
	}
	if err = p.bw.Flush(); err != nil {
		return nil, err
	}
	if err = p.f.Chmod(0o444); err != nil {
		return nil, err
	}
	if sync {
		if err = p.f.Sync(); err != nil {
			return nil, err
		}
	}
	if err = p.f.Close(); err != nil {
		return nil, err
	}
	idx := encodeIdx(p.objs, sum)
	base := filepath.Join(p.pdir, "pack-"+plumbing.Hash(sum).String())
	itmp := base + ".idx.tmp"
	if err = writeFileSync(itmp, idx, sync); err != nil {
		os.Remove(itmp)
		return nil, err
	}
	if err = os.Rename(p.f.Name(), base+".pack"); err != nil {
		os.Remove(itmp)
		return nil, err
	}
	if err = os.Rename(itmp, base+".idx"); err != nil {
		os.Remove(itmp)
		os.Remove(base + ".pack")
		return nil, err
	}
	return []string{base + ".pack", base + ".idx", p.pdir}, nil
}

// packIn reads a pack through its index for a merge: entries by pread,
// through a window that covers many small entries at once.
type packIn struct {
	base string
	f    *os.File
	objs []packObj // by offset
	ends []uint64  // each entry's end
	w    *window
}

// window is a buffer of pack bytes, shared by the packs of a merge (read
// one after another).
type window struct {
	b     []byte
	owner *packIn
	off   uint64 // offset of b in owner's file
}

const packWindow = 256 << 10

// openPackIn opens the pack at base and checks it against its index (the
// object count, the pack checksum the index names, the entries'
// offsets). The pack's own checksum is not recomputed: see verifyPack.
func openPackIn(base string, w *window) (*packIn, error) {
	ib, err := os.ReadFile(base + ".idx")
	if err != nil {
		return nil, err
	}
	objs, sum, err := parseIdx(ib)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(base + ".pack")
	if err != nil {
		return nil, err
	}
	in := &packIn{base: base, f: f, objs: objs, w: w}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var hd [12]byte
	var tail [20]byte
	bad := fmt.Errorf("meta: pack %s does not match its index", base)
	if st.Size() < 32 {
		f.Close()
		return nil, bad
	}
	if _, err := f.ReadAt(hd[:], 0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.ReadAt(tail[:], st.Size()-20); err != nil {
		f.Close()
		return nil, err
	}
	if string(hd[:4]) != "PACK" || int(binary.BigEndian.Uint32(hd[8:])) != len(objs) || tail != sum {
		f.Close()
		return nil, bad
	}
	slices.SortFunc(objs, func(a, b packObj) int { return cmp.Compare(a.off, b.off) })
	end := uint64(st.Size() - 20)
	in.ends = make([]uint64, len(objs))
	for i, o := range objs {
		e := end
		if i+1 < len(objs) {
			e = objs[i+1].off
		}
		if o.off < 12 || o.off >= e || e > end {
			f.Close()
			return nil, fmt.Errorf("meta: pack %s: bad offset", base)
		}
		in.ends[i] = e
	}
	return in, nil
}

// at returns the pack's bytes [off, off+n), n at most packWindow, valid
// until the next call.
func (in *packIn) at(off uint64, n int) ([]byte, error) {
	w := in.w
	if w.owner == in && off >= w.off && off+uint64(n) <= w.off+uint64(len(w.b)) {
		return w.b[off-w.off:][:n], nil
	}
	if w.b == nil {
		w.b = make([]byte, packWindow)
	}
	w.b = w.b[:cap(w.b)]
	k, err := in.f.ReadAt(w.b, int64(off))
	if k < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		w.owner = nil
		return nil, fmt.Errorf("read pack %s: %w", in.base, err)
	}
	w.b, w.owner, w.off = w.b[:k], in, off
	return w.b[:n], nil
}

// selfContained reports whether the pack's entries can be copied as they
// are into another pack: no offset deltas, and the base of every
// reference delta earlier in the pack itself (as in every pack a flush or
// a merge writes). A merge that copies such packs in order, keeping the
// first copy of each object, keeps every base before its deltas.
func (in *packIn) selfContained() (bool, error) {
	offs := make(map[plumbing.Hash]uint64, len(in.objs))
	for _, o := range in.objs {
		offs[o.id] = o.off
	}
	for i, o := range in.objs {
		b, err := in.at(o.off, int(min(in.ends[i]-o.off, 32)))
		if err != nil {
			return false, err
		}
		t, _, n, ok := entryHeader(b)
		if !ok || t == objOfsDelta {
			return false, nil
		}
		if t != objRefDelta {
			continue
		}
		if len(b) < n+20 {
			return false, nil
		}
		if boff, ok := offs[plumbing.Hash(b[n:n+20])]; !ok || boff >= o.off {
			return false, nil
		}
	}
	return true, nil
}

// copyEntry appends entry i of in to out, checking it against the CRC-32
// its index records.
func (in *packIn) copyEntry(out *packOut, i int) error {
	o := in.objs[i]
	off, end := o.off, in.ends[i]
	out.objs = append(out.objs, packObj{id: o.id, crc: o.crc, off: out.off})
	var crc uint32
	for off < end {
		b, err := in.at(off, int(min(end-off, packWindow)))
		if err != nil {
			return err
		}
		crc = crc32.Update(crc, crc32.IEEETable, b)
		if err := out.write(b); err != nil {
			return err
		}
		off += uint64(len(b))
	}
	if crc != o.crc {
		return fmt.Errorf("meta: pack %s: object %s fails its CRC", in.base, o.id)
	}
	return nil
}

func (in *packIn) close() { in.f.Close() }

// mergePacks writes the entries of the packs at bases that are
// self-contained as one pack (fsync'd, as its index, before they are
// renamed), in the packs' order, each object once (its first copy), and
// returns the paths made (see packOut.finish) and the bases merged. Other
// packs are left out. Nothing is written unless at least two packs
// merge. Entries are streamed from the old packs into the new one, large
// trees made deltas against the directory's previous tree (see
// mergeDeltas; bases oldest first give the smallest deltas): the memory
// used is a few dozen bytes per object plus at most mergeCacheBytes of
// trees.
func mergePacks(dir string, bases []string) (made, merged []string, err error) {
	type item struct {
		in int // index in ins
		i  int // entry of ins[in]
	}
	var (
		ins  []*packIn
		take []item
		seen = map[plumbing.Hash]struct{}{}
		win  window
	)
	defer func() {
		for _, in := range ins {
			in.close()
		}
	}()
	for _, b := range bases {
		in, err := openPackIn(b, &win)
		if err != nil {
			return nil, nil, err
		}
		ok, err := in.selfContained()
		if err != nil || !ok {
			in.close()
			if err != nil {
				return nil, nil, err
			}
			continue
		}
		for i, o := range in.objs {
			if _, dup := seen[o.id]; !dup {
				seen[o.id] = struct{}{}
				take = append(take, item{len(ins), i})
			}
		}
		ins = append(ins, in)
		merged = append(merged, b)
	}
	if len(ins) < 2 {
		return nil, nil, nil
	}
	seen = nil
	out, err := newPackOut(dir, len(take), packWindow)
	if err != nil {
		return nil, nil, err
	}
	md := newMergeDeltas(dir)
	defer md.close()
	for _, t := range take {
		if err := md.copy(ins[t.in], t.i, out); err != nil {
			out.abort()
			return nil, nil, err
		}
	}
	made, err = out.finish(true)
	if err != nil {
		return nil, nil, err
	}
	return made, merged, nil
}

// verifyPack checks the pack at base against its index and its checksum,
// reading it in windows.
func verifyPack(base string) error {
	in, err := openPackIn(base, &window{})
	if err != nil {
		return err
	}
	defer in.close()
	st, err := in.f.Stat()
	if err != nil {
		return err
	}
	h := sha1.New()
	end := uint64(st.Size() - 20)
	for off := uint64(0); off < end; {
		b, err := in.at(off, int(min(end-off, packWindow)))
		if err != nil {
			return err
		}
		h.Write(b)
		off += uint64(len(b))
	}
	tail, err := in.at(end, 20)
	if err != nil {
		return err
	}
	if [20]byte(h.Sum(nil)) != [20]byte(tail) {
		return errors.New("meta: pack checksum mismatch")
	}
	return nil
}
