package meta

import (
	"errors"
	"fmt"
	"maps"

	"github.com/delugefs/delugefs/bt"
)

// Kind is the type of a namespace entry.
type Kind uint8

// The kinds of entry.
const (
	KindFile    Kind = iota + 1 // a regular file; its contents are a blob
	KindDir                     // a directory
	KindSymlink                 // a symbolic link
)

// String returns "file", "dir" or "symlink".
func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindSymlink:
		return "symlink"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Entry is the metadata of one path. Entries are immutable once published:
// never modify an Entry obtained from a Snapshot or a Tx; Put a new one.
type Entry struct {
	Kind     Kind
	Mode     uint32            // permission bits 07777 only
	UID, GID uint32            // owner and group
	Mtime    int64             // unix nanoseconds
	Size     int64             // files: length; dirs: 0; symlinks: len(Target)
	Info     *bt.Info          // files with Size > 0; nil for empty files
	Hash     bt.InfoHash       // Info.Hash() (zero for empty files)
	Target   string            // symlinks
	Xattrs   map[string][]byte // user xattrs, full names ("user.foo")
}

// DirEntry is one child of a directory, as returned by ReadDir.
type DirEntry struct {
	Name  string
	Entry *Entry
}

// Errors that callers branch on with errors.Is.
var (
	ErrNotExist = errors.New("meta: no such file or directory")
	ErrExist    = errors.New("meta: file exists")
	ErrNotDir   = errors.New("meta: not a directory")
	ErrIsDir    = errors.New("meta: is a directory")
	ErrNotEmpty = errors.New("meta: directory not empty")
	ErrInvalid  = errors.New("meta: invalid argument")
	ErrClosed   = errors.New("meta: repository closed")
)

// Limits on what the namespace accepts, from callers and from git alike.
const (
	MaxNameLen     = 255       // bytes in one path component (NAME_MAX)
	MaxPathLen     = 4096      // bytes in a whole path (PATH_MAX)
	MaxDepth       = 256       // directory levels below the root
	MaxTargetLen   = 4096      // bytes in a symlink target
	MaxXattrs      = 256       // xattrs on one entry
	MaxXattrName   = 255       // bytes in an xattr name
	MaxXattrValue  = 64 << 10  // bytes in one xattr value
	MaxXattrTotal  = 256 << 10 // bytes in all xattr names and values of one entry
	MaxManifestLen = 16 << 20  // bytes in one manifest or marker blob
)

// checkEntry validates e for the given kind rules and returns a private
// copy (so a caller mutating e later cannot change published state), with
// Size and Hash derived from Info and Target.
func checkEntry(e *Entry) (*Entry, error) {
	if e == nil {
		return nil, fmt.Errorf("%w: nil entry", ErrInvalid)
	}
	c := *e
	if c.Mode&^07777 != 0 {
		return nil, fmt.Errorf("%w: mode %#o has bits outside 07777", ErrInvalid, c.Mode)
	}
	if err := checkXattrs(c.Xattrs); err != nil {
		return nil, err
	}
	if len(c.Xattrs) == 0 {
		c.Xattrs = nil
	} else {
		c.Xattrs = maps.Clone(c.Xattrs)
	}
	switch c.Kind {
	case KindFile:
		c.Target = ""
		if c.Info == nil {
			if c.Size != 0 {
				return nil, fmt.Errorf("%w: file of size %d without info", ErrInvalid, c.Size)
			}
			c.Hash = bt.InfoHash{}
			break
		}
		if c.Info.Length <= 0 {
			return nil, fmt.Errorf("%w: info with length %d", ErrInvalid, c.Info.Length)
		}
		if len(c.Info.Bencode()) > MaxManifestLen-2*MaxXattrTotal {
			return nil, fmt.Errorf("%w: info of %d bytes is too large", ErrInvalid, len(c.Info.Bencode()))
		}
		c.Size = c.Info.Length
		c.Hash = c.Info.Hash()
	case KindDir:
		c.Size, c.Info, c.Hash, c.Target = 0, nil, bt.InfoHash{}, ""
	case KindSymlink:
		if c.Target == "" || len(c.Target) > MaxTargetLen || hasNUL(c.Target) {
			return nil, fmt.Errorf("%w: symlink target of %d bytes", ErrInvalid, len(c.Target))
		}
		c.Size, c.Info, c.Hash = int64(len(c.Target)), nil, bt.InfoHash{}
	default:
		return nil, fmt.Errorf("%w: %v", ErrInvalid, c.Kind)
	}
	return &c, nil
}

func checkXattrs(x map[string][]byte) error {
	if len(x) > MaxXattrs {
		return fmt.Errorf("%w: %d xattrs", ErrInvalid, len(x))
	}
	total := 0
	for k, v := range x {
		total += len(k) + len(v)
		if total > MaxXattrTotal {
			return fmt.Errorf("%w: xattrs exceed %d bytes", ErrInvalid, MaxXattrTotal)
		}
		if k == "" || len(k) > MaxXattrName || hasNUL(k) {
			return fmt.Errorf("%w: xattr name %q", ErrInvalid, k)
		}
		if len(v) > MaxXattrValue {
			return fmt.Errorf("%w: xattr %q value of %d bytes", ErrInvalid, k, len(v))
		}
	}
	return nil
}

func hasNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}
