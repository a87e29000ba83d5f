package swarm_test

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
	"github.com/delugefs/delugefs/internal/testwait"
	"github.com/delugefs/delugefs/piece"
)

// failLog records the messages of log records that report failed hashes.
type failLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *failLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *failLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *failLog) WithGroup(string) slog.Handler            { return l }
func (l *failLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "failed its hash") || strings.Contains(r.Message, "banned") {
		l.mu.Lock()
		l.msgs = append(l.msgs, r.Message)
		l.mu.Unlock()
	}
	return nil
}

func (l *failLog) failures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// TestBlockSplitAcrossIdleFlush: an honest peer sends block A and half of
// block B, waits until A is verified (the read loop handed its batch over
// when the socket ran dry, in the middle of B), then the rest of B. No
// piece may fail, whether blocks are assembled in piece buffers or, with
// none (PieceMemory < 0), written to the blob as they come: there the
// flush in the middle of B once wrote B from the wrong part of the slab.
func TestBlockSplitAcrossIdleFlush(t *testing.T) {
	for _, tc := range []struct {
		name string
		mem  int64
	}{{"buffered", 0}, {"direct", -1}} {
		t.Run(tc.name, func(t *testing.T) { testIdleFlush(t, tc.mem) })
	}
}

func testIdleFlush(t *testing.T, mem int64) {
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
	st, err := piece.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fl := &failLog{}
	sw, err := swarm.New(info, swarm.Config{Store: st, Logger: slog.New(fl), PieceMemory: mem})
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
	if err := wire.WriteHandshake(nc, wire.Handshake{InfoHash: info.Hash(), PeerID: [20]byte{'-', 'T', 'T', '0', '0', '0', '2', '-'}}); err != nil {
		t.Fatal(err)
	}
	w := wire.NewWriter(nc)
	for _, m := range []wire.Message{{ID: wire.Bitfield, Bitfield: []byte{0xc0}}, {ID: wire.Unchoke}} {
		if err := w.WriteMessage(&m); err != nil {
			t.Fatal(err)
		}
	}
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
	var p swarm.Progress
	if !testwait.Until(10*time.Second, func() bool {
		var err error
		p, err = sw.Progress(ctx)
		return err == nil && p.Pieces >= 1
	}) {
		t.Fatalf("block A not verified after 10 s: %+v", p)
	}
	if _, err := nc.Write(b[half:]); err != nil {
		t.Fatal(err)
	}
	go func() { // serves re-requests; ends when the connection closes
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
		t.Fatalf("leech not done after 20 s; failures: %q", fl.failures())
	}
	if f := fl.failures(); len(f) > 0 {
		t.Errorf("an honest peer's piece failed its hash: %q", f)
	}
	got := make([]byte, len(data))
	if _, err := sw.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("blob differs from the data sent (%v)", err)
	}
}
