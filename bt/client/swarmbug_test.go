package client_test

// Bugs found in bt/swarm from here, kept as regression tests.

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/bt/swarm/swarmtest"
	"github.com/delugefs/delugefs/bt/wire"
	"github.com/delugefs/delugefs/piece"
)

// recordingHandler keeps the messages of the records it handles.
type recordingHandler struct {
	mu   sync.Mutex // guards msgs
	msgs []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.msgs = append(h.msgs, b.String())
	return nil
}

func (h *recordingHandler) find(s string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.msgs {
		if strings.Contains(m, s) {
			out = append(out, m)
		}
	}
	return out
}

// TestSwarmBlockSplitAcrossIdleFlush pins a data corruption the swarm's
// read loop had (bt/swarm/conn.go before eed497e): when the socket ran dry
// in the middle of a block, sockReader called idle, which flushed the batch
// and reset recvBatch.used to 0 while recvBlock was reading the block into
// slab[used:used+n]; recvBlock then recorded the block's run as starting
// at the new used (0), so the blob got the bytes of an earlier block in its
// place. The piece failed its hash, and after a few such pieces an honest
// peer was banned (seen in BenchmarkTransfer1GiB under load: "peer banned
// ... 5 pieces failed their hash", then the download failed).
//
// An honest peer sends block A and half of block B, waits until A is
// verified (the leech flushed its batch, with B half read), then sends the
// rest of B. No piece may fail its hash.
func TestSwarmBlockSplitAcrossIdleFlush(t *testing.T) {
	swarmtest.CheckLeaks(t)
	const blk = bt.BlockSize
	data := swarmtest.RandomData(2*blk, 50) // two pieces of one block each
	hs := piece.NewHasher(blk)
	hs.Write(data)
	info := hs.Info()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	rec := &recordingHandler{}
	st, err := piece.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sw, err := swarm.New(info, swarm.Config{Store: st, Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- sw.Serve(ctx) }() // ends with cancel
	defer func() {
		cancel()
		<-served
		sw.Close()
	}()
	if err := sw.AddPeer(ln.Addr().String()); err != nil {
		t.Fatal(err)
	}

	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := wire.ReadHandshake(nc); err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteHandshake(nc, wire.Handshake{InfoHash: info.Hash(), PeerID: [20]byte{'-', 'T', 'T', '0', '0', '0', '1', '-'}}); err != nil {
		t.Fatal(err)
	}
	w := wire.NewWriter(nc)
	for _, m := range []wire.Message{{ID: wire.Bitfield, Bitfield: []byte{0xc0}}, {ID: wire.Unchoke}} {
		if err := w.WriteMessage(&m); err != nil {
			t.Fatal(err)
		}
	}
	// The leech asks for both blocks at once (its pipeline is deeper).
	r := wire.NewReader(nc, wire.Limits{})
	var reqs []wire.Message
	for len(reqs) < 2 {
		var m wire.Message
		if err := r.Read(&m); err != nil {
			t.Fatalf("reading the leech's requests: %v", err)
		}
		if m.ID == wire.Request {
			reqs = append(reqs, m)
		}
	}
	pieceMsg := func(q wire.Message) []byte {
		pm := wire.NewPiece(q.Index, q.Begin, data[int64(q.Index)*blk+int64(q.Begin):][:q.Length])
		b, err := pm.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := pieceMsg(reqs[0]), pieceMsg(reqs[1])
	half := len(b) / 2
	if _, err := nc.Write(append(append([]byte(nil), a...), b[:half]...)); err != nil {
		t.Fatal(err)
	}
	// A is verified only once the leech has flushed its batch, which it
	// does when the socket runs dry: in the middle of B.
	deadline := time.Now().Add(10 * time.Second)
	for { // polls a condition with a deadline
		p, err := sw.Progress(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p.Pieces >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("block A not verified after 10 s: %+v", p)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := nc.Write(b[half:]); err != nil {
		t.Fatal(err)
	}
	// Serve whatever else the leech asks (a re-request after a failure)
	// until it is done.
	go func() { // ends when the connection closes
		for {
			var m wire.Message
			if err := r.Read(&m); err != nil {
				return
			}
			if m.ID == wire.Request {
				if _, err := nc.Write(pieceMsg(m)); err != nil {
					return
				}
			}
		}
	}()
	select {
	case <-sw.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("leech not done after 20 s; log: %q", rec.find(""))
	}
	if failed := rec.find("failed its hash"); len(failed) > 0 {
		t.Errorf("an honest peer's piece failed its hash (the block was written from the wrong part of the slab): %q", failed)
	}
	got := make([]byte, len(data))
	if _, err := sw.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("blob differs from the data sent (%v)", err)
	}
}
