package client_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt/client"
	"github.com/delugefs/delugefs/bt/swarm"
)

func TestProgressLines(t *testing.T) {
	var buf bytes.Buffer
	pp := client.NewProgressPrinter(&buf, false, time.Hour)
	pp.Update(client.Progress{Elapsed: time.Second}) // a magnet, no info yet
	pp.Update(client.Progress{Name: "a", Progress: swarm.Progress{Length: 4 << 20, Bytes: 1 << 20, Pieces: 4, Total: 16, Peers: 2}})
	pp.Update(client.Progress{Name: "a", Done: true, Elapsed: 2 * time.Second,
		Progress: swarm.Progress{Length: 4 << 20, Bytes: 4 << 20, Pieces: 16, Total: 16, Peers: 2}})
	pp.Update(client.Progress{Name: "a", Done: true}) // after the end: nothing
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want the first and the last (throttled):\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "fetching the info dictionary") {
		t.Errorf("first line %q", lines[0])
	}
	if want := "a: complete, every piece verified, 100.0% (4.0 MiB of 4.0 MiB, 16/16 pieces), 2 peers, 2.0 MiB/s, 2s"; lines[1] != want {
		t.Errorf("last line\n%q, want\n%q", lines[1], want)
	}
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	pp := client.NewProgressPrinter(&buf, true, time.Second)
	pp.Update(client.Progress{})
	if buf.Len() != 0 {
		t.Errorf("a bar before the length is known: %q", buf.String())
	}
	pp.Update(client.Progress{Name: "film", Progress: swarm.Progress{Length: 8 << 20, Bytes: 2 << 20, Peers: 1}})
	pp.Update(client.Progress{Name: "film", Done: true, Progress: swarm.Progress{Length: 8 << 20, Bytes: 8 << 20, Peers: 1}})
	if s := buf.String(); !strings.Contains(s, "film (1 peers)") || !strings.Contains(s, "100%") {
		t.Errorf("bar output %q lacks the name or 100%%", s)
	}
}

func TestIEC(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 30: "3.0 GiB", 5<<40 + 1<<39: "5.5 TiB"} {
		if got := client.IEC(n); got != want {
			t.Errorf("IEC(%d) = %q, want %q", n, got, want)
		}
	}
}
