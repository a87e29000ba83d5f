//go:build unix

package piece

import (
	"math"
	"os"
	"syscall"
)

// mapFile maps the first length bytes of f read-only and shared: it sees
// what later writes to the file put there.
func mapFile(f *os.File, length int64) ([]byte, error) {
	if length <= 0 || length > math.MaxInt {
		return nil, syscall.EINVAL
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var m []byte
	var merr error
	if err := rc.Control(func(fd uintptr) {
		m, merr = syscall.Mmap(int(fd), 0, int(length), syscall.PROT_READ, syscall.MAP_SHARED)
	}); err != nil {
		return nil, err
	}
	return m, merr
}

func unmapFile(m []byte) { syscall.Munmap(m) }
