package piece

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// lowerPriority locks the calling goroutine to its OS thread and gives the
// thread the lowest CPU priority (nice 19), so that the scheduler runs it
// in time the latency-bound threads leave idle. The thread is not unlocked:
// it ends with the goroutine, and no other goroutine inherits the priority.
// A refused setpriority leaves the normal priority.
func lowerPriority() {
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
}
