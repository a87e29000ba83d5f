package wire

import (
	"io"
	"net"
	"testing"
)

// cycle is an endless reader repeating buf.
type cycle struct {
	buf []byte
	off int
}

func (c *cycle) Read(p []byte) (int, error) {
	n := copy(p, c.buf[c.off:])
	c.off = (c.off + n) % len(c.buf)
	return n, nil
}

func pieceStream(b *testing.B, n int) []byte {
	var out []byte
	block := make([]byte, BlockSize)
	for i := range n {
		m := NewPiece(uint32(i), 0, block)
		var err error
		if out, err = m.AppendBinary(out); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

// BenchmarkReadPiece reads 16 KiB piece messages with Next and ReadBlock
// straight into a caller buffer.
func BenchmarkReadPiece(b *testing.B) {
	r := NewReader(&cycle{buf: pieceStream(b, 64)}, Limits{})
	r.SetGeometry(NewGeometry(64*BlockSize, BlockSize))
	dst := make([]byte, BlockSize)
	var m Message
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Next(&m); err != nil {
			b.Fatal(err)
		}
		if err := r.ReadBlock(dst[:r.Pending()]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadPieceInternal reads with Read into the Reader's own buffer.
func BenchmarkReadPieceInternal(b *testing.B) {
	r := NewReader(&cycle{buf: pieceStream(b, 64)}, Limits{})
	var m Message
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Read(&m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadSmall reads have and request messages (the other hot path).
func BenchmarkReadSmall(b *testing.B) {
	var stream []byte
	for i := range 100 {
		m := NewRequest(uint32(i), 0, BlockSize)
		stream, _ = m.AppendBinary(stream)
		h := Message{ID: Have, Index: uint32(i)}
		stream, _ = h.AppendBinary(stream)
	}
	r := NewReader(&cycle{buf: stream}, Limits{})
	r.SetGeometry(NewGeometry(100*BlockSize, BlockSize))
	var m Message
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Read(&m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWritePiece queues one 16 KiB piece message and flushes it.
func BenchmarkWritePiece(b *testing.B) {
	w := NewWriter(io.Discard)
	m := NewPiece(1, 0, make([]byte, BlockSize))
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteMessage(&m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWritePieceBatch queues 8 pieces and a have per flush.
func BenchmarkWritePieceBatch(b *testing.B) {
	w := NewWriter(io.Discard)
	m := NewPiece(1, 0, make([]byte, BlockSize))
	h := Message{ID: Have, Index: 3}
	b.SetBytes(8 * BlockSize)
	b.ReportAllocs()
	for b.Loop() {
		for range 8 {
			w.Queue(&m)
		}
		w.Queue(&h)
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchConn streams piece messages from a Writer to a Reader across a
// connection pair; the writer goroutine is waited for.
func benchConn(b *testing.B, a, c net.Conn, batch int) {
	n := b.N
	errc := make(chan error, 1)
	go func() { // the writer; exits after n messages or on a write error
		defer a.Close()
		w := NewWriter(a)
		m := NewPiece(0, 0, make([]byte, BlockSize))
		for i := 0; i < n; i++ {
			if err := w.Queue(&m); err != nil {
				errc <- err
				return
			}
			if (i+1)%batch == 0 || i == n-1 {
				if err := w.Flush(); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- nil
	}()
	r := NewReader(c, Limits{})
	r.SetGeometry(NewGeometry(BlockSize, BlockSize))
	dst := make([]byte, BlockSize)
	var m Message
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range n {
		if err := r.Next(&m); err != nil {
			b.Fatal(err)
		}
		if err := r.ReadBlock(dst[:r.Pending()]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.Close()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPipePiece streams pieces over net.Pipe (no kernel).
func BenchmarkPipePiece(b *testing.B) {
	a, c := net.Pipe()
	benchConn(b, a, c, 1)
}

// BenchmarkTCPPiece streams pieces over loopback TCP, 4 pieces per writev.
func BenchmarkTCPPiece(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	benchConn(b, a, c, 4)
}
