//go:build linux

package meta

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncObjects makes every object written since the last call durable with
// one syncfs(2) of the repository's filesystem: one journal commit for the
// whole batch instead of one fsync per object file and directory.
func (w *objWriter) syncObjects(dirFile *os.File) error {
	if len(w.written) == 0 {
		return nil
	}
	if err := unix.Syncfs(int(dirFile.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", w.dir, err)
	}
	w.written = w.written[:0]
	w.n = 0
	return nil
}

func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// lockRepo takes an exclusive lock on the repository so that two processes
// never write one namespace; the kernel drops it when the process dies.
func lockRepo(f *os.File) error {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("meta: repository %s is in use by another process: %w", f.Name(), err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// syncfsCoversBlobs: a checkpoint's syncfs(2) makes every file on the
// repository's file system durable, blob files written without fsync too.
const syncfsCoversBlobs = true

// openDirect opens the journal at p for direct, synchronous writes
// (O_DIRECT|O_DSYNC), or returns nil when the file system refuses them.
func openDirect(p string) *os.File {
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_DIRECT|unix.O_DSYNC|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), p)
}
