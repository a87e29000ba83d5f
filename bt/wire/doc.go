// Package wire is the BitTorrent peer wire protocol codec: the handshake
// (BEP 3) with the fast extension (BEP 6) and extension protocol (BEP 10)
// reserved bits, every BEP 3 and BEP 6 message plus port (BEP 5) and
// extended (BEP 10), the BEP 10 extension handshake and the BEP 9
// ut_metadata messages with a pure serving side and a pure fetching state
// machine.
//
// # Structure
//
// The package owns no goroutines, sockets or clocks. The peer connection
// actor (built on top of it) owns one [Reader] in its read loop and one
// [Writer] in its write loop; the listener uses [ReadHandshakeHead] to route
// a new connection by info-hash before it answers with [WriteHandshake] and
// reads the rest with [ReadPeerID].
//
// # Hot path
//
// [Reader.Next] reads one message into a caller-owned [Message] without
// allocating: small payloads are parsed from the Reader's buffer, and a
// piece block is left unread so the caller can read it straight into a
// buffer of its choosing with [Reader.ReadBlock] (a pooled block, or the
// page of a pending read). [Reader.Read] does both steps with a buffer the
// Reader reuses. [Writer.Queue] encodes headers into a reused buffer and
// references piece blocks without copying them; [Writer.Flush] sends the
// whole batch as one vectored write (writev through [net.Buffers] on a
// TCP connection).
//
// # Extensions
//
// [ParseExtHandshake] and [ExtHandshake.Bencode] handle the BEP 10
// handshake; [ParseMetadataMsg] and [MetadataMsg.AppendBinary] the BEP 9
// messages. [MetadataServer] answers requests from the info dictionary a
// node holds; [MetadataFetcher] is the pure state machine that assembles
// it from peers, verifies it against the wanted info-hash and blames a
// peer proven to lie. [AllowedFastSet] computes the BEP 6 allowed fast set.
// Bencode from peers is checked by a small strict scanner (canonical form,
// depth, lengths inside the input) before github.com/zeebo/bencode decodes
// it, because zeebo/bencode bounds neither recursion nor allocation.
//
// # Errors and limits
//
// Everything a peer sends is untrusted. A length prefix over the limits, a
// payload of the wrong size for its message, an unknown message id, a
// request or block larger than [Limits.MaxBlock], a message outside the
// torrent's [Geometry], a bitfield of the wrong size or with spare bits set,
// malformed bencode: each is a [*ProtocolError] that wraps one of the
// sentinel errors ([ErrTooLong], [ErrBadLength], [ErrUnknownMessage], ...)
// and carries a reason, so the connection can be closed with a logged
// reason. Nothing the peer sends can make the codec panic or allocate more
// than the configured limits.
//
// Indices and offsets follow BEP 3 (32-bit index, begin and length on the
// wire); byte offsets in the torrent are computed in int64 by
// [Geometry.Offset], so blobs above 4 GiB work.
//
// # Concurrency
//
// A Reader, a Writer and a [MetadataFetcher] are each owned by one
// goroutine; none is safe for concurrent use. [MetadataServer] is immutable
// and safe for concurrent use.
package wire
