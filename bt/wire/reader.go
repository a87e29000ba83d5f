package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// readBufSize is the Reader's buffer: a few blocks per read system call.
const readBufSize = 64 << 10

// Reader reads messages from a peer. It reuses its buffers, so reading
// allocates nothing after warm-up. A Reader is not safe for concurrent use.
type Reader struct {
	br  *bufio.Reader
	lim Limits
	geo Geometry

	pending int    // unread block bytes of the last piece message
	big     []byte // reused for payloads larger than br's buffer, at most lim.MaxMessage
	block   []byte // reused block buffer of Read, lim.MaxBlock bytes
}

// NewReader returns a Reader on r that enforces lim (zero fields mean the
// defaults).
func NewReader(r io.Reader, lim Limits) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readBufSize), lim: lim.withDefaults()}
}

// SetGeometry makes every later message be checked against g (see
// Geometry.Check). Until it is called (a magnet fetch does not know the
// torrent yet), indices and bitfields are not checked: the caller checks
// what it kept once it knows the geometry.
func (r *Reader) SetGeometry(g Geometry) { r.geo = g }

// Limits returns the limits r enforces.
func (r *Reader) Limits() Limits { return r.lim }

// Buffered returns the number of bytes read from the connection and not yet
// consumed as messages.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// Next reads the next message into m, overwriting all its fields. For a
// piece message it reads only the header: m.Length is the block length and
// the block must be read with ReadBlock (or it is skipped by the next call
// to Next). Bitfield and Payload point into r's buffers and are valid until
// the next call on r. At a clean end of stream between messages Next
// returns io.EOF; a peer's violation is a *ProtocolError.
func (r *Reader) Next(m *Message) error {
	if r.pending > 0 {
		if _, err := r.br.Discard(r.pending); err != nil {
			return fmt.Errorf("wire: skip block: %w", unexpected(err))
		}
		r.pending = 0
	}
	if cap(r.big) > readBufSize {
		r.big = nil // a rare large bitfield or extended message: do not keep it
	}
	*m = Message{}
	head, err := r.br.Peek(4)
	if err != nil {
		if len(head) == 0 && errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("wire: read length: %w", unexpected(err))
	}
	length := int64(binary.BigEndian.Uint32(head))
	if length == 0 {
		r.br.Discard(4)
		m.ID = KeepAlive
		return nil
	}
	if maxLen := int64(max(r.lim.MaxMessage, 9+r.lim.MaxBlock)); length > maxLen {
		return protoErr(KeepAlive, ErrTooLong, "length prefix %d > %d", length, maxLen)
	}
	head, err = r.br.Peek(5)
	if err != nil {
		return fmt.Errorf("wire: read message id: %w", unexpected(err))
	}
	id := ID(head[4])
	if err := r.checkLength(id, length); err != nil {
		return err
	}
	m.ID = id
	if id == Piece {
		head, err = r.br.Peek(13)
		if err != nil {
			return fmt.Errorf("wire: read piece header: %w", unexpected(err))
		}
		m.Index = binary.BigEndian.Uint32(head[5:])
		m.Begin = binary.BigEndian.Uint32(head[9:])
		m.Length = uint32(length - 9)
		r.br.Discard(13)
		r.pending = int(length - 9)
	} else {
		var p []byte // payload after the id
		if total := int(4 + length); total <= r.br.Size() {
			buf, err := r.br.Peek(total)
			if err != nil {
				return fmt.Errorf("wire: read %v: %w", id, unexpected(err))
			}
			p = buf[5:]
			r.br.Discard(total)
		} else {
			r.br.Discard(5)
			if cap(r.big) < int(length-1) {
				r.big = make([]byte, length-1)
			}
			p = r.big[:length-1]
			if _, err := io.ReadFull(r.br, p); err != nil {
				return fmt.Errorf("wire: read %v: %w", id, unexpected(err))
			}
		}
		m.parse(p)
	}
	if r.geo.Known() {
		return r.geo.Check(m, r.lim)
	}
	if id == Request || id == Cancel || id == Reject {
		return r.geo.Check(m, r.lim) // the block limit needs no geometry
	}
	return nil
}

// checkLength checks the length prefix against the message id before any
// payload is read.
func (r *Reader) checkLength(id ID, length int64) error {
	if n := id.payloadLen(); n >= 0 {
		if length != int64(1+n) {
			return protoErr(id, ErrBadLength, "length %d, want %d", length, 1+n)
		}
		return nil
	}
	switch id {
	case Piece:
		if length <= 9 {
			return protoErr(id, ErrBadLength, "length %d leaves no block", length)
		}
		if length > int64(9+r.lim.MaxBlock) {
			return protoErr(id, ErrTooLong, "block of %d bytes > %d", length-9, r.lim.MaxBlock)
		}
	case Bitfield:
		if r.geo.Known() {
			if want := int64(1 + r.geo.BitfieldLen()); length != want {
				return protoErr(id, ErrBadBitfield, "%d bytes for %d pieces, want %d", length-1, r.geo.NumPieces, want-1)
			}
		} else if length > int64(r.lim.MaxMessage) {
			return protoErr(id, ErrTooLong, "length %d > %d", length, r.lim.MaxMessage)
		}
	case Extended:
		if length < 2 {
			return protoErr(id, ErrBadLength, "length %d leaves no extended id", length)
		}
		if length > int64(r.lim.MaxMessage) {
			return protoErr(id, ErrTooLong, "length %d > %d", length, r.lim.MaxMessage)
		}
	default:
		return protoErr(KeepAlive, ErrUnknownMessage, "id %d with length %d", uint8(id), length)
	}
	return nil
}

// parse fills m's fields from the payload p after the id; the length was
// checked by checkLength.
func (m *Message) parse(p []byte) {
	switch m.ID {
	case Have, Suggest, AllowedFast:
		m.Index = binary.BigEndian.Uint32(p)
	case Request, Cancel, Reject:
		m.Index = binary.BigEndian.Uint32(p)
		m.Begin = binary.BigEndian.Uint32(p[4:])
		m.Length = binary.BigEndian.Uint32(p[8:])
	case Port:
		m.Port = binary.BigEndian.Uint16(p)
	case Bitfield:
		m.Bitfield = p
	case Extended:
		m.ExtID = p[0]
		m.Payload = p[1:]
	}
}

// Pending returns the number of block bytes of the last piece message not
// read yet.
func (r *Reader) Pending() int { return r.pending }

// ReadBlock reads the block of the piece message Next just returned into p,
// which must be exactly Pending bytes long.
func (r *Reader) ReadBlock(p []byte) error {
	if len(p) != r.pending {
		return fmt.Errorf("wire: read block: buffer of %d bytes for a block of %d", len(p), r.pending)
	}
	r.pending = 0
	if _, err := io.ReadFull(r.br, p); err != nil {
		return fmt.Errorf("wire: read block: %w", unexpected(err))
	}
	return nil
}

// Read reads the next message like Next and, for a piece message, its
// block into a buffer r reuses: m.Block is valid until the next call on r.
func (r *Reader) Read(m *Message) error {
	if err := r.Next(m); err != nil {
		return err
	}
	if m.ID != Piece {
		return nil
	}
	if cap(r.block) < r.pending {
		r.block = make([]byte, r.lim.MaxBlock)
	}
	m.Block = r.block[:r.pending]
	return r.ReadBlock(m.Block)
}

// unexpected turns io.EOF inside a message into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
