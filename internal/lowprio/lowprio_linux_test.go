package lowprio

import (
	"bytes"
	"os"
	"runtime"
	"strings"
	"testing"
)

// niceOfThread reads the nice value of the calling thread.
func niceOfThread(t *testing.T) string {
	stat, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis: the 17th of them
	// (19th of the line) is the nice value.
	return strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))[16]
}

// Lower gives the goroutine's thread nice 19, leaves other threads alone,
// and leaves the process a P more than it has CPUs.
func TestLower(t *testing.T) {
	got := make(chan string)
	go func() { // ends after one send
		Lower()
		got <- niceOfThread(t)
	}()
	if n := <-got; n != "19" {
		t.Errorf("nice %s after Lower, want 19", n)
	}
	if n := niceOfThread(t); n == "19" {
		t.Errorf("the test's own thread got nice 19")
	}
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) <= runtime.NumCPU() {
		t.Errorf("GOMAXPROCS %d with %d CPUs after Lower", runtime.GOMAXPROCS(0), runtime.NumCPU())
	}
}
