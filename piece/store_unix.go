//go:build unix

package piece

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// syncDir fsyncs a directory so that entries created, renamed or removed in
// it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// diskSpace returns the total bytes of the file system holding path and the
// bytes available to an unprivileged user.
func diskSpace(path string) (total, free uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	bs := uint64(st.Bsize)
	return uint64(st.Blocks) * bs, uint64(st.Bavail) * bs, nil
}

// sameDevice reports whether the file described by fi lives on the file
// system of dir, so that it can be renamed into dir.
func sameDevice(fi fs.FileInfo, dir string) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	var dst unix.Stat_t
	if err := unix.Stat(dir, &dst); err != nil {
		return true // let the rename report it
	}
	return uint64(st.Dev) == uint64(dst.Dev)
}

// allocatedBytes returns the bytes of disk a file actually uses (sparse
// files use less than their size).
func allocatedBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
