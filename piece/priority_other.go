//go:build !linux

package piece

// lowerPriority does nothing off Linux, where priorities are per process.
func lowerPriority() {}
