package fs

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing n bytes of f at off to the disk without
// waiting (sync_file_range SYNC_FILE_RANGE_WRITE), so that the fsync of
// the seal finds little left to write. Errors are left to that fsync.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
