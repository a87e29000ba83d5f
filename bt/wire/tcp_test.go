package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// TestTCPBatches sends batches of mixed messages over loopback TCP (the
// writev path of net.Buffers) and checks every byte on the other side.
func TestTCPBatches(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const pieces = 64
	geo := NewGeometry(pieces*BlockSize, BlockSize)
	blocks := make([][]byte, pieces)
	for i := range blocks {
		blocks[i] = bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5a}, BlockSize/3+1)[:BlockSize]
	}
	var want []Message
	for i := range pieces {
		want = append(want, NewPiece(uint32(i), 0, blocks[i]), Message{ID: Have, Index: uint32(i)})
		if i%5 == 0 {
			want = append(want, NewExtended(2, bytes.Repeat([]byte{'x'}, i*100)), Message{ID: KeepAlive})
		}
	}
	errc := make(chan error, 1)
	go func() { // the writer: batches of 7 messages; exits when done
		w := NewWriter(a)
		for i := range want {
			if err := w.Queue(&want[i]); err != nil {
				errc <- err
				return
			}
			if i%7 == 6 {
				if err := w.Flush(); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- errors.Join(w.Flush(), a.(*net.TCPConn).CloseWrite())
	}()
	r := NewReader(c, Limits{})
	r.SetGeometry(geo)
	for i, w := range want {
		var m Message
		if err := r.Read(&m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if m.ID != w.ID || m.Index != w.Index || !bytes.Equal(m.Block, w.Block) || !bytes.Equal(m.Payload, w.Payload) {
			t.Fatalf("message %d: got %v, want %v", i, &m, &w)
		}
	}
	var m Message
	if err := r.Read(&m); err != io.EOF {
		t.Errorf("after the last message: %v, want io.EOF", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
