package wire

import (
	"fmt"
	"io"
	"net"
)

// Writer encodes messages to a peer. Queue encodes a message into a reused
// buffer, referencing piece blocks without copying them; Flush sends
// everything queued in one vectored write (writev on a *net.TCPConn).
// Writing allocates nothing after warm-up. A Writer is not safe for
// concurrent use.
type Writer struct {
	w io.Writer

	buf    []byte      // encoded messages, piece blocks excluded
	blocks []queued    // piece blocks, in order, each after buf[:end]
	vec    [][]byte    // reused backing array of the vector
	nb     net.Buffers // the vector being written (consumed by WriteTo)
	n      int         // bytes queued
}

type queued struct {
	end   int    // len(buf) when the block was queued
	block []byte // the caller's block
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, 4096)}
}

// Queue encodes m after the messages already queued. The block of a piece
// message is not copied: the caller must leave it unchanged until Flush
// returns.
func (w *Writer) Queue(m *Message) error {
	if err := m.checkEncodable(); err != nil {
		return err
	}
	w.buf = m.header(w.buf)
	if m.ID == Piece && len(m.Block) > 0 {
		w.blocks = append(w.blocks, queued{end: len(w.buf), block: m.Block})
	}
	w.n += m.WireLen()
	return nil
}

// Buffered returns the number of bytes queued and not yet flushed.
func (w *Writer) Buffered() int { return w.n }

// Flush writes everything queued. After an error the queue is dropped and
// the connection should be closed.
func (w *Writer) Flush() error {
	if w.n == 0 {
		return nil
	}
	vec := w.vec[:0]
	start := 0
	for _, q := range w.blocks {
		if q.end > start {
			vec = append(vec, w.buf[start:q.end])
		}
		vec = append(vec, q.block)
		start = q.end
	}
	if start < len(w.buf) {
		vec = append(vec, w.buf[start:])
	}
	w.vec = vec
	var err error
	if len(vec) == 1 {
		_, err = w.w.Write(vec[0])
	} else {
		w.nb = vec
		_, err = w.nb.WriteTo(w.w)
	}
	clear(w.vec[:len(vec)]) // drop references to the caller's blocks
	clear(w.blocks)
	w.blocks = w.blocks[:0]
	w.buf = w.buf[:0]
	w.nb = nil
	w.n = 0
	if err != nil {
		return fmt.Errorf("wire: write: %w", err)
	}
	return nil
}

// WriteMessage queues m and flushes.
func (w *Writer) WriteMessage(m *Message) error {
	if err := w.Queue(m); err != nil {
		return err
	}
	return w.Flush()
}
