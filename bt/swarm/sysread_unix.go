//go:build !windows

package swarm

import "syscall"

// sysRead reads from a socket's file descriptor without the runtime poller.
func sysRead(fd uintptr, p []byte) (int, error) { return syscall.Read(int(fd), p) }
