package piece

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delugefs/delugefs/bt"
)

// ErrVerified is returned (wrapped) by Blob.WriteAt for a write that touches a
// piece already verified: verified data never changes under its readers.
var ErrVerified = errors.New("piece: piece already verified")

// ErrRange is returned (wrapped) for a piece index or byte range outside the
// blob.
var ErrRange = errors.New("piece: out of range")

// When VerifyPiece persists the have-bitfield: after this many bytes of newly
// verified pieces, or when this long has passed since the last write of the
// bitfield. Each persistence costs an fsync of the data and one of the
// bitfield file; between them a crash loses marks (the pieces are
// downloaded again), never adds one.
const (
	flushBytes = 64 << 20
	flushEvery = time.Second
)

// Blob is a blob opened for BitTorrent transfer: a sparse data file of
// Info.Length bytes plus, while it is partial, the set of verified pieces,
// persisted beside it in ROOT/blobs/ab/<hash>.have so that a restart
// resumes without rehashing. When every piece is verified the .have file is
// removed and the blob is complete (Store.Open serves it).
//
// A Blob is safe for concurrent use by any number of readers and one writer
// per piece. ReadAt is a plain pread on the data file with no lock; it
// returns whatever is on disk, so callers check HasPiece first on a partial
// blob.
type Blob struct {
	s    *Store
	info *bt.Info
	hash bt.InfoHash
	n    int // number of pieces

	f        atomic.Pointer[os.File] // the data file; replaced only by adopt
	complete atomic.Bool             // every piece verified, .have removed
	mapp     atomic.Pointer[[]byte]  // mapped, for Map without the lock
	have     []atomic.Uint64         // bit i: piece i verified (in memory)

	refs int // OpenBlob calls not yet closed; guarded by s.mu

	// syncHook, when set (by tests, before use), replaces the fsync of the
	// data file, so a test sees what is persisted at the moment the data
	// is made durable.
	syncHook func(*os.File) error

	// flushMu serialises writes of the .have file and completion. Lock
	// order: flushMu, then s.mu, then mu.
	flushMu sync.Mutex

	mu         sync.Mutex // guards the fields below
	count      int        // pieces verified
	dirtyBytes int64      // bytes of pieces verified since the last persistence
	lastFlush  time.Time  // when the bitfield was last persisted
	removed    bool       // Store.Remove deleted the files: persist nothing more
	closed     bool
	old        []*os.File // data files replaced by adopt, closed by Close
	mapped     []byte     // read-only map of the data file (Map), or nil; also in mapp
	mapFailed  bool       // the data file cannot be mapped: Map reports false
	oldMaps    [][]byte   // maps of replaced data files, unmapped by Close
}

// OpenBlob opens blob info.Hash() for transfer, creating a sparse data file
// and an empty have-bitfield when the store has no copy, resuming a partial
// copy from its persisted bitfield, or opening a complete copy (all pieces
// had). Creating a blob first checks that the disk has room for all of it.
// Opening a blob that is open already returns the same Blob; each OpenBlob
// needs its Close.
func (s *Store) OpenBlob(info *bt.Info) (*Blob, error) {
	if err := checkInfo(info); err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	h := info.Hash()
	s.waitPending(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.open[h]; b != nil {
		b.refs++
		return b, nil
	}
	b, err := s.openBlobLocked(info, h)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", h, err)
	}
	b.refs = 1
	s.open[h] = b
	return b, nil
}

func (s *Store) openBlobLocked(info *bt.Info, h bt.InfoHash) (*Blob, error) {
	n := info.NumPieces()
	b := &Blob{
		s:         s,
		info:      info,
		hash:      h,
		n:         n,
		have:      make([]atomic.Uint64, (n+63)/64),
		lastFlush: time.Now(),
	}
	data, have := s.dataPath(h), s.havePath(h)
	if err := mkdirSynced(filepath.Dir(data)); err != nil {
		return nil, err
	}
	_, dataErr := os.Lstat(data)
	_, haveErr := os.Lstat(have)
	switch {
	case dataErr == nil && errors.Is(haveErr, fs.ErrNotExist):
		f, err := os.Open(data)
		if err != nil {
			return nil, err
		}
		if err := checkSize(f, info.Length); err != nil {
			f.Close()
			return nil, err
		}
		b.f.Store(f)
		b.setAll()
		b.complete.Store(true)
		return b, nil

	case dataErr == nil:
		f, err := os.OpenFile(data, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		b.f.Store(f)
		if err := b.resume(); err != nil {
			f.Close()
			return nil, err
		}
		if b.count == n {
			// Crashed while completing: only the .have removal is missing.
			if err := b.finishLocked(); err != nil {
				f.Close()
				return nil, err
			}
		}
		return b, nil

	case errors.Is(dataErr, fs.ErrNotExist):
		if err := s.checkSpace(info.Length); err != nil {
			return nil, err
		}
		// The .have file first, durably: a data file without one would
		// look complete after a crash.
		if err := b.writeHave(b.haveBytes(), true); err != nil {
			return nil, err
		}
		if err := syncDir(filepath.Dir(data)); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(data, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			err = f.Truncate(info.Length) // sparse: takes no space yet
			if err != nil {
				f.Close()
				os.Remove(data)
			}
		}
		if err != nil {
			os.Remove(have)
			return nil, err
		}
		b.f.Store(f)
		return b, nil

	default:
		return nil, dataErr
	}
}

// checkSize checks that the complete blob file f has length bytes.
func checkSize(f *os.File, length int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != length {
		return fmt.Errorf("piece: blob file has %d bytes, its info says %d", fi.Size(), length)
	}
	return nil
}

// resume loads the persisted bitfield of a partial blob and fixes the data
// file's size. A missing or damaged .have file resumes from nothing.
func (b *Blob) resume() error {
	raw, err := os.ReadFile(b.s.havePath(b.hash))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if bits, ok := decodeHave(raw, b.info, b.hash); ok {
		for i := 0; i < b.n; i++ {
			if bits[i/8]&(0x80>>(i%8)) != 0 {
				b.have[i/64].Or(1 << (i % 64))
				b.count++
			}
		}
	}
	f := b.f.Load()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if size := fi.Size(); size != b.info.Length {
		// Pieces past the old end cannot be on disk.
		for i := 0; i < b.n; i++ {
			if b.info.PieceOffset(i)+b.info.PieceSize(i) > size && b.clearBit(i) {
				b.count--
			}
		}
		if err := f.Truncate(b.info.Length); err != nil {
			return err
		}
	}
	return nil
}

// Info returns the blob's info dictionary.
func (b *Blob) Info() *bt.Info { return b.info }

// Hash returns the blob's info-hash.
func (b *Blob) Hash() bt.InfoHash { return b.hash }

// ReadAt reads from the data file (io.ReaderAt). It takes no lock. On a
// partial blob, bytes of pieces not yet verified are whatever is on disk.
func (b *Blob) ReadAt(p []byte, off int64) (int, error) {
	return b.f.Load().ReadAt(p, off)
}

// Map returns the bytes [off, off+n) of the data file from a read-only
// memory map of it, so that verified pieces are served (say, by a vectored
// write to a socket) without being copied first. Like ReadAt it returns
// what is on disk: check HasPiece on a partial blob (verified pieces never
// change). The slice stays valid until the blob's last Close; do not use it
// after. ok is false when the range is outside the blob or the data file
// cannot be mapped (another platform, no address space): use ReadAt.
func (b *Blob) Map(off, n int64) (p []byte, ok bool) {
	if off < 0 || n < 0 || off+n > b.info.Length || off+n < off {
		return nil, false
	}
	if m := b.mapp.Load(); m != nil {
		return (*m)[off : off+n : off+n], true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mapped == nil && !b.mapFailed && !b.closed {
		m, err := mapFile(b.f.Load(), b.info.Length)
		if err != nil {
			b.mapFailed = true
		} else {
			b.mapped = m
			b.mapp.Store(&m)
		}
	}
	if b.mapped == nil {
		return nil, false
	}
	return b.mapped[off : off+n : off+n], true
}

// WriteAt writes into the data file (io.WriterAt). Writes must stay inside
// the blob and must not touch a verified piece (ErrVerified).
func (b *Blob) WriteAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	end := off + int64(len(p))
	if off < 0 || end > b.info.Length || end < off {
		return 0, fmt.Errorf("write blob %s at %d+%d: %w", b.hash, off, len(p), ErrRange)
	}
	if b.complete.Load() {
		return 0, fmt.Errorf("write blob %s: %w", b.hash, ErrVerified)
	}
	for i := int(off / b.info.PieceLength); i <= int((end-1)/b.info.PieceLength); i++ {
		if b.HasPiece(i) {
			return 0, fmt.Errorf("write blob %s piece %d: %w", b.hash, i, ErrVerified)
		}
	}
	n, err := b.f.Load().WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("write blob %s: %w", b.hash, err)
	}
	return n, nil
}

// HasPiece reports whether piece i is verified. It takes no lock.
func (b *Blob) HasPiece(i int) bool {
	if i < 0 || i >= b.n {
		return false
	}
	return b.have[i/64].Load()&(1<<(i%64)) != 0
}

// Complete reports whether every piece is verified and the blob is complete
// in the store.
func (b *Blob) Complete() bool { return b.complete.Load() }

// Have returns a copy of the set of verified pieces.
func (b *Blob) Have() Bitfield {
	bf, err := ParseBitfield(b.haveBytes(), b.n)
	if err != nil {
		panic(err) // haveBytes keeps the spare bits clear
	}
	return bf
}

// VerifyPiece hashes piece i as it is on disk. If it matches, VerifyPiece
// marks the piece verified and returns true; every so often (and when the
// last piece completes the blob) it makes the data durable and then persists
// the bitfield. If it does not match it returns false and a nil error (the
// caller downloads the piece again) and the piece is unmarked. A non-nil
// error means the piece could not be read, or the bitfield could not be
// persisted (then ok is true: the piece is verified in memory).
//
// On a complete blob VerifyPiece only checks the data (a scrub).
func (b *Blob) VerifyPiece(i int) (ok bool, err error) {
	if i < 0 || i >= b.n {
		return false, fmt.Errorf("verify piece %d of %d: %w", i, b.n, ErrRange)
	}
	ok, err = hashPiece(b.f.Load(), b.info, i)
	if err != nil {
		return false, fmt.Errorf("verify piece %d: %w", i, err)
	}
	if b.complete.Load() {
		return ok, nil
	}
	if !ok {
		if b.clearBit(i) { // verified once, changed on disk since
			b.mu.Lock()
			b.count--
			b.dirtyBytes += b.info.PieceSize(i) // persist the unmarking soon
			b.mu.Unlock()
		}
		return false, nil
	}
	full, due := b.mark(i)
	switch {
	case full:
		err = b.finish()
	case due:
		// Skip when another persistence is running: it or a later
		// VerifyPiece writes this mark.
		if b.flushMu.TryLock() {
			err = b.flushLocked()
			b.flushMu.Unlock()
		}
	}
	if err != nil {
		return true, fmt.Errorf("verify piece %d: %w", i, err)
	}
	return true, nil
}

// mark sets the mark of piece i, whose data is written. It reports whether
// every piece is now verified and whether a persistence is due (see Due).
func (b *Blob) mark(i int) (full, due bool) {
	if !b.setBit(i) {
		return false, false // verified before
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count++
	b.dirtyBytes += b.info.PieceSize(i)
	return b.count == b.n, b.dueLocked()
}

func (b *Blob) dueLocked() bool {
	return b.dirtyBytes > 0 && (b.count == b.n || b.dirtyBytes >= flushBytes || time.Since(b.lastFlush) >= flushEvery)
}

// WritePiece writes the whole piece i (Info.PieceSize(i) bytes of data) and
// marks it verified, if data hashes to the piece's hash: the blob hashes
// exactly the bytes it writes, so a caller that assembled a piece in memory
// spends one hash and one write on it and never reads it back. If data does
// not match, WritePiece writes nothing and returns false and a nil error
// (the caller downloads the piece again, and the bytes on disk stay as they
// were).
//
// WritePiece never waits on fsync: the mark is in memory (HasPiece, Have,
// readers see it at once) until the owner persists it with Sync, which it
// calls when Due reports true, or Close. A crash before then loses the mark
// (the piece is downloaded again), never persists it without its data.
// The last piece does not complete the blob in the store either: Sync (or
// Close) does, once every piece is verified.
//
// On a piece verified already (or a complete blob) WritePiece writes
// nothing and only reports whether data matches.
func (b *Blob) WritePiece(i int, data []byte) (ok bool, err error) {
	if i < 0 || i >= b.n {
		return false, fmt.Errorf("write piece %d of %d: %w", i, b.n, ErrRange)
	}
	if size := b.info.PieceSize(i); int64(len(data)) != size {
		return false, fmt.Errorf("write piece %d: %d bytes for a piece of %d: %w", i, len(data), size, ErrRange)
	}
	if sha1.Sum(data) != b.info.PieceHash(i) {
		return false, nil
	}
	if b.HasPiece(i) || b.complete.Load() {
		return true, nil
	}
	if _, err := b.f.Load().WriteAt(data, b.info.PieceOffset(i)); err != nil {
		return false, fmt.Errorf("write piece %d of blob %s: %w", i, b.hash, err)
	}
	// The mark after the write: a persistence that snapshots the marks
	// and then syncs the data covers every piece in its snapshot.
	b.mark(i)
	return true, nil
}

// Due reports whether marks wait to be persisted and it is time to: this
// many bytes of pieces were verified since the last persistence (64 MiB),
// a second has passed, or every piece is verified (then Sync completes the
// blob). The owner of a blob fed by WritePiece polls it and calls Sync off
// its hot path.
func (b *Blob) Due() bool {
	if b.complete.Load() {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.removed && !b.closed && b.dueLocked()
}

// Sync makes the data written so far durable and persists the bitfield;
// once every piece is verified it completes the blob in the store instead
// (the data made durable and read-only, the .have file removed).
func (b *Blob) Sync() error {
	if err := b.persist(); err != nil {
		return fmt.Errorf("sync blob %s: %w", b.hash, err)
	}
	return nil
}

// persist is Sync without the wrapping.
func (b *Blob) persist() error {
	b.mu.Lock()
	full := b.count == b.n
	b.mu.Unlock()
	if full {
		return b.finish()
	}
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	return b.flushLocked()
}

// Close persists the bitfield and releases the blob (after the last Close
// of a Blob opened several times).
func (b *Blob) Close() error {
	s := b.s
	s.mu.Lock()
	if b.refs <= 0 {
		s.mu.Unlock()
		return fmt.Errorf("close blob %s: %w", b.hash, os.ErrClosed)
	}
	if b.refs > 1 {
		b.refs--
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()

	err := b.persist()

	s.mu.Lock()
	b.refs--
	last := b.refs == 0
	if last && s.open[b.hash] == b {
		delete(s.open, b.hash)
	}
	s.mu.Unlock()
	if !last {
		return nil // reopened meanwhile
	}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("close blob %s: %w", b.hash, os.ErrClosed)
	}
	b.closed = true
	files := append(b.old, b.f.Load())
	b.old = nil
	maps := b.oldMaps
	if b.mapped != nil {
		maps = append(maps, b.mapped)
	}
	b.mapped, b.oldMaps = nil, nil
	b.mapp.Store(nil)
	b.mu.Unlock()
	for _, m := range maps {
		unmapFile(m)
	}
	for _, f := range files {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("close blob %s: %w", b.hash, err)
	}
	return nil
}

// flushLocked makes the data durable and then writes the bitfield, if marks
// were added since the last write. b.flushMu must be held.
func (b *Blob) flushLocked() error {
	b.mu.Lock()
	dirty := b.dirtyBytes
	skip := dirty == 0 || b.removed || b.closed || b.complete.Load()
	if !skip {
		b.dirtyBytes = 0
		b.lastFlush = time.Now()
	}
	b.mu.Unlock()
	if skip {
		return nil
	}
	// The snapshot is taken before the data sync: every piece marked in it
	// was written (and read back by its hash) before its mark was set, so
	// the sync covers it.
	snap := b.haveBytes()
	err := b.syncData(b.f.Load())
	if err == nil {
		err = b.writeHave(snap, false)
	}
	if err != nil {
		b.mu.Lock()
		b.dirtyBytes += dirty
		b.mu.Unlock()
		return fmt.Errorf("persist bitfield: %w", err)
	}
	return nil
}

// finish completes the blob once every piece is verified.
func (b *Blob) finish() error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	if b.stale() {
		return nil
	}
	// The slow part outside the store lock.
	f := b.f.Load()
	if err := b.syncData(f); err != nil {
		return fmt.Errorf("complete blob: %w", err)
	}
	if err := f.Chmod(0o444); err != nil {
		return fmt.Errorf("complete blob: %w", err)
	}
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if b.stale() {
		return nil
	}
	if err := b.finishLocked(); err != nil {
		return fmt.Errorf("complete blob: %w", err)
	}
	return nil
}

// syncData makes the data file f durable.
func (b *Blob) syncData(f *os.File) error {
	if b.syncHook != nil {
		return b.syncHook(f)
	}
	return f.Sync()
}

// stale reports whether the blob's files are no longer the partial blob's
// to change: removed, or complete.
func (b *Blob) stale() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.removed || b.complete.Load()
}

// finishLocked syncs the data, makes it read-only and removes the .have
// file. b.s.mu must be held.
func (b *Blob) finishLocked() error {
	f := b.f.Load()
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Chmod(0o444); err != nil {
		return err
	}
	have := b.s.havePath(b.hash)
	if err := os.Remove(have); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	b.complete.Store(true)
	b.mu.Lock()
	b.dirtyBytes = 0
	b.mu.Unlock()
	return syncDir(filepath.Dir(have))
}

// adopt switches the blob to the complete file at path, which Seal has just
// renamed over the partial data file. b.s.mu must be held.
func (b *Blob) adopt(path string) error {
	nf, err := os.Open(path)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.old = append(b.old, b.f.Load()) // readers may still be using it
	b.f.Store(nf)
	if b.mapped != nil { // a map of the old file: holes where it was partial
		b.oldMaps = append(b.oldMaps, b.mapped)
		b.mapped = nil
		b.mapp.Store(nil)
	}
	b.setAll()
	b.count = b.n
	b.dirtyBytes = 0
	b.complete.Store(true)
	return nil
}

// markRemoved records that Store.Remove deleted the blob's files.
// b.s.mu must be held.
func (b *Blob) markRemoved() {
	b.mu.Lock()
	b.removed = true
	b.mu.Unlock()
}

func (b *Blob) setAll() {
	for i := 0; i < b.n; i++ {
		b.setBit(i)
	}
	b.count = b.n
}

// setBit sets the mark of piece i and reports whether it was clear.
func (b *Blob) setBit(i int) bool {
	m := uint64(1) << (i % 64)
	return b.have[i/64].Or(m)&m == 0
}

// clearBit clears the mark of piece i and reports whether it was set.
func (b *Blob) clearBit(i int) bool {
	m := uint64(1) << (i % 64)
	return b.have[i/64].And(^m)&m != 0
}

// haveBytes returns the marks as a BitTorrent bitfield (piece 0 in the high
// bit of byte 0).
func (b *Blob) haveBytes() []byte {
	out := make([]byte, (b.n+7)/8)
	for w := range b.have {
		v := bits.Reverse64(b.have[w].Load()) // piece 64w+0 in the top bit
		var be [8]byte
		binary.BigEndian.PutUint64(be[:], v)
		copy(out[w*8:], be[:])
	}
	return out
}

// writeHave replaces the .have file with one holding bits: a temporary file
// beside it, fsynced, renamed over it. Unless storeLocked (b.s.mu held by the
// caller), the rename takes b.s.mu and is skipped when the blob was removed
// or completed meanwhile.
func (b *Blob) writeHave(bits []byte, storeLocked bool) error {
	have := b.s.havePath(b.hash)
	tf, err := os.CreateTemp(filepath.Dir(have), filepath.Base(have)+tmpMarker+"*")
	if err != nil {
		return err
	}
	tmp := tf.Name()
	_, err = tf.Write(encodeHave(b.info, b.hash, bits))
	if err == nil {
		err = tf.Sync()
	}
	if cerr := tf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if !storeLocked {
		b.s.mu.Lock()
		defer b.s.mu.Unlock()
		if b.stale() {
			os.Remove(tmp)
			return nil
		}
	}
	// Not fsyncing the directory: if this rename is lost in a crash the
	// previous bitfield, a subset of this one, is still there.
	if err := os.Rename(tmp, have); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// The .have file: magic, info-hash, length, piece length, piece count (all
// big-endian), the bitfield, and a CRC-32C of everything before it.
const haveMagic = "DLGFSHV1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeHave(info *bt.Info, h bt.InfoHash, bits []byte) []byte {
	b := make([]byte, 0, len(haveMagic)+20+24+len(bits)+4)
	b = append(b, haveMagic...)
	b = append(b, h[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(info.Length))
	b = binary.BigEndian.AppendUint64(b, uint64(info.PieceLength))
	b = binary.BigEndian.AppendUint64(b, uint64(info.NumPieces()))
	b = append(b, bits...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeHave returns the bitfield of a .have file if it is intact and made
// for this info.
func decodeHave(raw []byte, info *bt.Info, h bt.InfoHash) ([]byte, bool) {
	n := info.NumPieces()
	want := len(haveMagic) + 20 + 24 + (n+7)/8 + 4
	if len(raw) != want {
		return nil, false
	}
	body, sum := raw[:want-4], binary.BigEndian.Uint32(raw[want-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, false
	}
	head := encodeHave(info, h, nil)
	if !bytes.Equal(body[:len(head)-4], head[:len(head)-4]) {
		return nil, false
	}
	return body[len(head)-4:], true
}

// bufPool holds read buffers for hashing pieces.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// hashPiece reports whether piece i of f matches its hash in info.
func hashPiece(f *os.File, info *bt.Info, i int) (bool, error) {
	off, size := info.PieceOffset(i), info.PieceSize(i)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	h := sha1.New()
	for size > 0 {
		chunk := buf[:min(int64(len(buf)), size)]
		n, err := f.ReadAt(chunk, off)
		h.Write(chunk[:n])
		if n < len(chunk) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return false, err
		}
		off += int64(n)
		size -= int64(n)
	}
	var sum [sha1.Size]byte
	return [20]byte(h.Sum(sum[:0])) == info.PieceHash(i), nil
}
