package fs

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/winfsp/cgofuse/fuse"

	"github.com/delugefs/delugefs/meta"
)

// Extended attributes DelugeFS answers itself (read-only).
const (
	XattrInfoHash = "user.delugefs.infohash" // hex info-hash of a file's blob
	XattrCopies   = "user.delugefs.copies"   // live nodes holding a complete copy
	XattrHolders  = "user.delugefs.holders"  // their node ids, comma-separated
	XattrProgress = "user.delugefs.progress" // fraction of the blob verified on this node, 0 to 1
	xattrOwn      = "user.delugefs."
	xattrUser     = "user."
)

// Setxattr sets a user xattr, stored in the manifest. Names outside the
// user namespace get ENOTSUP (so cp -a carries on), DelugeFS's own EPERM.
func (f *FS) Setxattr(path string, name string, value []byte, flags int) int {
	switch {
	case strings.HasPrefix(name, xattrOwn):
		return -fuse.EPERM
	case !strings.HasPrefix(name, xattrUser):
		return -fuse.ENOTSUP
	case len(name) > meta.MaxXattrName:
		return -fuse.ERANGE
	case len(value) > meta.MaxXattrValue:
		return -fuse.E2BIG
	}
	val := slices.Clone(value)
	return f.modify("setxattr", rel(path), func(e *meta.Entry) error {
		_, exists := e.Xattrs[name]
		switch {
		case flags&fuse.XATTR_CREATE != 0 && exists:
			return errno(fuse.EEXIST)
		case flags&fuse.XATTR_REPLACE != 0 && !exists:
			return errno(fuse.ENODATA)
		case !exists && len(e.Xattrs) >= meta.MaxXattrs:
			return errno(fuse.ENOSPC)
		}
		x := maps.Clone(e.Xattrs)
		if x == nil {
			x = make(map[string][]byte)
		}
		x[name] = val
		e.Xattrs = x
		return nil
	})
}

// Getxattr returns a user xattr, or one of DelugeFS's own.
func (f *FS) Getxattr(path string, name string) (int, []byte) {
	e, ok := f.lookup(rel(path))
	if !ok {
		return -fuse.ENOENT, nil
	}
	if e.Kind == meta.KindFile {
		switch name {
		case XattrInfoHash:
			if e.Hash.IsZero() {
				return -fuse.ENODATA, nil
			}
			return 0, []byte(e.Hash.String())
		case XattrCopies:
			if e.Size == 0 {
				return 0, []byte("1") // nothing to copy: every node has it
			}
			if f.opts.Cluster != nil {
				n, _ := f.opts.Cluster.Copies(e.Hash)
				return 0, []byte(strconv.Itoa(n))
			}
			if !f.store.Has(e.Hash) {
				return 0, []byte("0")
			}
			return 0, []byte("1")
		case XattrHolders:
			if e.Size == 0 || f.opts.Cluster == nil {
				return -fuse.ENODATA, nil
			}
			_, hs := f.opts.Cluster.Copies(e.Hash)
			return 0, []byte(strings.Join(hs, ","))
		case XattrProgress:
			switch {
			case e.Size == 0 || f.store.Has(e.Hash):
				return 0, []byte("1")
			case f.opts.Cluster == nil:
				return 0, []byte("0")
			}
			return 0, []byte(strconv.FormatFloat(f.opts.Cluster.Progress(e.Hash), 'f', 4, 64))
		}
	}
	v, ok := e.Xattrs[name]
	if !ok {
		return -fuse.ENODATA, nil
	}
	return 0, slices.Clone(v)
}

// Removexattr removes a user xattr.
func (f *FS) Removexattr(path string, name string) int {
	if strings.HasPrefix(name, xattrOwn) {
		return -fuse.EPERM
	}
	return f.modify("removexattr", rel(path), func(e *meta.Entry) error {
		if _, ok := e.Xattrs[name]; !ok {
			return errno(fuse.ENODATA)
		}
		x := maps.Clone(e.Xattrs)
		delete(x, name)
		e.Xattrs = x
		return nil
	})
}

// Listxattr lists the user xattrs and, for files, DelugeFS's own.
func (f *FS) Listxattr(path string, fill func(name string) bool) int {
	e, ok := f.lookup(rel(path))
	if !ok {
		return -fuse.ENOENT
	}
	var names []string
	if e.Kind == meta.KindFile {
		if !e.Hash.IsZero() {
			names = append(names, XattrInfoHash)
		}
		names = append(names, XattrCopies, XattrProgress)
		if f.opts.Cluster != nil && e.Size > 0 {
			names = append(names, XattrHolders)
		}
	}
	names = append(names, slices.Sorted(maps.Keys(e.Xattrs))...)
	for _, n := range names {
		if !fill(n) {
			return -fuse.ERANGE
		}
	}
	return 0
}
