//go:build !linux

package lowprio

// Lower does nothing off Linux, where a priority belongs to the process.
func Lower() {}
