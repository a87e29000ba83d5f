package wire

import (
	"fmt"
	"io"

	"github.com/delugefs/delugefs/bt"
)

// Protocol is the handshake's first 20 bytes: the length byte 19 and the
// protocol name.
const Protocol = "\x13BitTorrent protocol"

// HandshakeLen is the size of a whole handshake on the wire.
const HandshakeLen = 68

// HandshakeHeadLen is the size of the part of a handshake before the peer
// id: protocol, reserved bytes and info-hash.
const HandshakeHeadLen = 48

// Reserved holds the 8 reserved handshake bytes, whose bits announce
// protocol extensions.
type Reserved [8]byte

// Reserved bits this package knows, as masks over the 8 bytes.
var (
	// ReservedDHT is BEP 5: the peer answers port messages (byte 7, 0x01).
	ReservedDHT = Reserved{7: 0x01}
	// ReservedFast is BEP 6, the fast extension (byte 7, 0x04).
	ReservedFast = Reserved{7: 0x04}
	// ReservedExtended is BEP 10, the extension protocol (byte 5, 0x10).
	ReservedExtended = Reserved{5: 0x10}
)

// Has reports whether every bit of mask is set in r.
func (r Reserved) Has(mask Reserved) bool {
	for i := range r {
		if r[i]&mask[i] != mask[i] {
			return false
		}
	}
	return true
}

// With returns r with the bits of mask set.
func (r Reserved) With(mask Reserved) Reserved {
	for i := range r {
		r[i] |= mask[i]
	}
	return r
}

// Fast reports whether the fast extension bit (BEP 6) is set.
func (r Reserved) Fast() bool { return r.Has(ReservedFast) }

// Extended reports whether the extension protocol bit (BEP 10) is set.
func (r Reserved) Extended() bool { return r.Has(ReservedExtended) }

// DHT reports whether the DHT bit (BEP 5) is set.
func (r Reserved) DHT() bool { return r.Has(ReservedDHT) }

// Handshake is the first message each side sends.
type Handshake struct {
	Reserved Reserved
	InfoHash bt.InfoHash
	PeerID   [20]byte
}

// AppendBinary appends the 68-byte encoding of h to b.
func (h *Handshake) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, Protocol...)
	b = append(b, h.Reserved[:]...)
	b = append(b, h.InfoHash[:]...)
	return append(b, h.PeerID[:]...), nil
}

// WriteHandshake writes the whole handshake in one write.
func WriteHandshake(w io.Writer, h Handshake) error {
	var buf [HandshakeLen]byte
	b, _ := h.AppendBinary(buf[:0])
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("wire: write handshake: %w", err)
	}
	return nil
}

// ReadHandshakeHead reads the first 48 bytes of a handshake: the protocol
// string, the reserved bytes and the info-hash. A listener calls it, looks
// the info-hash up, answers with WriteHandshake (or closes the
// connection), then calls ReadPeerID. A wrong protocol string is a
// *ProtocolError wrapping ErrBadHandshake.
func ReadHandshakeHead(r io.Reader) (Reserved, bt.InfoHash, error) {
	var buf [HandshakeHeadLen]byte
	var res Reserved
	var ih bt.InfoHash
	if _, err := io.ReadFull(r, buf[:]); err != nil {
		return res, ih, fmt.Errorf("wire: read handshake: %w", err)
	}
	if string(buf[:len(Protocol)]) != Protocol {
		return res, ih, protoErr(KeepAlive, ErrBadHandshake, "protocol %q", buf[:len(Protocol)])
	}
	copy(res[:], buf[20:28])
	copy(ih[:], buf[28:48])
	return res, ih, nil
}

// ReadPeerID reads the last 20 bytes of a handshake.
func ReadPeerID(r io.Reader) ([20]byte, error) {
	var id [20]byte
	if _, err := io.ReadFull(r, id[:]); err != nil {
		return id, fmt.Errorf("wire: read handshake peer id: %w", err)
	}
	return id, nil
}

// ReadHandshake reads a whole handshake: ReadHandshakeHead then ReadPeerID.
func ReadHandshake(r io.Reader) (Handshake, error) {
	var h Handshake
	var err error
	h.Reserved, h.InfoHash, err = ReadHandshakeHead(r)
	if err != nil {
		return h, err
	}
	h.PeerID, err = ReadPeerID(r)
	return h, err
}
