package discovery

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"
)

func loopbackNet(t *testing.T) Network {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			return Network{Interfaces: []string{ifi.Name}, IncludeLoopback: true}
		}
	}
	t.Fatal("no loopback interface")
	return Network{}
}

// TestQueriesAreShared runs three nodes and counts the PTR queries on the
// wire: each node would send one per interval on its own; seeing another
// node's query makes it skip, so about one goes out per interval.
func TestQueriesAreShared(t *testing.T) {
	const interval = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var done []chan error
	defer func() {
		cancel()
		for _, d := range done {
			<-d
		}
	}()
	ln := loopbackNet(t)
	ifs, err := ln.pick()
	if err != nil {
		t.Fatal(err)
	}
	// A passive listener: counts queries, sends nothing.
	b, err := openBrowser(ifs, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	vol := "shared-" + time.Now().Format("150405.000000")
	for _, id := range []string{"a", "b", "c"} {
		d, err := New(Config{Info: Info{VolumeID: vol, NodeID: id}, Network: ln, Interval: interval, TTL: 10 * interval})
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan error, 1)
		done = append(done, ch)
		go func() { ch <- d.Serve(ctx) }()
	}
	// Let the starts pass (each node queries at once), then count.
	warm := time.After(5 * interval)
	for warming := true; warming; {
		select {
		case <-b.packets:
		case <-warm:
			warming = false
		}
	}
	const span = 20 * interval
	end := time.After(span)
	queries := 0
	for counting := true; counting; {
		select {
		case p := <-b.packets:
			if m, err := parseMessage(p.data, p.src); err == nil && m.query {
				queries++
			}
		case <-end:
			counting = false
		}
	}
	perInterval := float64(queries) / float64(span/interval)
	t.Logf("%d queries in %v: %.2f per interval with 3 nodes", queries, span, perInterval)
	if perInterval > 2 || perInterval < 0.5 {
		t.Errorf("%.2f queries per interval, want about 1", perInterval)
	}
}

// TestNoGoroutinesLeft starts and stops a node with a subscriber and
// checks every goroutine it started is gone.
func TestNoGoroutinesLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	d, err := New(Config{Info: Info{VolumeID: "leak", NodeID: "a"}, Network: loopbackNet(t),
		StaticPeers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := d.Subscribe(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	if ev := <-events; ev.Type != PeerUp {
		t.Errorf("first event %v", ev)
	}
	if err := d.Serve(ctx); err != ErrRunning {
		t.Errorf("second Serve: %v", err)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Serve: %v", err)
	}
	for range events {
	}
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > before {
		select {
		case <-tick.C:
		case <-deadline:
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}
