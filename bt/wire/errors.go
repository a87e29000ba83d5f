package wire

import (
	"errors"
	"fmt"
)

// Sentinel errors that callers branch on with errors.Is. Every error the
// codec returns for bad peer input is a *ProtocolError wrapping one of them.
var (
	// ErrTooLong reports a length prefix or field over the configured limit.
	ErrTooLong = errors.New("wire: message too long")
	// ErrBadLength reports a payload whose size does not fit its message.
	ErrBadLength = errors.New("wire: bad message length")
	// ErrUnknownMessage reports a message id this codec does not know.
	ErrUnknownMessage = errors.New("wire: unknown message")
	// ErrOutOfRange reports an index, offset or length outside the torrent
	// or over the block limit.
	ErrOutOfRange = errors.New("wire: out of range")
	// ErrBadBitfield reports a bitfield of the wrong size or with spare bits set.
	ErrBadBitfield = errors.New("wire: bad bitfield")
	// ErrBadHandshake reports a handshake that is not BitTorrent's.
	ErrBadHandshake = errors.New("wire: bad handshake")
	// ErrBadBencode reports malformed, non-canonical or too deep bencode.
	ErrBadBencode = errors.New("wire: bad bencode")
	// ErrBadExtension reports a well-formed extension message with bad fields.
	ErrBadExtension = errors.New("wire: bad extension message")
	// ErrMetadataHash reports assembled metadata whose SHA-1 is not the
	// wanted info-hash.
	ErrMetadataHash = errors.New("wire: metadata hash mismatch")
)

// ProtocolError is a violation of the protocol by the remote peer: the
// connection should be closed and Error logged.
type ProtocolError struct {
	ID     ID     // the message concerned; KeepAlive when not known
	Err    error  // one of the sentinel errors
	Reason string // what exactly was wrong, with the numbers
}

// Error returns the sentinel's message, the message name and the reason.
func (e *ProtocolError) Error() string {
	if e.ID == KeepAlive {
		return fmt.Sprintf("%v: %s", e.Err, e.Reason)
	}
	return fmt.Sprintf("%v: %v: %s", e.Err, e.ID, e.Reason)
}

// Unwrap returns the sentinel error.
func (e *ProtocolError) Unwrap() error { return e.Err }

func protoErr(id ID, sentinel error, format string, args ...any) error {
	return &ProtocolError{ID: id, Err: sentinel, Reason: fmt.Sprintf(format, args...)}
}
