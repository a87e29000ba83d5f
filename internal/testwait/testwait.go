// Package testwait waits in tests for a condition with a deadline: a
// ticker and the deadline in one loop, never a sleep that hopes the state
// has settled. Every package's tests use it instead of their own loop.
package testwait

import (
	"testing"
	"time"
)

// Tick is how often a condition is checked.
const Tick = 2 * time.Millisecond

// Until checks cond every Tick until it holds (true) or d passes (false).
func Until(d time.Duration, cond func() bool) bool { return UntilEvery(d, Tick, cond) }

// UntilEvery is Until checking every interval, for conditions that cost
// something to check (reading a file through a mount).
func UntilEvery(d, every time.Duration, cond func() bool) bool {
	if cond() {
		return true
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
			if cond() {
				return true
			}
		}
	}
}

// For waits until cond holds and fails tb when d passes first.
func For(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !Until(d, cond) {
		tb.Fatalf("after %v: still waiting for %s", d, what)
	}
}

// Holds checks cond every Tick for d: an invariant over a period (an idle
// connection that must stay open). It reports false at the first check
// that fails.
func Holds(d time.Duration, cond func() bool) bool {
	return !Until(d, func() bool { return !cond() })
}
