//go:build !linux

package meta

import (
	"fmt"
	"os"
	"runtime"
)

// syncObjects makes every object written since the last call durable by
// fsyncing each new file and directory.
func (w *objWriter) syncObjects(dirFile *os.File) error {
	for _, p := range w.written {
		if err := fsyncPath(p); err != nil {
			return err
		}
	}
	w.written = w.written[:0]
	w.n = 0
	return nil
}

func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	defer f.Close()
	if runtime.GOOS == "windows" {
		// Directories cannot be flushed there; NTFS journals renames.
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return nil
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return nil
}

func datasync(f *os.File) error { return f.Sync() }

// lockRepo does nothing here: only one process may use a repository, and
// nothing enforces it on this platform yet.
func lockRepo(f *os.File) error { return nil }

func syncDir(dir string) error { return fsyncPath(dir) }

// syncfsCoversBlobs: a checkpoint fsyncs only the repository's own files,
// so blobs cannot rely on it (Tx.AttachBlob is off).
const syncfsCoversBlobs = false

// openDirect returns nil: direct journal writes are used on Linux only.
func openDirect(p string) *os.File { return nil }
