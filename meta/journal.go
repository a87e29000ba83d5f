package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/delugefs/delugefs/bt"
)

// The journal makes a commit durable with one barrier on one
// pre-allocated file instead of a syncfs or an fsync per object file. On
// Linux the barrier is one O_DIRECT|O_DSYNC write of the blocks that hold
// the new records (kept in memory until then: see the direct mode fields
// of journal); elsewhere, and on file systems that refuse O_DIRECT,
// records are written through the page cache and the barrier is an
// fdatasync.
//
// Each commit appends a record holding the new branch value and the pack
// entries of every object the commit wrote, and fdatasyncs the journal;
// the objects (one pack per flush, pack.go) and the ref are written later,
// without any fsync. The journal is zero-filled when made, so appending
// changes no file metadata and fdatasync costs one data write and one
// cache flush. When the journal is full (or a commit is larger than it) a
// checkpoint syncfs's the repository's filesystem, which makes every pack
// and the ref durable, and starts a new epoch: records of older epochs are
// dead.
//
// Open replays the records of the current epoch: it drops torn packs,
// writes the records' objects as one pack, points the branch at the last
// record's commit, and checkpoints. A torn
// record (crash during the append) fails its CRC and ends the replay; its
// commit was never acknowledged.
//
// A lazy commit (Repo.UpdateLazy) writes its record without the
// fdatasync; the next durable commit's fdatasync (or the one before the
// next flush) makes it durable along with every record before it. Records
// are written in order, so a record that reaches the disk without its
// predecessors (write-back order is free) is never replayed: replay stops
// at the first record that fails its check.
//
// Layout: a 4 KiB header (magic, epoch, CRC), then records from offset
// 4096: magic u32, epoch u64, payload length u32, CRC-32C u32 of (epoch,
// length, payload), payload. Payload: commit id (20 bytes), then per object
// its id (20 bytes), length u32, and its pack entry (type and size header,
// zlib data; a large tree may be a reference delta against a tree of an
// earlier object of the same or an earlier live record, see
// objWriter.writeTree; records of magic recordMagic and recordMagicBlobs,
// written before packs, hold loose-object file bytes instead).
// A record that carries blobs (Tx.AttachBlob) has the magic recordMagicPackBlobs
// and, after the commit id, a blob count u32 and per blob the info
// dictionary's length u32 and bencoding, the data's length u32 and the
// data; the objects follow as above. An operations record
// (Repo.UpdateLogged) has the magic recordMagicOps and, after the commit
// its operations apply to, the blob count and blobs as above, then the
// operations (oplog.go) instead of objects.
type journal struct {
	f     *os.File
	size  int64
	epoch uint64
	off   int64 // where the next record goes
	// broken is set when a commit failed after writing objects: the next
	// commit checkpoints first, so it never relies on an object that was
	// written but never made durable.
	broken bool
	// written and durable count the bytes of records written and made
	// durable since Open, across epochs (log sequence numbers): records
	// are written under the repo's serveMu and synced without it
	// (Repo.drainDurable), so a batch can be applied while the barrier of
	// the one before runs. epochBase is written at the start of the
	// current epoch.
	written, durable atomic.Int64
	epochBase        int64
	// beforeSync, when set (tests), runs at the start of every barrier;
	// its error fails the barrier.
	beforeSync func() error

	// Direct mode (when the file system takes O_DIRECT): records are not
	// written to the page cache but kept in tail, the bytes of the file
	// from tailStart (a block boundary) to off, and a barrier writes them
	// with one O_DIRECT|O_DSYNC pwrite of whole blocks (df): no page
	// cache, no write-back, no separate fdatasync. The first block of
	// tail may hold bytes already durable: it is written again with what
	// follows (the same bytes, so a torn write of it keeps them). tailGen
	// changes with each epoch, so that a barrier that ran across one does
	// not trim the new tail. tail, tailStart and tailGen are guarded by
	// tailMu; scratch (aligned) is used by one barrier at a time (the
	// repo's syncMu).
	df        *os.File
	tailMu    sync.Mutex
	tail      []byte
	tailStart int64
	tailGen   uint64
	scratch   []byte
}

// directBlock is the alignment of direct writes.
const directBlock = 4096

func alignDown(n int64) int64 { return n &^ (directBlock - 1) }
func alignUp(n int64) int64   { return alignDown(n + directBlock - 1) }

// aligned returns a zeroed buffer of n bytes whose start is aligned to
// directBlock.
func aligned(n int) []byte {
	b := make([]byte, n+directBlock)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (directBlock - 1))
	if off != 0 {
		off = directBlock - off
	}
	return b[off : off+n : off+n]
}

// loadTail fills tail with the bytes of the block that holds off, up to
// off (read back from the file), after Open's replay or an epoch.
func (j *journal) loadTail() error {
	if j.df == nil {
		return nil
	}
	j.tailMu.Lock()
	defer j.tailMu.Unlock()
	j.tailStart = alignDown(j.off)
	j.tail = j.tail[:0]
	if n := int(j.off - j.tailStart); n > 0 {
		j.tail = append(j.tail, make([]byte, n)...)
		if _, err := j.f.ReadAt(j.tail, j.tailStart); err != nil {
			return fmt.Errorf("read journal: %w", err)
		}
	}
	j.tailGen++
	return nil
}

// unsynced reports whether records wait for their fdatasync.
func (j *journal) unsynced() bool { return j.written.Load() > j.durable.Load() }

// markDurable records that every byte written up to lsn is durable.
func (j *journal) markDurable(lsn int64) {
	for {
		d := j.durable.Load()
		if lsn <= d || j.durable.CompareAndSwap(d, lsn) {
			return
		}
	}
}

const (
	journalName   = "delugefs.journal"
	journalHeader = 4096
	journalMagic  = "DLGFSJ01"
	recordMagic   = 0x444a5231
	// recordMagicBlobs marks a record that carries attached blobs.
	recordMagicBlobs = 0x444a5232
	// recordMagicPack and recordMagicPackBlobs are the same with pack
	// entries instead of loose-object files (the format written now; the
	// others are read for replay after an upgrade).
	recordMagicPack      = 0x444a5233
	recordMagicPackBlobs = 0x444a5234
	// recordMagicOps marks an operations record (Repo.UpdateLogged): the
	// updates themselves, applied on replay, not the commit that holds them.
	recordMagicOps = 0x444a5235
	recordHead     = 4 + 8 + 4 + 4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// openJournal opens or creates the journal of at least size bytes.
func openJournal(gitDir string, size int64) (*journal, error) {
	p := filepath.Join(gitDir, journalName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j := &journal{f: f, size: size, off: journalHeader}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if st.Size() < size {
		// Zero-fill, so that appends never allocate (fdatasync then has
		// no metadata to write).
		zero := make([]byte, 1<<20)
		for o := st.Size(); o < size; o += int64(len(zero)) {
			n := min(int64(len(zero)), size-o)
			if _, err := f.WriteAt(zero[:n], o); err != nil {
				f.Close()
				return nil, fmt.Errorf("fill journal: %w", err)
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("fill journal: %w", err)
		}
		if err := syncDir(gitDir); err != nil {
			f.Close()
			return nil, err
		}
	} else {
		j.size = st.Size()
	}
	var h [journalHeader]byte
	if _, err := f.ReadAt(h[:], 0); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, fmt.Errorf("read journal: %w", err)
	}
	if string(h[:8]) == journalMagic &&
		crc32.Checksum(h[:16], crcTable) == binary.LittleEndian.Uint32(h[16:20]) {
		j.epoch = binary.LittleEndian.Uint64(h[8:16])
	}
	if j.size%directBlock == 0 {
		j.df = openDirect(p) // nil where the file system refuses O_DIRECT
	}
	if err := j.loadTail(); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// close closes the journal's files.
func (j *journal) close() error {
	var err error
	if j.df != nil {
		err = j.df.Close()
	}
	return errors.Join(err, j.f.Close())
}

// journalRecord is one replayed record: a commit's (head and objects) or,
// when isOps, an operations record (head is the commit its operations
// apply to; ops their encoding, see Tx.logPut).
type journalRecord struct {
	head  plumbing.Hash
	objs  []journalObj
	blobs []journalBlob
	isOps bool
	ops   []byte
}

// journalBlob is the data of a blob attached to a commit.
type journalBlob struct {
	info *bt.Info
	data []byte
}

type journalObj struct {
	id   plumbing.Hash
	file []byte // pack entry (type and size header, zlib data)
	// loose is set for objects of records written before packs: file
	// then holds loose-object file contents.
	loose bool
}

// records returns the valid records of the current epoch, in order.
func (j *journal) records() ([]journalRecord, error) {
	var out []journalRecord
	off := int64(journalHeader)
	var hd [recordHead]byte
	for off+recordHead <= j.size {
		if _, err := j.f.ReadAt(hd[:], off); err != nil {
			return nil, fmt.Errorf("read journal: %w", err)
		}
		magic := binary.LittleEndian.Uint32(hd[0:4])
		if magic < recordMagic || magic > recordMagicOps || binary.LittleEndian.Uint64(hd[4:12]) != j.epoch {
			break
		}
		n := int64(binary.LittleEndian.Uint32(hd[12:16]))
		if n < 20 || off+recordHead+n > j.size {
			break
		}
		payload := make([]byte, n)
		if _, err := j.f.ReadAt(payload, off+recordHead); err != nil {
			return nil, fmt.Errorf("read journal: %w", err)
		}
		c := crc32.Update(crc32.Checksum(hd[4:16], crcTable), crcTable, payload)
		if c != binary.LittleEndian.Uint32(hd[16:20]) {
			break // torn append: never acknowledged
		}
		blobs := magic == recordMagicBlobs || magic == recordMagicPackBlobs || magic == recordMagicOps
		loose := magic == recordMagic || magic == recordMagicBlobs
		rec, ok := parseRecord(payload, blobs, loose, magic == recordMagicOps)
		if !ok {
			break
		}
		out = append(out, rec)
		off += recordHead + n
	}
	j.off = off
	j.epochBase = j.written.Load() - (off - journalHeader)
	if err := j.loadTail(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseRecord(p []byte, withBlobs, loose, ops bool) (journalRecord, bool) {
	var rec journalRecord
	copy(rec.head[:], p[:20])
	p = p[20:]
	if withBlobs {
		if len(p) < 4 {
			return rec, false
		}
		n := binary.LittleEndian.Uint32(p)
		p = p[4:]
		for range n {
			var raw, data []byte
			if raw, p = cut(p); raw == nil {
				return rec, false
			}
			if data, p = cut(p); data == nil {
				return rec, false
			}
			info, err := bt.ParseInfo(raw)
			if err != nil || info.Length != int64(len(data)) {
				return rec, false
			}
			rec.blobs = append(rec.blobs, journalBlob{info: info, data: data})
		}
	}
	if ops {
		rec.isOps, rec.ops = true, p
		return rec, true
	}
	for len(p) > 0 {
		if len(p) < 24 {
			return rec, false
		}
		o := journalObj{loose: loose}
		copy(o.id[:], p[:20])
		n := int(binary.LittleEndian.Uint32(p[20:24]))
		if n > len(p)-24 {
			return rec, false
		}
		o.file = p[24 : 24+n]
		rec.objs = append(rec.objs, o)
		p = p[24+n:]
	}
	return rec, true
}

// cut splits a length-prefixed (u32) field off p; nil when p is too short.
func cut(p []byte) (field, rest []byte) {
	if len(p) < 4 {
		return nil, p
	}
	n := int(binary.LittleEndian.Uint32(p))
	if n > len(p)-4 {
		return nil, p
	}
	return p[4 : 4+n : 4+n], p[4+n:]
}

// encodeRecord builds the record for a commit and the blobs it carries.
func (j *journal) encodeRecord(head plumbing.Hash, objs []journalObj, blobs []journalBlob) []byte {
	magic := uint32(recordMagicPack)
	if len(blobs) > 0 {
		magic = recordMagicPackBlobs
	}
	return j.encode(magic, head, objs, blobs, nil)
}

// encodeOps builds an operations record: the encoded operations of
// updates applied on top of the commit base, and the blobs they attached.
func (j *journal) encodeOps(base plumbing.Hash, ops []byte, blobs []journalBlob) []byte {
	return j.encode(recordMagicOps, base, nil, blobs, ops)
}

// encode builds a record of the given magic; one of recordMagicPackBlobs
// or recordMagicOps has the blob section.
func (j *journal) encode(magic uint32, head plumbing.Hash, objs []journalObj, blobs []journalBlob, ops []byte) []byte {
	withBlobs := magic == recordMagicPackBlobs || magic == recordMagicOps
	n := 20
	infos := make([][]byte, len(blobs))
	if withBlobs {
		n += 4
		for i, bl := range blobs {
			infos[i] = bl.info.Bencode()
			n += 8 + len(infos[i]) + len(bl.data)
		}
	}
	for _, o := range objs {
		n += 24 + len(o.file)
	}
	n += len(ops)
	b := make([]byte, recordHead, recordHead+n)
	binary.LittleEndian.PutUint32(b[0:4], magic)
	binary.LittleEndian.PutUint64(b[4:12], j.epoch)
	binary.LittleEndian.PutUint32(b[12:16], uint32(n))
	b = append(b, head[:]...)
	if withBlobs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(blobs)))
		for i, bl := range blobs {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(infos[i])))
			b = append(b, infos[i]...)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(bl.data)))
			b = append(b, bl.data...)
		}
	}
	for _, o := range objs {
		b = append(b, o.id[:]...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(o.file)))
		b = append(b, o.file...)
	}
	b = append(b, ops...)
	c := crc32.Update(crc32.Checksum(b[4:16], crcTable), crcTable, b[recordHead:])
	binary.LittleEndian.PutUint32(b[16:20], c)
	return b
}

func (j *journal) fits(n int) bool { return j.off+int64(n) <= j.size }

// write writes rec after the last record without making it durable (a
// lazy commit): the next sync does. It returns the log sequence number a
// sync must reach for rec to be durable.
func (j *journal) write(rec []byte) (int64, error) {
	j.tailMu.Lock()
	defer j.tailMu.Unlock()
	if j.df != nil {
		j.tail = append(j.tail, rec...)
	} else if _, err := j.f.WriteAt(rec, j.off); err != nil {
		return 0, fmt.Errorf("append to journal: %w", err)
	}
	j.off += int64(len(rec))
	return j.written.Add(int64(len(rec))), nil
}

// sync makes every record written before it was called durable. It may
// run while another goroutine writes records (those may or may not be
// covered).
func (j *journal) sync() error {
	if j.written.Load() <= j.durable.Load() {
		return nil
	}
	if j.beforeSync != nil {
		if err := j.beforeSync(); err != nil {
			return fmt.Errorf("sync journal: %w", err)
		}
	}
	j.tailMu.Lock()
	lsn := j.written.Load()
	if j.df == nil {
		j.tailMu.Unlock()
		if err := datasync(j.f); err != nil {
			return fmt.Errorf("sync journal: %w", err)
		}
		j.markDurable(lsn)
		return nil
	}
	gen, start, n := j.tailGen, j.tailStart, len(j.tail)
	size := int(alignUp(int64(n)))
	if len(j.scratch) < size {
		j.scratch = aligned(max(size, 2*len(j.scratch), 64<<10))
	}
	buf := j.scratch[:size]
	copy(buf, j.tail)
	clear(buf[n:])
	j.tailMu.Unlock()
	if _, err := j.df.WriteAt(buf, start); errors.Is(err, syscall.EINVAL) {
		return j.leaveDirect(lsn)
	} else if err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	j.tailMu.Lock()
	if j.tailGen == gen {
		// Keep the last, partial block: the next barrier writes it again.
		drop := int(alignDown(start+int64(n)) - start)
		j.tail = append(j.tail[:0], j.tail[drop:]...)
		j.tailStart += int64(drop)
	}
	j.tailMu.Unlock()
	j.markDurable(lsn)
	return nil
}

// leaveDirect switches to buffered writes when a direct write is refused
// (a file system that opens with O_DIRECT but wants another alignment):
// the records kept in memory are written through the page cache and
// synced, and from then on records are written when they are made.
func (j *journal) leaveDirect(lsn int64) error {
	j.tailMu.Lock()
	defer j.tailMu.Unlock()
	if _, err := j.f.WriteAt(j.tail, j.tailStart); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	j.df.Close()
	j.df, j.tail = nil, nil
	if err := datasync(j.f); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	j.markDurable(lsn)
	return nil
}

// newEpoch kills every record: call it only once what they hold is durable
// by other means.
func (j *journal) newEpoch() error {
	var h [20]byte
	copy(h[:8], journalMagic)
	binary.LittleEndian.PutUint64(h[8:16], j.epoch+1)
	binary.LittleEndian.PutUint32(h[16:20], crc32.Checksum(h[:16], crcTable))
	j.tailMu.Lock()
	direct := j.df != nil
	j.tailMu.Unlock()
	if direct {
		b := aligned(journalHeader)
		copy(b, h[:])
		if _, err := j.df.WriteAt(b, 0); err != nil {
			return fmt.Errorf("write journal header: %w", err)
		}
	} else {
		if _, err := j.f.WriteAt(h[:], 0); err != nil {
			return fmt.Errorf("write journal header: %w", err)
		}
		if err := datasync(j.f); err != nil {
			return fmt.Errorf("sync journal header: %w", err)
		}
	}
	j.epoch++
	j.tailMu.Lock()
	j.off = journalHeader
	// Called after a barrier that made everything written durable (the
	// records still in tail hold objects that are in packs now).
	lsn := j.written.Load()
	j.tailMu.Unlock()
	j.markDurable(lsn)
	j.epochBase = lsn
	return j.loadTail()
}
