package wire

import (
	"fmt"

	"github.com/zeebo/bencode"
)

// Extension names this package speaks in the m dictionary of the extension
// handshake.
const (
	// ExtMetadata is BEP 9, fetching the info dictionary from peers.
	ExtMetadata = "ut_metadata"
)

// ExtHandshakeID is the extended message id of the extension handshake.
const ExtHandshakeID = 0

// Bounds on the extension handshake.
const (
	// MaxMetadataSize bounds metadata_size: the largest info dictionary
	// this package fetches or accepts an announcement of.
	MaxMetadataSize = 16 << 20
	maxExtensions   = 64
	maxExtNameLen   = 64
	maxReqq         = 1 << 20
	maxClientName   = 256
)

// ExtHandshake is the BEP 10 extension handshake: the payload of the
// extended message with id 0. Keys this package does not use are ignored
// when decoding and dropped when encoding.
type ExtHandshake struct {
	// M maps extension names to the extended message id the sender wants
	// to receive them with; 0 disables an extension.
	M map[string]int `bencode:"m"`
	// V is the client name and version.
	V string `bencode:"v,omitempty"`
	// P is the sender's listen port, 0 if not given.
	P int `bencode:"p,omitempty"`
	// Reqq is the number of outstanding requests the sender accepts.
	Reqq int `bencode:"reqq,omitempty"`
	// MetadataSize is the size of the info dictionary (BEP 9).
	MetadataSize int64 `bencode:"metadata_size,omitempty"`
	// YourIP is the receiver's address as the sender sees it: 4 or 16 bytes.
	YourIP []byte `bencode:"yourip,omitempty"`
}

// ParseExtHandshake decodes and validates an extension handshake payload.
// Decoding is strict (canonical bencode, one dictionary, nothing after it)
// and bounded (depth, sizes); a violation is a *ProtocolError.
func ParseExtHandshake(payload []byte) (*ExtHandshake, error) {
	if len(payload) == 0 || payload[0] != 'd' {
		return nil, protoErr(Extended, ErrBadExtension, "extension handshake is not a dictionary")
	}
	n, err := scanBencode(payload, maxBencodeDepth)
	if err != nil {
		return nil, err
	}
	if n != len(payload) {
		return nil, protoErr(Extended, ErrBadExtension, "%d bytes after the extension handshake", len(payload)-n)
	}
	h := new(ExtHandshake)
	if err := bencode.DecodeBytes(payload, h); err != nil {
		return nil, protoErr(Extended, ErrBadExtension, "decode extension handshake: %v", err)
	}
	if len(h.YourIP) == 0 {
		h.YourIP = nil
	}
	if h.M == nil {
		h.M = map[string]int{} // encoded as an empty m, as BEP 10 peers expect
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *ExtHandshake) validate() error {
	bad := func(format string, args ...any) error {
		return protoErr(Extended, ErrBadExtension, "extension handshake: "+format, args...)
	}
	if len(h.M) > maxExtensions {
		return bad("%d extensions > %d", len(h.M), maxExtensions)
	}
	for name, id := range h.M {
		if name == "" || len(name) > maxExtNameLen {
			return bad("extension name of %d bytes", len(name))
		}
		if id < 0 || id > 255 {
			return bad("extension %q with id %d", name, id)
		}
	}
	if len(h.V) > maxClientName {
		return bad("client name of %d bytes", len(h.V))
	}
	if h.P < 0 || h.P > 65535 {
		return bad("port %d", h.P)
	}
	if h.Reqq < 0 || h.Reqq > maxReqq {
		return bad("reqq %d", h.Reqq)
	}
	if h.MetadataSize < 0 || h.MetadataSize > MaxMetadataSize {
		return bad("metadata_size %d (max %d)", h.MetadataSize, MaxMetadataSize)
	}
	if n := len(h.YourIP); n != 0 && n != 4 && n != 16 {
		return bad("yourip of %d bytes", n)
	}
	return nil
}

// Ext returns the extended message id the sender of h wants for the
// extension name, and whether it supports it.
func (h *ExtHandshake) Ext(name string) (uint8, bool) {
	id, ok := h.M[name]
	if !ok || id <= 0 || id > 255 {
		return 0, false
	}
	return uint8(id), true
}

// Bencode returns the canonical encoding of h. It fails if h would not
// pass ParseExtHandshake.
func (h *ExtHandshake) Bencode() ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("wire: encode extension handshake: %w", err)
	}
	b, err := bencode.EncodeBytes(h)
	if err != nil {
		return nil, fmt.Errorf("wire: encode extension handshake: %w", err)
	}
	return b, nil
}
