package fs

import (
	"os"
	"strings"

	"github.com/winfsp/cgofuse/fuse"

	"github.com/delugefs/delugefs/meta"
)

// noFH is the handle cgofuse passes when there is none.
const noFH = ^uint64(0)

// blockSize is st_blksize: the I/O size cp and friends use.
const blockSize = 1 << 20

// hiddenPrefix starts the names libfuse gives files it hides instead of
// unlinking them while open (no hard_remove; see the package doc).
const hiddenPrefix = ".fuse_hidden"

func isHidden(p string) bool { return strings.HasPrefix(base(p), hiddenPrefix) }

// rootEntry stands in for the root of a namespace that has none yet.
var rootEntry = &meta.Entry{Kind: meta.KindDir, Mode: 0o755}

// lookup returns the entry at p from the current snapshot.
func (f *FS) lookup(p string) (*meta.Entry, bool) {
	e, ok := f.repo.Snapshot().Get(p)
	if !ok && p == "" {
		return rootEntry, true
	}
	return e, ok
}

// fillStat sets st from e.
func fillStat(st *fuse.Stat_t, e *meta.Entry) {
	*st = fuse.Stat_t{Uid: e.UID, Gid: e.GID, Nlink: 1, Size: e.Size, Blksize: blockSize}
	switch e.Kind {
	case meta.KindDir:
		st.Mode = fuse.S_IFDIR | e.Mode&0o7777
		st.Nlink = 2
	case meta.KindSymlink:
		st.Mode = fuse.S_IFLNK | 0o777
	default:
		st.Mode = fuse.S_IFREG | e.Mode&0o7777
	}
	ts := fuse.Timespec{Sec: e.Mtime / 1e9, Nsec: e.Mtime % 1e9}
	st.Atim, st.Mtim, st.Ctim, st.Birthtim = ts, ts, ts, ts
	st.Blocks = (st.Size + 511) / 512
}

// overlay shows the size and mtime of a file being changed.
func overlay(st *fuse.Stat_t, fl *file) {
	if fl == nil || !fl.changed.Load() {
		return
	}
	st.Size = fl.size.Load()
	st.Blocks = (st.Size + 511) / 512
	m := fl.mtime.Load()
	st.Mtim = fuse.Timespec{Sec: m / 1e9, Nsec: m % 1e9}
	st.Ctim = st.Mtim
}

// openFile returns the open file at p, if any.
func (f *FS) openFile(p string) *file {
	if f.nopen.Load() == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.files[p]
}

// Getattr reads the snapshot (never waiting on the writer), with the size
// and mtime of a file being written taken from its open file.
func (f *FS) Getattr(path string, st *fuse.Stat_t, fh uint64) int {
	p := rel(path)
	if fh != noFH {
		if h := f.handle(fh); h != nil {
			fillStat(st, h.file.src.Load().entry)
			if e, ok := f.lookup(p); ok && e.Kind == meta.KindFile && !isHidden(p) {
				fillStat(st, e)
			}
			overlay(st, h.file)
			return 0
		}
	}
	if nameTooLong(p) {
		return -fuse.ENAMETOOLONG
	}
	e, ok := f.lookup(p)
	if !ok {
		if fl := f.hiddenFile(p); fl != nil {
			fillStat(st, fl.src.Load().entry)
			overlay(st, fl)
			return 0
		}
		return -fuse.ENOENT
	}
	fillStat(st, e)
	if e.Kind == meta.KindFile {
		overlay(st, f.openFile(p))
	}
	return 0
}

// hiddenFile returns the open file libfuse hid at p, if any.
func (f *FS) hiddenFile(p string) *file {
	if !isHidden(p) {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hidden[p]
}

// Access checks existence only: with default_permissions the kernel checks
// the mode bits itself.
func (f *FS) Access(path string, mask uint32) int {
	if _, ok := f.lookup(rel(path)); !ok {
		return -fuse.ENOENT
	}
	return 0
}

// Statfs reports the space of the store's disk.
func (f *FS) Statfs(path string, st *fuse.Statfs_t) int {
	total, free, err := f.store.Space()
	if err != nil {
		return f.errno("statfs", path, err)
	}
	const bs = 4096
	files := uint64(f.repo.Snapshot().Len())
	*st = fuse.Statfs_t{
		Bsize: bs, Frsize: bs, Blocks: total / bs, Bfree: free / bs, Bavail: free / bs,
		Files: files + 1<<32, Ffree: 1 << 32, Favail: 1 << 32, Namemax: meta.MaxNameLen,
	}
	return 0
}

// Opendir checks that path is a directory.
func (f *FS) Opendir(path string) (int, uint64) {
	e, ok := f.lookup(rel(path))
	switch {
	case !ok:
		return -fuse.ENOENT, noFH
	case e.Kind != meta.KindDir:
		return -fuse.ENOTDIR, noFH
	}
	return 0, 0
}

// Readdir lists a directory from the snapshot in one pass, with each
// entry's attributes (readdirplus: ls -l needs no lookup per entry).
func (f *FS) Readdir(path string, fill func(name string, stat *fuse.Stat_t, ofst int64) bool,
	ofst int64, fh uint64) int {
	p := rel(path)
	snap := f.repo.Snapshot()
	ents, ok := snap.ReadDir(p)
	if !ok {
		if p == "" {
			ents = nil
		} else if _, exists := snap.Get(p); exists {
			return -fuse.ENOTDIR
		} else {
			return -fuse.ENOENT
		}
	}
	// "." and ".." go without attributes (the kernel asks getattr for both
	// anyway): a "." carrying the directory's stat went missing from
	// getdents on a mounted volume, cause not pinned down.
	if !fill(".", nil, 0) || !fill("..", nil, 0) {
		return 0
	}
	prefix := p + "/"
	if p == "" {
		prefix = ""
	}
	for _, de := range ents {
		st := new(fuse.Stat_t)
		fillStat(st, de.Entry)
		if de.Entry.Kind == meta.KindFile {
			overlay(st, f.openFile(prefix+de.Name))
		}
		if !fill(de.Name, st, 0) {
			break
		}
	}
	return 0
}

// Mkdir creates a directory owned by the caller.
func (f *FS) Mkdir(path string, mode uint32) int {
	p := rel(path)
	if nameTooLong(p) {
		return -fuse.ENAMETOOLONG
	}
	uid, gid := owner()
	e := &meta.Entry{Kind: meta.KindDir, Mode: mode & 0o7777, UID: uid, GID: gid, Mtime: now()}
	return f.errno("mkdir", p, f.update("mkdir "+p, func(tx *meta.Tx) error {
		if _, ok := tx.Get(p); ok {
			return meta.ErrExist
		}
		return tx.Put(p, e)
	}))
}

// Rmdir removes an empty directory.
func (f *FS) Rmdir(path string) int {
	p := rel(path)
	f.nsMu.Lock()
	defer f.nsMu.Unlock()
	return f.errno("rmdir", p, f.update("rmdir "+p, func(tx *meta.Tx) error {
		e, ok := tx.Get(p)
		switch {
		case !ok:
			return meta.ErrNotExist
		case e.Kind != meta.KindDir:
			return meta.ErrNotDir
		}
		return tx.Remove(p)
	}))
}

// Unlink removes a file or symlink. A file still open keeps its contents
// for its handles until the last one is closed.
func (f *FS) Unlink(path string) int {
	p := rel(path)
	if isHidden(p) {
		f.mu.Lock()
		_, ok := f.hidden[p]
		delete(f.hidden, p)
		f.mu.Unlock()
		if ok {
			return 0
		}
	}
	f.nsMu.Lock()
	defer f.nsMu.Unlock()
	err := f.update("unlink "+p, func(tx *meta.Tx) error {
		e, ok := tx.Get(p)
		switch {
		case !ok:
			return meta.ErrNotExist
		case e.Kind == meta.KindDir:
			return meta.ErrIsDir
		}
		return tx.Remove(p)
	})
	if err != nil {
		return f.errno("unlink", p, err)
	}
	f.detach(p)
	f.uncacheRename(p, p)
	return 0
}

// detach forgets the path of the open file at p. nsMu held.
func (f *FS) detach(p string) *file {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.files[p]
	if fl != nil {
		delete(f.files, p)
		f.nopen.Store(int32(len(f.files)))
		fl.path = ""
	}
	return fl
}

// Rename renames files, symlinks and directories (with their contents),
// replacing an existing target as rename(2) does, in one commit.
func (f *FS) Rename(oldpath, newpath string) int { return f.Rename3(oldpath, newpath, 0) }

// Linux rename flags.
const (
	renameNoReplace = 1
	renameExchange  = 2
)

// Rename3 is Rename with renameat2 flags: RENAME_NOREPLACE is supported,
// RENAME_EXCHANGE is not (EINVAL).
func (f *FS) Rename3(oldpath, newpath string, flags uint32) int {
	from, to := rel(oldpath), rel(newpath)
	if flags&^renameNoReplace != 0 {
		return -fuse.EINVAL
	}
	if nameTooLong(to) {
		return -fuse.ENAMETOOLONG
	}
	if from == to {
		return 0
	}
	if to == "" || strings.HasPrefix(to, from+"/") {
		return -fuse.EINVAL
	}
	f.nsMu.Lock()
	defer f.nsMu.Unlock()
	if isHidden(to) {
		// libfuse hides a file that is unlinked or renamed over while open:
		// commit the removal and keep the open file under the hidden name.
		if err := f.update("unlink "+from, func(tx *meta.Tx) error {
			e, ok := tx.Get(from)
			switch {
			case !ok:
				return meta.ErrNotExist
			case e.Kind == meta.KindDir:
				return meta.ErrIsDir
			}
			return tx.Remove(from)
		}); err != nil {
			return f.errno("rename", from, err)
		}
		if fl := f.detach(from); fl != nil {
			f.mu.Lock()
			f.hidden[to] = fl
			f.mu.Unlock()
		}
		f.uncacheRename(from, to)
		return 0
	}
	err := f.update("rename "+from+" -> "+to, func(tx *meta.Tx) error {
		if flags&renameNoReplace != 0 {
			if _, ok := tx.Get(to); ok {
				return meta.ErrExist
			}
		}
		return tx.Rename(from, to)
	})
	if err != nil {
		return f.errno("rename", from, err)
	}
	f.detach(to)
	f.mu.Lock()
	for p, fl := range f.files {
		if p == from || strings.HasPrefix(p, from+"/") {
			np := to + p[len(from):]
			delete(f.files, p)
			fl.path = np
			f.files[np] = fl
		}
	}
	f.nopen.Store(int32(len(f.files)))
	f.mu.Unlock()
	f.uncacheRename(from, to)
	return 0
}

// modify commits a change of the attributes of the entry at p.
func (f *FS) modify(op, p string, fn func(e *meta.Entry) error) int {
	err := f.update(op+" "+p, func(tx *meta.Tx) error {
		old, ok := tx.Get(p)
		if !ok {
			return meta.ErrNotExist
		}
		e := *old
		if err := fn(&e); err != nil {
			return err
		}
		return tx.Put(p, &e)
	})
	return f.errno(op, p, err)
}

// Chmod sets the permission bits.
func (f *FS) Chmod(path string, mode uint32) int {
	p := rel(path)
	if fl := f.openFile(p); fl != nil {
		fl.mu.Lock()
		fl.mode = mode & 0o7777
		fl.mu.Unlock()
	}
	return f.modify("chmod", p, func(e *meta.Entry) error {
		e.Mode = mode & 0o7777
		return nil
	})
}

// Chown sets owner and group; ^0 leaves one as it is.
func (f *FS) Chown(path string, uid, gid uint32) int {
	return f.modify("chown", rel(path), func(e *meta.Entry) error {
		if uid != ^uint32(0) {
			e.UID = uid
		}
		if gid != ^uint32(0) {
			e.GID = gid
		}
		return nil
	})
}

// Utimens sets the modification time (the access time is not kept).
func (f *FS) Utimens(path string, tmsp []fuse.Timespec) int {
	p := rel(path)
	m := tmsp[1]
	switch m.Nsec {
	case fuse.UTIME_OMIT:
		if _, ok := f.lookup(p); !ok {
			return -fuse.ENOENT
		}
		return 0
	case fuse.UTIME_NOW:
		m = fuse.Now()
	}
	mtime := m.Sec*1e9 + m.Nsec
	if fl := f.openFile(p); fl != nil && fl.changed.Load() {
		fl.mu.Lock()
		fl.mtime.Store(mtime) // the coming commit of the contents keeps it
		fl.mu.Unlock()
	}
	return f.modify("utimens", p, func(e *meta.Entry) error {
		e.Mtime = mtime
		return nil
	})
}

// Symlink creates a symbolic link.
func (f *FS) Symlink(target, newpath string) int {
	p := rel(newpath)
	if nameTooLong(p) {
		return -fuse.ENAMETOOLONG
	}
	uid, gid := owner()
	e := &meta.Entry{Kind: meta.KindSymlink, Mode: 0o777, UID: uid, GID: gid, Mtime: now(),
		Target: target, Size: int64(len(target))}
	return f.errno("symlink", p, f.update("symlink "+p, func(tx *meta.Tx) error {
		if _, ok := tx.Get(p); ok {
			return meta.ErrExist
		}
		return tx.Put(p, e)
	}))
}

// Readlink returns a symlink's target.
func (f *FS) Readlink(path string) (int, string) {
	e, ok := f.lookup(rel(path))
	switch {
	case !ok:
		return -fuse.ENOENT, ""
	case e.Kind != meta.KindSymlink:
		return -fuse.EINVAL, ""
	}
	return 0, e.Target
}

// Link fails: a path holds a manifest, there are no inodes to share.
func (f *FS) Link(oldpath, newpath string) int { return -fuse.ENOTSUP }

// Mknod creates regular files only (what create falls back to).
func (f *FS) Mknod(path string, mode uint32, dev uint64) int {
	if mode&fuse.S_IFMT != fuse.S_IFREG && mode&fuse.S_IFMT != 0 {
		return -fuse.EPERM
	}
	p := rel(path)
	if nameTooLong(p) {
		return -fuse.ENAMETOOLONG
	}
	_, _, errc := f.createEntry(p, mode, true, false)
	return errc
}

// createEntry commits an empty file at p unless one exists (excl: EEXIST),
// and returns the entry now at p and whether it made it. A lazy create
// returns before its commit is durable (meta.Repo.UpdateLazy): the close
// after it makes it durable.
func (f *FS) createEntry(p string, mode uint32, excl, lazy bool) (*meta.Entry, bool, int) {
	uid, gid := owner()
	var got *meta.Entry
	made := false
	update := f.repo.UpdateLogged
	if lazy {
		update = f.repo.UpdateLazy
	}
	ctx, cancel := f.ctx()
	defer cancel()
	err := update(ctx, "create "+p, func(tx *meta.Tx) error {
		made = false
		if old, ok := tx.Get(p); ok {
			switch {
			case excl:
				return meta.ErrExist
			case old.Kind == meta.KindDir:
				return meta.ErrIsDir
			}
			got = old
			return nil
		}
		got = &meta.Entry{Kind: meta.KindFile, Mode: mode & 0o7777, UID: uid, GID: gid, Mtime: now()}
		made = true
		return tx.Put(p, got)
	})
	if err != nil {
		return nil, false, f.errno("create", p, err)
	}
	return got, made, 0
}

// Create creates (or opens) a file and opens it. The new empty file is
// committed at once, so other processes see it while it is being written,
// but lazily: the handle's file is marked changed, so its flush (close)
// commits it durably even when nothing was written, with the contents
// when something was (one barrier per close).
func (f *FS) Create(path string, flags int, mode uint32) (int, uint64) {
	p := rel(path)
	if nameTooLong(p) {
		return -fuse.ENAMETOOLONG, noFH
	}
	e, made, errc := f.createEntry(p, mode, flags&fuse.O_EXCL != 0, true)
	if errc != 0 {
		return errc, noFH
	}
	errc, fh := f.open(p, e, flags)
	if errc == 0 && made {
		if h := f.handle(fh); h != nil {
			fl := h.file
			fl.mu.Lock()
			if !fl.changed.Load() {
				fl.size.Store(0)
				fl.mtime.Store(e.Mtime)
				fl.changed.Store(true)
			}
			fl.mu.Unlock()
		}
	}
	return errc, fh
}

// Open opens a file. Opening for writing costs nothing until the first
// change (then the contents are copied into a temp file, unless O_TRUNC).
func (f *FS) Open(path string, flags int) (int, uint64) {
	p := rel(path)
	e, ok := f.lookup(p)
	if !ok {
		if fl := f.hiddenFile(p); fl != nil {
			// Reopened by its hidden name (/proc/PID/fd/N).
			f.mu.Lock()
			fl.refs++
			f.mu.Unlock()
			return 0, f.newHandle(&handle{file: fl, write: flags&fuse.O_ACCMODE != fuse.O_RDONLY})
		}
	}
	switch {
	case !ok:
		return -fuse.ENOENT, noFH
	case e.Kind == meta.KindDir:
		return -fuse.EISDIR, noFH
	case e.Kind != meta.KindFile:
		return -fuse.EINVAL, noFH
	}
	return f.open(p, e, flags)
}

func (f *FS) open(p string, e *meta.Entry, flags int) (int, uint64) {
	fl := f.acquire(p, e)
	h := &handle{file: fl, write: flags&fuse.O_ACCMODE != fuse.O_RDONLY}
	if h.write && flags&fuse.O_TRUNC != 0 {
		fl.mu.Lock()
		err := f.truncateLocked(fl, 0)
		fl.mu.Unlock()
		if err != nil {
			f.release(fl)
			return f.errno("open", p, err), noFH
		}
	}
	return 0, f.newHandle(h)
}

// Read reads through the handle: a pread on the local blob it holds, with
// no lock and no message on the way.
func (f *FS) Read(path string, buff []byte, ofst int64, fh uint64) int {
	h := f.handle(fh)
	if h == nil {
		return -fuse.EBADF
	}
	n, err := f.readAt(h, buff, ofst)
	if err != nil {
		return f.errno("read", path, err)
	}
	return n
}

// Write writes into the file's temp file.
func (f *FS) Write(path string, buff []byte, ofst int64, fh uint64) int {
	h := f.handle(fh)
	if h == nil {
		return -fuse.EBADF
	}
	n, err := f.write(h.file, buff, ofst)
	if err != nil && n == 0 {
		return f.errno("write", path, err)
	}
	return n
}

// Truncate sets a file's length: through the handle (ftruncate, committed
// at flush), or by path (truncate(2), committed before it returns).
func (f *FS) Truncate(path string, size int64, fh uint64) int {
	p := rel(path)
	if size < 0 {
		return -fuse.EINVAL
	}
	if h := f.handle(fh); fh != noFH && h != nil {
		h.file.mu.Lock()
		defer h.file.mu.Unlock()
		return f.errno("ftruncate", p, f.truncateLocked(h.file, size))
	}
	e, ok := f.lookup(p)
	switch {
	case !ok:
		return -fuse.ENOENT
	case e.Kind == meta.KindDir:
		return -fuse.EISDIR
	case e.Kind != meta.KindFile:
		return -fuse.EINVAL
	}
	fl := f.acquire(p, e)
	defer f.release(fl)
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if err := f.truncateLocked(fl, size); err != nil {
		return f.errno("truncate", p, err)
	}
	return f.errno("truncate", p, f.sealLocked(fl))
}

// Flush seals and commits the file when this handle wrote to it, so that
// a full disk or a failed commit is the error close(2) returns.
func (f *FS) Flush(path string, fh uint64) int {
	h := f.handle(fh)
	if h == nil {
		return -fuse.EBADF
	}
	if !h.write || !h.file.changed.Load() {
		return 0
	}
	h.file.mu.Lock()
	defer h.file.mu.Unlock()
	return f.errno("flush", path, f.sealLocked(h.file))
}

// Fsync seals and commits a changed file.
func (f *FS) Fsync(path string, datasync bool, fh uint64) int {
	h := f.handle(fh)
	if h == nil {
		return -fuse.EBADF
	}
	if !h.file.changed.Load() {
		return 0
	}
	h.file.mu.Lock()
	defer h.file.mu.Unlock()
	return f.errno("fsync", path, f.sealLocked(h.file))
}

// Fsyncdir makes the namespace durable: creates are committed lazily (a
// file's close makes it durable), so fsync(2) of a directory commits a
// durable no-op, which makes every lazy update before it durable.
func (f *FS) Fsyncdir(path string, datasync bool, fh uint64) int {
	return f.errno("fsyncdir", path, f.update("fsyncdir", func(*meta.Tx) error { return nil }))
}

// Release forgets the handle; the last handle of a file drops changes that
// no flush could commit.
func (f *FS) Release(path string, fh uint64) int {
	v, ok := f.handles.LoadAndDelete(fh)
	if !ok {
		return -fuse.EBADF
	}
	h := v.(*handle)
	h.closeRemote()
	f.release(h.file)
	return 0
}

// Destroy is called by libfuse after unmount.
func (f *FS) Destroy() {}

// Init, called by libfuse when the kernel connects, gives a root nobody
// has set up (a new namespace's implicit root: uid 0, gid 0, mtime 0) to
// the user who mounts, with the time of the mount: a user's own mount is
// then writable by them (the kernel checks the root's mode bits), and ls
// shows a date instead of 1970. Nodes that join a volume clone its root
// as it is.
func (f *FS) Init() {
	implicit := func(e *meta.Entry) bool { return e.UID == 0 && e.GID == 0 && e.Mtime == 0 }
	if e, ok := f.repo.Snapshot().Get(""); !ok || !implicit(e) {
		return
	}
	uid, gid := uint32(max(os.Getuid(), 0)), uint32(max(os.Getgid(), 0))
	if f.modify("adopt", "", func(e *meta.Entry) error {
		if implicit(e) {
			e.UID, e.GID, e.Mtime = uid, gid, now()
		}
		return nil
	}) != 0 {
		f.log.Warn("fs: could not give the root to the mounting user")
	}
}

var _ fuse.FileSystemInterface = (*FS)(nil)
var _ fuse.FileSystemRename3 = (*FS)(nil)
