package fs

import (
	"github.com/winfsp/cgofuse/fuse"

	"github.com/delugefs/delugefs/meta"
)

// maxCached bounds FS.cached.
const maxCached = 1 << 16

// OpenEx is Open that also tells the kernel whether it may keep the
// file's page cache from earlier opens (keep_cache).
//
// A blob never changes: the contents under one info-hash are the same
// forever, so pages the kernel read from a complete blob stay right as
// long as the path still holds that blob. OpenEx sets keep_cache when the
// handle is read-only, the file is not being changed, it reads a complete
// local blob, and that blob is the one the last open for reading at the
// path saw (FS.cached). Otherwise the kernel drops the file's pages at
// this open (a new blob: a peer's change, or our own rewrite), and
// pages written through a handle since (write, truncate) are never kept:
// a change forgets the path, so a failed close that rolls the file back
// cannot leave its bytes in the cache.
func (f *FS) OpenEx(path string, fi *fuse.FileInfo_t) int {
	errc, fh := f.Open(path, fi.Flags)
	if errc != 0 {
		return errc
	}
	fi.Fh = fh
	fi.KeepCache = f.keepCache(rel(path), fh)
	return 0
}

// CreateEx is Create through the FileInfo_t interface (a new file has no
// pages to keep).
func (f *FS) CreateEx(path string, mode uint32, fi *fuse.FileInfo_t) int {
	errc, fh := f.Create(path, fi.Flags, mode)
	if errc != 0 {
		return errc
	}
	fi.Fh = fh
	f.mu.Lock()
	delete(f.cached, rel(path))
	f.mu.Unlock()
	return 0
}

// keepCache decides keep_cache for the new handle fh at p and records the
// blob the kernel's pages come from.
func (f *FS) keepCache(p string, fh uint64) bool {
	h := f.handle(fh)
	if h == nil {
		return false
	}
	fl := h.file
	f.mu.Lock()
	defer f.mu.Unlock()
	s := fl.src.Load()
	if h.write || fl.changed.Load() || fl.writing.Load() || s.blob == nil || s.entry.Hash.IsZero() || fl.path != p {
		delete(f.cached, p)
		return false
	}
	if old, ok := f.cached[p]; ok && old == s.entry.Hash {
		return true
	}
	if len(f.cached) >= maxCached {
		clear(f.cached)
	}
	f.cached[p] = s.entry.Hash
	return false
}

// uncache forgets what the kernel may cache at fl's path: fl is being
// changed. Called once per change, when fl becomes changed; fl.mu held.
func (f *FS) uncache(fl *file) {
	f.mu.Lock()
	delete(f.cached, fl.path)
	f.mu.Unlock()
}

// uncacheRename forgets the pages at both ends of a rename (the kernel
// moves the file's pages with it); for a directory, everything.
func (f *FS) uncacheRename(from, to string) {
	e, ok := f.lookup(to)
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok && e.Kind == meta.KindDir {
		clear(f.cached)
		return
	}
	delete(f.cached, from)
	delete(f.cached, to)
}

var _ fuse.FileSystemOpenEx = (*FS)(nil)
