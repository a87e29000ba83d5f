package lowprio

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Lower locks the calling goroutine to its OS thread and gives the thread
// the lowest CPU priority (nice 19). The thread is never unlocked: it ends
// with the goroutine, so no other goroutine inherits the priority. A
// refused setpriority leaves the normal priority. Call it first thing in
// a goroutine that does background work and holds no lock others wait on.
func Lower() {
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
}
