package lowprio

import (
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

var spare sync.Once

// Lower locks the calling goroutine to its OS thread and gives the thread
// the lowest CPU priority (nice 19). The thread is never unlocked: it ends
// with the goroutine, so no other goroutine inherits the priority. A
// refused setpriority leaves the normal priority. Call it first thing in
// a goroutine that does background work and holds no lock others wait on.
//
// The first call also gives the process one P more than it has CPUs
// (unless the GOMAXPROCS environment variable is set, or it has more
// already): the kernel may set a low-priority thread aside while it runs
// Go code, and the thread keeps its P meanwhile; the other goroutines must
// not be one P short then.
func Lower() {
	spare.Do(func() {
		if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) <= runtime.NumCPU() {
			runtime.GOMAXPROCS(runtime.NumCPU() + 1)
		}
	})
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
}
