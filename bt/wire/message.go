package wire

import (
	"encoding/binary"
	"fmt"
)

// ID is a message id: the byte after the length prefix.
type ID uint8

// Message ids: BEP 3, BEP 5 (port), BEP 6 (fast extension), BEP 10
// (extended).
const (
	Choke         ID = 0
	Unchoke       ID = 1
	Interested    ID = 2
	NotInterested ID = 3
	Have          ID = 4
	Bitfield      ID = 5
	Request       ID = 6
	Piece         ID = 7
	Cancel        ID = 8
	Port          ID = 9
	Suggest       ID = 0x0d
	HaveAll       ID = 0x0e
	HaveNone      ID = 0x0f
	Reject        ID = 0x10
	AllowedFast   ID = 0x11
	Extended      ID = 20

	// KeepAlive is the zero-length message. It has no id on the wire; this
	// value only names it in a Message.
	KeepAlive ID = 0xff
)

var idNames = [...]string{
	Choke: "choke", Unchoke: "unchoke", Interested: "interested",
	NotInterested: "not interested", Have: "have", Bitfield: "bitfield",
	Request: "request", Piece: "piece", Cancel: "cancel", Port: "port",
	Suggest: "suggest", HaveAll: "have all", HaveNone: "have none",
	Reject: "reject request", AllowedFast: "allowed fast", Extended: "extended",
}

// String returns the message's name as the BEPs spell it.
func (id ID) String() string {
	if id == KeepAlive {
		return "keep-alive"
	}
	if int(id) < len(idNames) && idNames[id] != "" {
		return idNames[id]
	}
	return fmt.Sprintf("message %d", uint8(id))
}

// Known reports whether id is a message this package reads and writes.
func (id ID) Known() bool { return id == KeepAlive || int(id) < len(idNames) && idNames[id] != "" }

// payloadLen is the exact payload length (after the id byte) of messages
// whose size is fixed, or -1.
func (id ID) payloadLen() int {
	switch id {
	case Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone:
		return 0
	case Have, Suggest, AllowedFast:
		return 4
	case Request, Cancel, Reject:
		return 12
	case Port:
		return 2
	}
	return -1
}

// Message is one peer wire message, a union of the fields of every kind;
// ID says which fields are meaningful. Slices filled by a Reader point into
// the Reader's buffers and stay valid until its next call.
type Message struct {
	ID ID
	// Index is the piece index of have, request, piece, cancel, suggest,
	// reject request and allowed fast.
	Index uint32
	// Begin is the byte offset inside the piece of request, piece, cancel
	// and reject request.
	Begin uint32
	// Length is the block length of request, cancel and reject request;
	// for a piece read by Reader.Next it is the length of the block still
	// to be read.
	Length uint32
	// Port is the DHT port of a port message.
	Port uint16
	// ExtID is the extended message id of an extended message (0 is the
	// extension handshake).
	ExtID uint8
	// Bitfield holds the bytes of a bitfield message, high bit first.
	Bitfield []byte
	// Block holds the data of a piece message. The Writer does not copy it.
	Block []byte
	// Payload holds the payload of an extended message after ExtID.
	Payload []byte
}

// NewPiece returns a piece message for block at begin in piece index.
func NewPiece(index, begin uint32, block []byte) Message {
	return Message{ID: Piece, Index: index, Begin: begin, Block: block}
}

// NewRequest returns a request message (use ID Cancel or Reject for the
// two with the same fields).
func NewRequest(index, begin, length uint32) Message {
	return Message{ID: Request, Index: index, Begin: begin, Length: length}
}

// NewExtended returns an extended message with extended id ext.
func NewExtended(ext uint8, payload []byte) Message {
	return Message{ID: Extended, ExtID: ext, Payload: payload}
}

// WireLen returns the encoded size of m, length prefix included, or -1 for
// an unknown id.
func (m *Message) WireLen() int {
	if m.ID == KeepAlive {
		return 4
	}
	if n := m.ID.payloadLen(); n >= 0 {
		return 5 + n
	}
	switch m.ID {
	case Bitfield:
		return 5 + len(m.Bitfield)
	case Piece:
		return 13 + len(m.Block)
	case Extended:
		return 6 + len(m.Payload)
	}
	return -1
}

// header appends m's encoding to b except the block of a piece message.
// m.ID must be known.
func (m *Message) header(b []byte) []byte {
	n := m.WireLen()
	b = binary.BigEndian.AppendUint32(b, uint32(n-4))
	if m.ID == KeepAlive {
		return b
	}
	b = append(b, byte(m.ID))
	switch m.ID {
	case Have, Suggest, AllowedFast:
		b = binary.BigEndian.AppendUint32(b, m.Index)
	case Request, Cancel, Reject:
		b = binary.BigEndian.AppendUint32(b, m.Index)
		b = binary.BigEndian.AppendUint32(b, m.Begin)
		b = binary.BigEndian.AppendUint32(b, m.Length)
	case Port:
		b = binary.BigEndian.AppendUint16(b, m.Port)
	case Bitfield:
		b = append(b, m.Bitfield...)
	case Piece:
		b = binary.BigEndian.AppendUint32(b, m.Index)
		b = binary.BigEndian.AppendUint32(b, m.Begin)
	case Extended:
		b = append(b, m.ExtID)
		b = append(b, m.Payload...)
	}
	return b
}

// AppendBinary appends the wire encoding of m, length prefix included, to
// b. It fails only for an unknown id or a payload over 4 GiB.
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	if err := m.checkEncodable(); err != nil {
		return b, err
	}
	b = m.header(b)
	if m.ID == Piece {
		b = append(b, m.Block...)
	}
	return b, nil
}

// MarshalBinary returns the wire encoding of m, length prefix included.
func (m *Message) MarshalBinary() ([]byte, error) {
	if err := m.checkEncodable(); err != nil {
		return nil, err
	}
	return m.AppendBinary(make([]byte, 0, m.WireLen()))
}

func (m *Message) checkEncodable() error {
	n := m.WireLen()
	if n < 0 {
		return fmt.Errorf("wire: encode: unknown message id %d", uint8(m.ID))
	}
	if uint64(n-4) > 1<<32-1 {
		return fmt.Errorf("wire: encode %v: payload of %d bytes", m.ID, n)
	}
	return nil
}

// String describes m for logs, without its data.
func (m *Message) String() string {
	switch m.ID {
	case Have, Suggest, AllowedFast:
		return fmt.Sprintf("%v %d", m.ID, m.Index)
	case Request, Cancel, Reject:
		return fmt.Sprintf("%v %d+%d/%d", m.ID, m.Index, m.Begin, m.Length)
	case Piece:
		return fmt.Sprintf("%v %d+%d/%d", m.ID, m.Index, m.Begin, max(len(m.Block), int(m.Length)))
	case Port:
		return fmt.Sprintf("%v %d", m.ID, m.Port)
	case Bitfield:
		return fmt.Sprintf("%v of %d bytes", m.ID, len(m.Bitfield))
	case Extended:
		return fmt.Sprintf("%v %d of %d bytes", m.ID, m.ExtID, len(m.Payload))
	}
	return m.ID.String()
}
