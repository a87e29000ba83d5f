package wire

import (
	"crypto/sha1"
	"fmt"
	"slices"
	"strconv"

	"github.com/zeebo/bencode"

	"github.com/delugefs/delugefs/bt"
)

// MetadataPieceSize is the size of a ut_metadata piece (BEP 9); the last
// piece may be short.
const MetadataPieceSize = 16 << 10

// MetadataType is the msg_type of a ut_metadata message.
type MetadataType int

// The ut_metadata message types of BEP 9.
const (
	MetadataRequest MetadataType = 0
	MetadataData    MetadataType = 1
	MetadataReject  MetadataType = 2
)

// String returns the type's name.
func (t MetadataType) String() string {
	switch t {
	case MetadataRequest:
		return "request"
	case MetadataData:
		return "data"
	case MetadataReject:
		return "reject"
	}
	return "msg_type " + strconv.Itoa(int(t))
}

// maxMetadataPieces bounds the piece field.
const maxMetadataPieces = MaxMetadataSize / MetadataPieceSize

// MetadataMsg is a ut_metadata message: the payload of an extended message
// whose id is the receiver's ut_metadata id.
type MetadataMsg struct {
	Type  MetadataType
	Piece int
	// TotalSize is the size of the whole info dictionary; data messages
	// only.
	TotalSize int64
	// Data is the piece's bytes; data messages only. After
	// ParseMetadataMsg it points into the payload.
	Data []byte
}

// metadataDict is the bencoded head of a ut_metadata message; pointers
// tell missing keys apart.
type metadataDict struct {
	MsgType   *int   `bencode:"msg_type"`
	Piece     *int   `bencode:"piece"`
	TotalSize *int64 `bencode:"total_size"`
}

// metadataPieceLen returns the length of piece i of metadata of total
// bytes, or -1 when the piece is outside it.
func metadataPieceLen(i int, total int64) int {
	start := int64(i) * MetadataPieceSize
	if i < 0 || start >= total {
		return -1
	}
	return int(min(MetadataPieceSize, total-start))
}

// ParseMetadataMsg decodes a ut_metadata message strictly: a canonical
// bencoded dictionary, followed by the piece's bytes for a data message and
// by nothing otherwise. A data message must carry a total_size within
// MaxMetadataSize and exactly the bytes of its piece. Unknown msg_type
// values are returned (BEP 9 says to ignore them), not refused.
func ParseMetadataMsg(payload []byte) (MetadataMsg, error) {
	var m MetadataMsg
	bad := func(format string, args ...any) error {
		return protoErr(Extended, ErrBadExtension, "ut_metadata: "+format, args...)
	}
	if len(payload) == 0 || payload[0] != 'd' {
		return m, bad("not a dictionary")
	}
	n, err := scanBencode(payload, maxBencodeDepth)
	if err != nil {
		return m, err
	}
	var d metadataDict
	if err := bencode.DecodeBytes(payload[:n], &d); err != nil {
		return m, bad("decode: %v", err)
	}
	if d.MsgType == nil || d.Piece == nil {
		return m, bad("msg_type or piece missing")
	}
	m.Type, m.Piece = MetadataType(*d.MsgType), *d.Piece
	if m.Type < 0 || m.Type > 255 {
		return m, bad("msg_type %d", m.Type)
	}
	if m.Piece < 0 || m.Piece >= maxMetadataPieces {
		return m, bad("piece %d", m.Piece)
	}
	rest := payload[n:]
	if m.Type != MetadataData {
		if len(rest) != 0 {
			return m, bad("%d bytes after a %v message", len(rest), m.Type)
		}
		return m, nil
	}
	if d.TotalSize == nil {
		return m, bad("data without total_size")
	}
	m.TotalSize = *d.TotalSize
	if m.TotalSize <= 0 || m.TotalSize > MaxMetadataSize {
		return m, bad("total_size %d (max %d)", m.TotalSize, MaxMetadataSize)
	}
	want := metadataPieceLen(m.Piece, m.TotalSize)
	if want < 0 {
		return m, bad("piece %d past total_size %d", m.Piece, m.TotalSize)
	}
	if len(rest) != want {
		return m, bad("piece %d of %d bytes, want %d", m.Piece, len(rest), want)
	}
	m.Data = rest
	return m, nil
}

// AppendBinary appends the encoding of m (the extended message payload) to
// b.
func (m *MetadataMsg) AppendBinary(b []byte) ([]byte, error) {
	if m.Type < 0 || m.Type > 255 || m.Piece < 0 || m.Piece >= maxMetadataPieces {
		return b, fmt.Errorf("wire: encode ut_metadata %v of piece %d: out of range", m.Type, m.Piece)
	}
	b = append(b, "d8:msg_typei"...)
	b = strconv.AppendInt(b, int64(m.Type), 10)
	b = append(b, "e5:piecei"...)
	b = strconv.AppendInt(b, int64(m.Piece), 10)
	if m.Type != MetadataData {
		return append(b, "ee"...), nil
	}
	b = append(b, "e10:total_sizei"...)
	b = strconv.AppendInt(b, m.TotalSize, 10)
	b = append(b, "ee"...)
	return append(b, m.Data...), nil
}

// MetadataServer answers ut_metadata requests from the info dictionary it
// holds. It is immutable and safe for concurrent use.
type MetadataServer struct {
	info []byte
}

// NewMetadataServer returns a server of info, the bencoded info dictionary
// (bt.Info.Bencode). With nil info every request is rejected (a node that
// is still fetching the metadata itself).
func NewMetadataServer(info []byte) *MetadataServer {
	if int64(len(info)) > MaxMetadataSize {
		info = nil
	}
	return &MetadataServer{info: info}
}

// Size returns the metadata_size to announce in the extension handshake (0
// when there is nothing to serve).
func (s *MetadataServer) Size() int64 { return int64(len(s.info)) }

// Answer returns the reply to m: the piece as a data message, or a reject
// when the piece does not exist or there is no metadata. ok is false when m
// needs no reply (it is not a request). Data points into the server's info.
func (s *MetadataServer) Answer(m MetadataMsg) (reply MetadataMsg, ok bool) {
	if m.Type != MetadataRequest {
		return MetadataMsg{}, false
	}
	n := metadataPieceLen(m.Piece, int64(len(s.info)))
	if n < 0 {
		return MetadataMsg{Type: MetadataReject, Piece: m.Piece}, true
	}
	start := m.Piece * MetadataPieceSize
	return MetadataMsg{
		Type:      MetadataData,
		Piece:     m.Piece,
		TotalSize: int64(len(s.info)),
		Data:      s.info[start : start+n : start+n],
	}, true
}

// maxMetadataOutstanding bounds the requests in flight to one peer.
const maxMetadataOutstanding = 4

// MetadataFetcher assembles the info dictionary of want from ut_metadata
// pieces sent by peers named by P (any comparable key the caller uses for
// its connections). It is a pure state machine: the caller tells it about
// peers and messages and sends what Next returns; it does no I/O and keeps
// no clock (a caller that times a peer out calls RemovePeer).
//
// An attempt uses one total size, the first size a usable peer announced.
// The first attempt spreads its requests over every peer announcing that
// size. When the assembled bytes do not hash to want, nobody can tell which
// piece lied, so later attempts draw every piece from a single peer, one
// peer after the other: a peer whose own pieces fail the hash is proven
// wrong, blamed and banned from the fetcher.
//
// A MetadataFetcher is not safe for concurrent use.
type MetadataFetcher[P comparable] struct {
	want    bt.InfoHash
	maxSize int64

	peers  []fetchPeer[P] // usable peers in the order they were added
	banned map[P]bool     // peers proven to send bad metadata

	single bool // attempts draw from one peer (after a mixed attempt failed)
	source P    // the one peer of a single-source attempt

	size     int64  // this attempt's total size; 0 when no attempt runs
	buf      []byte // size bytes being assembled
	have     []bool // pieces received
	from     []P    // who sent each received piece
	inflight []int  // requests in flight per piece

	info []byte // the verified metadata, once done
}

type fetchPeer[P comparable] struct {
	key      P
	size     int64 // metadata_size it announced
	rejected bool  // it rejected a request: ask it no more
	reqs     []int // pieces requested and not answered
}

// NewMetadataFetcher returns a fetcher of the info dictionary whose SHA-1
// is want, accepting at most maxSize bytes (MaxMetadataSize when
// maxSize <= 0 or above it).
func NewMetadataFetcher[P comparable](want bt.InfoHash, maxSize int64) *MetadataFetcher[P] {
	if maxSize <= 0 || maxSize > MaxMetadataSize {
		maxSize = MaxMetadataSize
	}
	return &MetadataFetcher[P]{want: want, maxSize: maxSize, banned: map[P]bool{}}
}

// Done reports whether the metadata is complete and verified.
func (f *MetadataFetcher[P]) Done() bool { return f.info != nil }

// Info returns the verified info dictionary, or nil before Done.
func (f *MetadataFetcher[P]) Info() []byte { return f.info }

// Size returns the total size of the current attempt, 0 when none runs.
func (f *MetadataFetcher[P]) Size() int64 { return f.size }

// Banned reports whether p was proven to send metadata that fails its hash.
func (f *MetadataFetcher[P]) Banned(p P) bool { return f.banned[p] }

// AddPeer adds p, which supports ut_metadata and announced size (the
// metadata_size of its extension handshake). A size of 0 (the peer has no
// metadata) is ignored; a negative size or one over the limit is a
// *ProtocolError. Adding a known peer again updates its size.
func (f *MetadataFetcher[P]) AddPeer(p P, size int64) error {
	if size < 0 || size > f.maxSize {
		return protoErr(Extended, ErrBadExtension, "ut_metadata: metadata_size %d (max %d)", size, f.maxSize)
	}
	if size == 0 || f.banned[p] || f.Done() {
		return nil
	}
	if i := f.find(p); i >= 0 {
		f.dropRequests(i)
		f.peers[i].size = size
	} else {
		f.peers = append(f.peers, fetchPeer[P]{key: p, size: size})
	}
	f.restartIfStuck()
	return nil
}

// RemovePeer forgets p (its connection closed or timed out); its requests
// in flight may go to other peers.
func (f *MetadataFetcher[P]) RemovePeer(p P) {
	i := f.find(p)
	if i < 0 {
		return
	}
	f.dropRequests(i)
	f.peers = slices.Delete(f.peers, i, i+1)
	f.restartIfStuck()
}

// usable reports whether the current attempt may ask fp.
func (f *MetadataFetcher[P]) usable(fp *fetchPeer[P]) bool {
	return f.size != 0 && fp.size == f.size && !fp.rejected && (!f.single || fp.key == f.source)
}

// Next returns the next request to send to p, if there is one: a piece not
// received yet, preferring pieces no other peer is sending. Call it until
// it returns false after adding p and after each message from p, and
// again for every peer after Receive returned an error (a new attempt).
func (f *MetadataFetcher[P]) Next(p P) (MetadataMsg, bool) {
	i := f.find(p)
	if i < 0 || f.Done() {
		return MetadataMsg{}, false
	}
	fp := &f.peers[i]
	if !f.usable(fp) || len(fp.reqs) >= maxMetadataOutstanding {
		return MetadataMsg{}, false
	}
	best := -1
	for piece, got := range f.have {
		if got || slices.Contains(fp.reqs, piece) {
			continue
		}
		if best < 0 || f.inflight[piece] < f.inflight[best] {
			best = piece
		}
	}
	if best < 0 {
		return MetadataMsg{}, false
	}
	fp.reqs = append(fp.reqs, best)
	f.inflight[best]++
	return MetadataMsg{Type: MetadataRequest, Piece: best}, true
}

// Receive handles a ut_metadata message from p. When it completes the
// metadata and the SHA-1 matches, it returns the info dictionary. When the
// SHA-1 does not match, it returns an error wrapping ErrMetadataHash,
// starts a new attempt, and returns in blame the peer proven wrong, if the
// failed attempt had a single source (now banned: close its connection).
// A data message whose total_size contradicts the attempt's is a
// *ProtocolError from p. Requests are not handled here (see
// MetadataServer); unsolicited data and unknown types are ignored.
func (f *MetadataFetcher[P]) Receive(p P, m MetadataMsg) (info []byte, blame []P, err error) {
	i := f.find(p)
	if i < 0 || f.Done() {
		return nil, nil, nil
	}
	fp := &f.peers[i]
	k := slices.Index(fp.reqs, m.Piece)
	switch m.Type {
	case MetadataReject:
		if k >= 0 {
			f.dropRequest(i, k)
			fp.rejected = true
			f.restartIfStuck()
		}
		return nil, nil, nil
	case MetadataData:
	default:
		return nil, nil, nil
	}
	if k < 0 {
		return nil, nil, nil // not asked of p (or asked in an abandoned attempt)
	}
	f.dropRequest(i, k)
	if m.TotalSize != f.size {
		return nil, nil, protoErr(Extended, ErrBadExtension, "ut_metadata: total_size %d, announced %d", m.TotalSize, f.size)
	}
	if n := metadataPieceLen(m.Piece, f.size); n < 0 || len(m.Data) != n {
		return nil, nil, protoErr(Extended, ErrBadExtension, "ut_metadata: piece %d of %d bytes for metadata of %d", m.Piece, len(m.Data), f.size)
	}
	if f.have[m.Piece] {
		return nil, nil, nil // a duplicate answer
	}
	copy(f.buf[m.Piece*MetadataPieceSize:], m.Data)
	f.have[m.Piece] = true
	f.from[m.Piece] = p
	if slices.Contains(f.have, false) {
		return nil, nil, nil
	}
	if bt.InfoHash(sha1.Sum(f.buf)) == f.want {
		f.info = f.buf
		f.peers, f.have, f.from, f.inflight = nil, nil, nil, nil
		return f.info, nil, nil
	}
	var senders []P
	for _, q := range f.from {
		if !slices.Contains(senders, q) {
			senders = append(senders, q)
		}
	}
	err = fmt.Errorf("wire: fetch metadata of %d bytes from %d peers: sha-1 %x, want %v: %w",
		f.size, len(senders), sha1.Sum(f.buf), f.want, ErrMetadataHash)
	if len(senders) == 1 {
		blame = senders
		f.banned[senders[0]] = true
		if j := f.find(senders[0]); j >= 0 {
			f.peers = slices.Delete(f.peers, j, j+1)
		}
	}
	f.single = true
	f.newAttempt()
	return nil, blame, err
}

func (f *MetadataFetcher[P]) find(p P) int {
	for i := range f.peers {
		if f.peers[i].key == p {
			return i
		}
	}
	return -1
}

func (f *MetadataFetcher[P]) dropRequest(i, k int) {
	f.inflight[f.peers[i].reqs[k]]--
	f.peers[i].reqs = slices.Delete(f.peers[i].reqs, k, k+1)
}

func (f *MetadataFetcher[P]) dropRequests(i int) {
	for _, piece := range f.peers[i].reqs {
		if piece < len(f.inflight) {
			f.inflight[piece]--
		}
	}
	f.peers[i].reqs = nil
}

// newAttempt abandons the current attempt (requests in flight are
// forgotten; late answers are ignored) and starts one with the first peer
// that has not rejected, as the only source once single is set.
func (f *MetadataFetcher[P]) newAttempt() {
	f.size, f.buf, f.have, f.from, f.inflight = 0, nil, nil, nil, nil
	var zero P
	f.source = zero
	for i := range f.peers {
		f.peers[i].reqs = nil
	}
	for _, fp := range f.peers {
		if fp.rejected {
			continue
		}
		n := int((fp.size + MetadataPieceSize - 1) / MetadataPieceSize)
		f.size = fp.size
		f.source = fp.key
		f.buf = make([]byte, fp.size)
		f.have = make([]bool, n)
		f.from = make([]P, n)
		f.inflight = make([]int, n)
		return
	}
}

// restartIfStuck starts a new attempt when no peer can serve the current
// one (none runs, or its peers left or rejected).
func (f *MetadataFetcher[P]) restartIfStuck() {
	if f.Done() {
		return
	}
	for i := range f.peers {
		if f.usable(&f.peers[i]) {
			return
		}
	}
	f.newAttempt()
}
