package testwait

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	if !Until(time.Second, func() bool { return n.Add(1) >= 3 }) {
		t.Fatal("a condition that comes true was not seen")
	}
	start := time.Now()
	if Until(20*time.Millisecond, func() bool { return false }) {
		t.Fatal("a false condition held")
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("gave up before the deadline")
	}
	n.Store(0)
	if Holds(20*time.Millisecond, func() bool { return n.Add(1) < 3 }) {
		t.Fatal("an invariant that breaks held")
	}
	if !Holds(10*time.Millisecond, func() bool { return true }) {
		t.Fatal("an invariant that holds broke")
	}
}
