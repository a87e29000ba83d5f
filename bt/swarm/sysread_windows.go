//go:build windows

package swarm

import "syscall"

// sysRead reads from a socket's handle without the runtime poller.
func sysRead(fd uintptr, p []byte) (int, error) { return syscall.Read(syscall.Handle(fd), p) }
