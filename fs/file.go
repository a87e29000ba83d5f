package fs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/winfsp/cgofuse/fuse"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/piece"
)

// file is an open regular file: what an inode is to a local file system.
// Every handle opened on one path shares one file, so writes through one
// handle are seen by reads through another and a flush commits them all.
type file struct {
	// path is the file's current path, "" once unlinked or renamed over;
	// refs counts its handles. Both are guarded by FS.mu.
	path string
	refs int

	// src is the committed contents reads use while the file is not being
	// written (tmp == nil). Swapped, never mutated; an old blob is closed
	// after the swap, and a read that meets the closed file loads src again.
	src atomic.Pointer[source]

	// writing is true while tmp is not nil: reads then take mu and read tmp.
	writing atomic.Bool
	// changed is true from the first change until it is committed; while it
	// is, getattr shows size and mtime below instead of the snapshot's.
	changed atomic.Bool
	size    atomic.Int64 // length of the new contents while changed
	mtime   atomic.Int64 // unix ns of the last change while changed

	// mu guards the write state below and serialises seals of this file.
	mu  sync.Mutex
	tmp *os.File // the new contents (from Store.TempFile); nil when clean
	// inMem says the new contents are in mem instead of tmp: a small file
	// (at most memMax bytes) is written in memory and its seal stores it
	// with Store.PutSmall, with no temp file to create, write and read
	// back. Past memMax the contents spill into a temp file. memSeq says
	// mem was written in order from byte 0 (a spill then starts a ladder).
	inMem  bool
	mem    []byte
	memSeq bool
	// ladder hashes tmp while it is written in order from byte 0 (see
	// ladder); nil once a write or truncate broke the order.
	ladder *ladder
	// sealed is the info of contents sealed into the store whose commit
	// failed; the next flush retries the commit. Only while changed.
	sealed *bt.Info
	// sealedData is sealed's contents when SealSmall stored it without
	// fsync: the commit attaches them (meta.Tx.AttachBlob), which makes the
	// blob durable with the manifest. nil when Seal made it durable.
	sealedData []byte
	// werr is the first error of a write or truncate since the last commit:
	// the changes are incomplete, so the next flush returns it and drops
	// them instead of committing half a file.
	werr error
	// mode, uid and gid for a commit that finds no entry at the path.
	mode, uid, gid uint32
}

// source is a committed version of a file's contents.
type source struct {
	entry *meta.Entry
	blob  *os.File // complete local blob; nil for an empty file or a remote one
	// mem is the contents of a small blob this node just sealed, which the
	// store writes in the background (piece.Store.PutSmallAsync): reads
	// of this open file are served from it.
	mem []byte
}

// handle is one open(2) of a file.
type handle struct {
	file  *file
	write bool // opened for writing: its flush commits

	// rmu guards remote: the handle's own reader of a blob read from
	// the swarm (RemoteOpener), opened at the first remote read, so each
	// open file has its own read-ahead window.
	rmu    sync.Mutex
	remote RemoteReader
	rinfo  *bt.Info // the blob remote reads
}

// remoteReader returns the handle's reader of info's blob, opening it (or
// replacing one of an older version) on first use; nil when the Remote
// gives no per-handle readers.
func (h *handle) remoteReader(r Remote, info *bt.Info) RemoteReader {
	o, ok := r.(RemoteOpener)
	if !ok {
		return nil
	}
	h.rmu.Lock()
	defer h.rmu.Unlock()
	if h.remote != nil && h.rinfo == info {
		return h.remote
	}
	if h.remote != nil {
		h.remote.Close()
		h.remote = nil
	}
	rr, err := o.OpenRemote(info)
	if err != nil {
		return nil
	}
	h.remote, h.rinfo = rr, info
	return rr
}

// closeRemote closes the handle's remote reader.
func (h *handle) closeRemote() {
	h.rmu.Lock()
	defer h.rmu.Unlock()
	if h.remote != nil {
		h.remote.Close()
		h.remote = nil
	}
}

// openSource opens the blob of e for reading. A blob missing from the store
// gives a source without a blob (the remote side).
func (f *FS) openSource(e *meta.Entry) *source {
	s := &source{entry: e}
	if e.Size > 0 && !e.Hash.IsZero() {
		b, err := f.store.Open(e.Hash)
		if err == nil {
			s.blob = b
		} else if !errors.Is(err, piece.ErrNotFound) {
			f.log.Error("fs: open blob", "hash", e.Hash, "err", err)
		}
	}
	return s
}

// acquire returns the open file at p (entry e), creating it, with one more
// reference.
func (f *FS) acquire(p string, e *meta.Entry) *file {
	f.mu.Lock()
	fl, ok := f.files[p]
	if ok {
		fl.refs++
		f.mu.Unlock()
		// The namespace may have a newer version than the one this open
		// file holds (a truncate by path, a peer's change): refresh a file
		// that is not being changed.
		if old := fl.src.Load(); !fl.changed.Load() && old.entry.Hash != e.Hash {
			fl.mu.Lock()
			if !fl.changed.Load() {
				fl.setSource(f.openSource(e))
			}
			fl.mu.Unlock()
		}
		return fl
	}
	fl = &file{path: p, refs: 1, mode: e.Mode, uid: e.UID, gid: e.GID}
	fl.src.Store(f.openSource(e))
	f.files[p] = fl
	f.nopen.Store(int32(len(f.files)))
	f.mu.Unlock()
	return fl
}

// setSource replaces the committed contents and closes the old blob.
func (fl *file) setSource(s *source) {
	old := fl.src.Swap(s)
	if old != nil && old.blob != nil && (s.blob == nil || old.blob != s.blob) {
		old.blob.Close()
	}
}

// newHandle registers a handle and returns its number.
func (f *FS) newHandle(h *handle) uint64 {
	fh := f.nextFH.Add(1)
	f.handles.Store(fh, h)
	return fh
}

func (f *FS) handle(fh uint64) *handle {
	v, ok := f.handles.Load(fh)
	if !ok {
		return nil
	}
	return v.(*handle)
}

// release drops one reference; the last one closes the blob and throws
// away changes no flush committed.
func (f *FS) release(fl *file) {
	f.mu.Lock()
	last := fl.refs == 1
	f.mu.Unlock()
	if last && fl.changed.Load() {
		// Changed after the last flush: pages of a shared mmap written back
		// after close. Commit them; nobody sees release's errors, so log.
		fl.mu.Lock()
		if err := f.sealLocked(fl); err != nil {
			f.log.Warn("fs: commit at release", "err", err)
		}
		fl.mu.Unlock()
	}
	f.mu.Lock()
	fl.refs--
	last = fl.refs == 0
	if last {
		if fl.path != "" && f.files[fl.path] == fl {
			delete(f.files, fl.path)
			f.nopen.Store(int32(len(f.files)))
		}
	}
	f.mu.Unlock()
	if !last {
		return
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.dropTmp()
	fl.changed.Store(false)
	fl.sealed = nil
	fl.setSource(&source{entry: fl.src.Load().entry})
}

// rollback forgets every uncommitted change: reads see the committed
// version again. fl.mu held.
func (f *FS) rollback(fl *file) {
	fl.dropTmp()
	fl.werr = nil
	fl.changed.Store(false)
	if fl.sealed != nil {
		fl.sealed = nil
		f.mu.Lock()
		p := fl.path
		f.mu.Unlock()
		e, ok := f.lookup(p)
		if p == "" || !ok || e.Kind != meta.KindFile {
			e = &meta.Entry{Kind: meta.KindFile}
		}
		fl.setSource(f.openSource(e))
	}
}

// dropTmp closes and removes the temp file, or forgets the contents in
// memory. fl.mu held.
func (fl *file) dropTmp() {
	if fl.inMem {
		fl.writing.Store(false)
		fl.inMem, fl.mem = false, nil
		return
	}
	if fl.tmp == nil {
		return
	}
	fl.writing.Store(false)
	fl.stopLadder() // before the close: its rungs read tmp
	name := fl.tmp.Name()
	fl.tmp.Close()
	os.Remove(name)
	fl.tmp = nil
}

// stopLadder stops and forgets the ladder. fl.mu held.
func (fl *file) stopLadder() {
	if fl.ladder != nil {
		fl.ladder.stop()
		fl.ladder = nil
	}
}

// readAt reads the file's contents at off into p, through handle h.
func (f *FS) readAt(h *handle, p []byte, off int64) (int, error) {
	fl := h.file
	for {
		if fl.writing.Load() {
			fl.mu.Lock()
			if fl.inMem {
				var n int
				if off < int64(len(fl.mem)) {
					n = copy(p, fl.mem[off:])
				}
				fl.mu.Unlock()
				return n, nil
			}
			if fl.tmp != nil {
				n, err := fl.tmp.ReadAt(p, off)
				fl.mu.Unlock()
				if err == io.EOF {
					err = nil
				}
				return n, err
			}
			fl.mu.Unlock()
		}
		s := fl.src.Load()
		if s.mem != nil {
			var n int
			if off < int64(len(s.mem)) {
				n = copy(p, s.mem[off:])
			}
			return n, nil
		}
		if s.blob != nil {
			n, err := s.blob.ReadAt(p, off)
			if errors.Is(err, os.ErrClosed) {
				continue // swapped under us: load the new source
			}
			if err == io.EOF {
				err = nil
			}
			return n, err
		}
		if s.entry.Size == 0 || off >= s.entry.Size {
			return 0, nil
		}
		return f.readRemote(h, s.entry, p, off)
	}
}

// readRemote reads from the swarm, bounded by RemoteTimeout.
func (f *FS) readRemote(h *handle, e *meta.Entry, p []byte, off int64) (int, error) {
	if f.opts.Remote == nil || e.Info == nil {
		return 0, fmt.Errorf("read blob %s: not on this node and no swarm: %w", e.Hash, errno(fuse.EIO))
	}
	if rest := e.Size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	ctx, cancel := contextWithTimeout(f.opts.RemoteTimeout)
	defer cancel()
	var n int
	var err error
	if rr := h.remoteReader(f.opts.Remote, e.Info); rr != nil {
		n, err = rr.ReadAt(ctx, p, off)
	} else {
		n, err = f.opts.Remote.ReadAt(ctx, e.Info, p, off)
	}
	if err != nil {
		return n, fmt.Errorf("read blob %s from the swarm: %w", e.Hash, err)
	}
	return n, nil
}

// beginWrite makes sure fl has a temp file holding its contents: the
// committed contents are copied in when keep is set (copy_file_range, a
// reflink on file systems that share extents), otherwise it starts empty.
// fl.mu held.
func (f *FS) beginWrite(fl *file, keep bool) error {
	if fl.tmp != nil || fl.inMem {
		return nil
	}
	if s := fl.src.Load(); f.memOK && (!keep || s.entry.Size <= memMax) {
		var buf []byte
		if keep && s.entry.Size > 0 {
			buf = make([]byte, s.entry.Size, max(s.entry.Size, 4096))
			if err := f.readIn(buf, s); err != nil {
				return err
			}
		}
		fl.stopLadder()
		fl.inMem, fl.mem, fl.memSeq = true, buf, len(buf) == 0
		fl.size.Store(int64(len(buf)))
		fl.writing.Store(true)
		return nil
	}
	tmp, err := f.store.TempFile()
	if err != nil {
		return err
	}
	var size int64
	s := fl.src.Load()
	if keep && s.entry.Size > 0 {
		// s is the committed version, or the sealed one awaiting its commit.
		if err := f.copyIn(tmp, s); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return err
		}
		size = s.entry.Size
	}
	fl.tmp = tmp
	fl.stopLadder()
	if size == 0 {
		fl.ladder = newLadder(tmp)
	}
	fl.size.Store(size)
	fl.writing.Store(true)
	return nil
}

// memMax is the largest file written in memory (see file.inMem): the
// largest blob a commit carries in its journal record.
const memMax = piece.MaxSmallBlob

// readIn reads the committed contents s (len(buf) bytes) into buf.
func (f *FS) readIn(buf []byte, s *source) error {
	if s.mem != nil {
		copy(buf, s.mem)
		return nil
	}
	h := s.entry.Hash
	b, err := f.openCommitted(s)
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := b.ReadAt(buf, 0); err != nil {
		return fmt.Errorf("copy blob %s for writing: %w", h, err)
	}
	return nil
}

// spill moves contents written in memory into a temp file, for a file
// that grew past memMax. fl.mu held.
func (f *FS) spill(fl *file) error {
	tmp, err := f.store.TempFile()
	if err != nil {
		return err
	}
	if _, err := tmp.WriteAt(fl.mem, 0); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	fl.tmp = tmp
	if fl.memSeq {
		fl.ladder = newLadder(tmp)
		if !fl.ladder.wrote(fl.mem, 0) {
			fl.stopLadder()
		}
	}
	fl.inMem, fl.mem = false, nil
	return nil
}

// writeMem writes p at off into the contents in memory, spilling them
// into a temp file when they would grow past memMax; it reports whether
// the write was done. fl.mu held.
func (f *FS) writeMem(fl *file, p []byte, off int64) (bool, error) {
	end := off + int64(len(p))
	if end > memMax {
		return false, f.spill(fl)
	}
	if off != int64(len(fl.mem)) {
		fl.memSeq = false
	}
	if end > int64(len(fl.mem)) {
		if end > int64(cap(fl.mem)) {
			grown := make([]byte, len(fl.mem), min(max(2*cap(fl.mem), int(end), 4096), memMax))
			copy(grown, fl.mem)
			fl.mem = grown
		}
		old := len(fl.mem)
		fl.mem = fl.mem[:end]
		if off > int64(old) {
			clear(fl.mem[old:off]) // a hole reads as zeros
		}
	}
	copy(fl.mem[off:], p)
	return true, nil
}

// openCommitted opens the local blob of the committed contents s, to copy
// them for writing: EIO when this node holds no complete copy.
func (f *FS) openCommitted(s *source) (*os.File, error) {
	h := s.entry.Hash
	b, err := f.store.Open(h)
	if errors.Is(err, piece.ErrNotFound) {
		return nil, fmt.Errorf("copy blob %s for writing: not on this node: %w", h, errno(fuse.EIO))
	}
	return b, err
}

// copyIn copies the committed contents s into tmp.
func (f *FS) copyIn(tmp *os.File, s *source) error {
	h := s.entry.Hash
	b, err := f.openCommitted(s)
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := tmp.ReadFrom(b); err != nil {
		return fmt.Errorf("copy blob %s for writing: %w", h, err)
	}
	return nil
}

// markFailed records a failed change: the next seal returns err and drops
// the changes. fl.mu held.
func (fl *file) markFailed(err error) {
	if fl.werr == nil {
		fl.werr = err
	}
	fl.changed.Store(true)
}

// markChanged records a change at time t. fl.mu held.
func (fl *file) markChanged() {
	fl.mtime.Store(now())
	fl.changed.Store(true)
}

// write writes p at off. fl.mu is taken.
func (f *FS) write(fl *file, p []byte, off int64) (int, error) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if !fl.changed.Load() {
		defer f.uncache(fl) // once the change is marked: see keepCache
	}
	if err := f.beginWrite(fl, true); err != nil {
		fl.markFailed(err)
		return 0, err
	}
	if fl.inMem {
		done, err := f.writeMem(fl, p, off)
		if err != nil {
			fl.markFailed(err)
			return 0, err
		}
		if done {
			if end := off + int64(len(p)); end > fl.size.Load() {
				fl.size.Store(end)
			}
			if len(p) > 0 {
				fl.markChanged()
			}
			return len(p), nil
		}
	}
	n, err := fl.tmp.WriteAt(p, off)
	if err != nil && fl.werr == nil {
		fl.werr = err
	}
	if lad := fl.ladder; lad != nil && (n != len(p) || !lad.wrote(p, off)) {
		fl.stopLadder() // out of order: Seal hashes the file
	}
	if n > 0 {
		if end := off + int64(n); end > fl.size.Load() {
			fl.size.Store(end)
		}
		fl.markChanged()
	}
	return n, err
}

// truncate sets the length of fl's contents. fl.mu held.
func (f *FS) truncateLocked(fl *file, size int64) error {
	if !fl.changed.Load() && fl.sealed == nil && size == fl.src.Load().entry.Size && fl.tmp == nil && !fl.inMem {
		return nil // nothing changes (e.g. O_TRUNC of an empty file)
	}
	if !fl.changed.Load() {
		defer f.uncache(fl) // once the change is marked: see keepCache
	}
	if err := f.beginWrite(fl, size > 0); err != nil {
		fl.markFailed(err)
		return err
	}
	if fl.inMem && size > memMax {
		if err := f.spill(fl); err != nil {
			fl.markFailed(err)
			return err
		}
	}
	if fl.inMem {
		switch {
		case size == 0:
			fl.memSeq = true
		case size != int64(len(fl.mem)):
			fl.memSeq = false
		}
		if size <= int64(len(fl.mem)) {
			fl.mem = fl.mem[:size]
		} else {
			fl.mem = append(fl.mem, make([]byte, size-int64(len(fl.mem)))...)
		}
		fl.size.Store(size)
		fl.markChanged()
		return nil
	}
	if err := fl.tmp.Truncate(size); err != nil {
		fl.markFailed(err)
		return err
	}
	switch {
	case size == 0:
		if fl.ladder == nil || fl.ladder.n.Load() != 0 {
			fl.stopLadder()
			fl.ladder = newLadder(fl.tmp)
		}
	case fl.ladder != nil && fl.ladder.n.Load() != size:
		fl.stopLadder()
	}
	fl.size.Store(size)
	fl.markChanged()
	return nil
}

// seal makes fl's changes durable: the temp file becomes a blob (Seal),
// then one commit puts the new manifest, keeping mode, owner and xattrs of
// the entry at the path. Any error rolls the file back to its committed version, so a close that
// failed never becomes a commit later. fl.mu held.
func (f *FS) sealLocked(fl *file) error {
	if !fl.changed.Load() {
		return nil
	}
	if err := f.seal(fl); err != nil {
		f.rollback(fl)
		return err
	}
	return nil
}

func (f *FS) seal(fl *file) error {
	if err := fl.werr; err != nil {
		return err // a write failed (a full disk): the changes are incomplete
	}
	if fl.inMem {
		data := fl.mem
		var info *bt.Info
		if len(data) > 0 {
			// The store writes the blob file in the background (the
			// journal record of the commit below carries the bytes, and
			// the store's Flush runs before any checkpoint retires it):
			// the close does not wait for a file create and rename.
			info = piece.HashSmall(data)
			if err := f.store.PutSmallAsync(info, data); err != nil {
				return err
			}
		}
		f.sealsHashed.Add(1)
		fl.inMem, fl.mem = false, nil
		e := &meta.Entry{Kind: meta.KindFile, Size: int64(len(data)), Info: info}
		if info != nil {
			e.Hash = info.Hash()
		}
		fl.setSource(&source{entry: e, mem: data})
		fl.writing.Store(false)
		fl.sealed, fl.sealedData = info, data
		if info == nil {
			fl.sealed = &bt.Info{} // empty contents, Length 0
		}
	}
	if fl.tmp != nil {
		var known *bt.Info
		size := fl.size.Load()
		if fl.ladder != nil {
			known = fl.ladder.finish(size)
			fl.ladder = nil // finished; a retry hashes the file
		}
		if known != nil {
			f.sealsKnown.Add(1)
		} else {
			f.sealsHashed.Add(1)
		}
		var info *bt.Info
		var data []byte
		var err error
		if size <= meta.MaxAttachedBlob && f.repo.AttachesBlobs() {
			// No fsync: the commit carries the bytes in its journal record.
			info, data, err = f.store.SealSmall(fl.tmp.Name(), known)
		} else {
			info, err = f.store.Seal(fl.tmp.Name(), known)
		}
		if err != nil {
			return err
		}
		// The temp file is a blob now (or gone, for empty contents and
		// duplicates): read from the store from here on.
		fl.tmp.Close()
		fl.tmp = nil
		e := &meta.Entry{Kind: meta.KindFile, Size: size, Info: info}
		if info != nil {
			e.Hash = info.Hash()
		}
		fl.setSource(f.openSource(e))
		fl.writing.Store(false)
		fl.sealed, fl.sealedData = info, data
		if info == nil {
			fl.sealed = &bt.Info{} // empty contents, Length 0
		}
	}
	if err := f.commit(fl); err != nil {
		return err
	}
	fl.sealed, fl.sealedData = nil, nil
	fl.changed.Store(false)
	return nil
}

// commit puts the manifest of fl.sealed at fl's path. fl.mu held.
func (f *FS) commit(fl *file) error {
	f.nsMu.RLock()
	defer f.nsMu.RUnlock()
	f.mu.Lock()
	p := fl.path
	f.mu.Unlock()
	if p == "" {
		return nil // unlinked while open: nothing to keep
	}
	info, data := fl.sealed, fl.sealedData
	if info != nil && info.Length == 0 {
		info = nil
	}
	if info == nil || int64(len(data)) != info.Length {
		data = nil // sealed durably (or stale): nothing to attach
	}
	mtime := fl.mtime.Load()
	var put *meta.Entry
	err := f.update("write "+p, func(tx *meta.Tx) error {
		e := &meta.Entry{Kind: meta.KindFile, Mode: fl.mode, UID: fl.uid, GID: fl.gid}
		if old, ok := tx.Get(p); ok {
			if old.Kind != meta.KindFile {
				return fmt.Errorf("commit %s: %w", p, meta.ErrIsDir)
			}
			e.Mode, e.UID, e.GID, e.Xattrs = old.Mode, old.UID, old.GID, old.Xattrs
		}
		e.Mtime = mtime
		if info != nil {
			e.Info, e.Size, e.Hash = info, info.Length, info.Hash()
		}
		put = e
		if data != nil {
			if err := tx.AttachBlob(info, data); err != nil {
				return err
			}
		}
		return tx.Put(p, e)
	})
	if err != nil {
		return err
	}
	// Keep the blob already open; the entry now has mode and owner too.
	old := fl.src.Load()
	fl.setSource(&source{entry: put, blob: old.blob, mem: old.mem})
	return nil
}
