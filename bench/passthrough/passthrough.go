//go:build linux

package passthrough

import (
	"errors"
	"path/filepath"

	"github.com/winfsp/cgofuse/fuse"
	"golang.org/x/sys/unix"
)

// FS mirrors the directory Root. It holds no state besides Root and Plus, so
// it is safe for concurrent use by libfuse's threads.
type FS struct {
	fuse.FileSystemBase
	Root string // the mirrored directory
	// Plus makes Readdir return each entry's attributes (readdirplus);
	// without it the kernel looks every entry up on its own (ls -l).
	Plus bool
}

// New returns a file system mirroring root.
func New(root string, plus bool) *FS { return &FS{Root: root, Plus: plus} }

func (p *FS) real(path string) string { return filepath.Join(p.Root, path) }

// errno turns a system call error into cgofuse's negative errno.
func errno(err error) int {
	if err == nil {
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return -int(e)
	}
	return -fuse.EIO
}

func copyStat(dst *fuse.Stat_t, src *unix.Stat_t) {
	*dst = fuse.Stat_t{
		Dev: src.Dev, Ino: src.Ino, Mode: src.Mode, Nlink: uint32(src.Nlink),
		Uid: src.Uid, Gid: src.Gid, Rdev: src.Rdev, Size: src.Size,
		Atim:    fuse.Timespec{Sec: src.Atim.Sec, Nsec: src.Atim.Nsec},
		Mtim:    fuse.Timespec{Sec: src.Mtim.Sec, Nsec: src.Mtim.Nsec},
		Ctim:    fuse.Timespec{Sec: src.Ctim.Sec, Nsec: src.Ctim.Nsec},
		Blksize: src.Blksize, Blocks: src.Blocks,
	}
}

// Statfs reports the mirrored directory's file system.
func (p *FS) Statfs(path string, stat *fuse.Statfs_t) int {
	var s unix.Statfs_t
	if err := unix.Statfs(p.real(path), &s); err != nil {
		return errno(err)
	}
	*stat = fuse.Statfs_t{
		Bsize: uint64(s.Bsize), Frsize: uint64(s.Frsize), Blocks: s.Blocks,
		Bfree: s.Bfree, Bavail: s.Bavail, Files: s.Files, Ffree: s.Ffree,
		Favail: s.Ffree, Namemax: uint64(s.Namelen),
	}
	return 0
}

// Getattr is lstat, or fstat when the kernel passes a handle.
func (p *FS) Getattr(path string, stat *fuse.Stat_t, fh uint64) int {
	var st unix.Stat_t
	var err error
	if fh != ^uint64(0) {
		err = unix.Fstat(int(fh), &st)
	} else {
		err = unix.Lstat(p.real(path), &st)
	}
	if err != nil {
		return errno(err)
	}
	copyStat(stat, &st)
	return 0
}

// Mkdir is mkdir(2).
func (p *FS) Mkdir(path string, mode uint32) int { return errno(unix.Mkdir(p.real(path), mode)) }

// Unlink is unlink(2).
func (p *FS) Unlink(path string) int { return errno(unix.Unlink(p.real(path))) }

// Rmdir is rmdir(2).
func (p *FS) Rmdir(path string) int { return errno(unix.Rmdir(p.real(path))) }

// Link is link(2).
func (p *FS) Link(oldpath, newpath string) int {
	return errno(unix.Link(p.real(oldpath), p.real(newpath)))
}

// Symlink is symlink(2).
func (p *FS) Symlink(target, newpath string) int {
	return errno(unix.Symlink(target, p.real(newpath)))
}

// Readlink is readlink(2).
func (p *FS) Readlink(path string) (int, string) {
	buf := make([]byte, 4096)
	n, err := unix.Readlink(p.real(path), buf)
	if err != nil {
		return errno(err), ""
	}
	return 0, string(buf[:n])
}

// Rename is rename(2).
func (p *FS) Rename(oldpath, newpath string) int {
	return errno(unix.Rename(p.real(oldpath), p.real(newpath)))
}

// Chmod is chmod(2).
func (p *FS) Chmod(path string, mode uint32) int { return errno(unix.Chmod(p.real(path), mode)) }

// Chown is lchown(2).
func (p *FS) Chown(path string, uid, gid uint32) int {
	return errno(unix.Lchown(p.real(path), int(int32(uid)), int(int32(gid))))
}

// Utimens is utimensat(2) without following symlinks.
func (p *FS) Utimens(path string, tmsp []fuse.Timespec) int {
	ts := []unix.Timespec{{Sec: tmsp[0].Sec, Nsec: tmsp[0].Nsec}, {Sec: tmsp[1].Sec, Nsec: tmsp[1].Nsec}}
	return errno(unix.UtimesNanoAt(unix.AT_FDCWD, p.real(path), ts, unix.AT_SYMLINK_NOFOLLOW))
}

// Access is access(2).
func (p *FS) Access(path string, mask uint32) int { return errno(unix.Access(p.real(path), mask)) }

// Create is open(2) with O_CREAT; the handle is the descriptor.
func (p *FS) Create(path string, flags int, mode uint32) (int, uint64) {
	fd, err := unix.Open(p.real(path), flags|unix.O_CREAT, mode)
	if err != nil {
		return errno(err), ^uint64(0)
	}
	return 0, uint64(fd)
}

// Open is open(2); the handle is the descriptor.
func (p *FS) Open(path string, flags int) (int, uint64) {
	fd, err := unix.Open(p.real(path), flags, 0)
	if err != nil {
		return errno(err), ^uint64(0)
	}
	return 0, uint64(fd)
}

// Truncate is ftruncate(2) with a handle, truncate(2) without.
func (p *FS) Truncate(path string, size int64, fh uint64) int {
	if fh != ^uint64(0) {
		return errno(unix.Ftruncate(int(fh), size))
	}
	return errno(unix.Truncate(p.real(path), size))
}

// Read is pread(2).
func (p *FS) Read(path string, buff []byte, ofst int64, fh uint64) int {
	n, err := unix.Pread(int(fh), buff, ofst)
	if err != nil {
		return errno(err)
	}
	return n
}

// Write is pwrite(2).
func (p *FS) Write(path string, buff []byte, ofst int64, fh uint64) int {
	n, err := unix.Pwrite(int(fh), buff, ofst)
	if err != nil {
		return errno(err)
	}
	return n
}

// Release closes the descriptor.
func (p *FS) Release(path string, fh uint64) int { return errno(unix.Close(int(fh))) }

// Fsync is fsync(2) or fdatasync(2).
func (p *FS) Fsync(path string, datasync bool, fh uint64) int {
	if datasync {
		return errno(unix.Fdatasync(int(fh)))
	}
	return errno(unix.Fsync(int(fh)))
}

// Opendir checks that path is a directory.
func (p *FS) Opendir(path string) (int, uint64) {
	var st unix.Stat_t
	if err := unix.Stat(p.real(path), &st); err != nil {
		return errno(err), ^uint64(0)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return -fuse.ENOTDIR, ^uint64(0)
	}
	return 0, 0
}

// Readdir lists the directory in one pass; with Plus each entry carries its
// lstat attributes.
func (p *FS) Readdir(path string, fill func(name string, stat *fuse.Stat_t, ofst int64) bool,
	ofst int64, fh uint64) int {
	dir := p.real(path)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return errno(err)
	}
	defer unix.Close(fd)
	fill(".", nil, 0)
	fill("..", nil, 0)
	buf := make([]byte, 64<<10)
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err != nil {
			return errno(err)
		}
		if n == 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names[:0])
		for _, name := range names {
			var st *fuse.Stat_t
			if p.Plus {
				var ust unix.Stat_t
				if unix.Fstatat(fd, name, &ust, unix.AT_SYMLINK_NOFOLLOW) == nil {
					st = new(fuse.Stat_t)
					copyStat(st, &ust)
				}
			}
			if !fill(name, st, 0) {
				return 0
			}
		}
	}
	return 0
}

// Setxattr is lsetxattr(2).
func (p *FS) Setxattr(path, name string, value []byte, flags int) int {
	return errno(unix.Lsetxattr(p.real(path), name, value, flags))
}

// Getxattr is lgetxattr(2).
func (p *FS) Getxattr(path, name string) (int, []byte) {
	n, err := unix.Lgetxattr(p.real(path), name, nil)
	if err != nil {
		return errno(err), nil
	}
	buf := make([]byte, n)
	n, err = unix.Lgetxattr(p.real(path), name, buf)
	if err != nil {
		return errno(err), nil
	}
	return 0, buf[:n]
}

// Removexattr is lremovexattr(2).
func (p *FS) Removexattr(path, name string) int {
	return errno(unix.Lremovexattr(p.real(path), name))
}

// Listxattr is llistxattr(2).
func (p *FS) Listxattr(path string, fill func(name string) bool) int {
	n, err := unix.Llistxattr(p.real(path), nil)
	if err != nil {
		return errno(err)
	}
	buf := make([]byte, n)
	n, err = unix.Llistxattr(p.real(path), buf)
	if err != nil {
		return errno(err)
	}
	start := 0
	for i := 0; i < n; i++ {
		if buf[i] == 0 {
			if !fill(string(buf[start:i])) {
				return -fuse.ERANGE
			}
			start = i + 1
		}
	}
	return 0
}
