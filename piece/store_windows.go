//go:build windows

package piece

import (
	"io/fs"

	"golang.org/x/sys/windows"
)

// syncDir is a no-op on Windows, which cannot open a directory for
// FlushFileBuffers; NTFS journals the metadata of renames itself.
func syncDir(dir string) error { return nil }

// diskSpace returns the total bytes of the volume holding path and the bytes
// available to the calling user.
func diskSpace(path string) (total, free uint64, err error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return 0, 0, err
	}
	var avail, tot, totFree uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &tot, &totFree); err != nil {
		return 0, 0, err
	}
	return tot, avail, nil
}

// sameDevice reports true: a rename across volumes fails, and Seal reports
// that error.
func sameDevice(fi fs.FileInfo, dir string) bool { return true }

// allocatedBytes returns the size of the file (allocation is not reported).
func allocatedBytes(fi fs.FileInfo) int64 { return fi.Size() }
