//go:build !windows

package main

import (
	"errors"
	"syscall"
)

// processAlive reports whether a process with that pid exists.
func processAlive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
