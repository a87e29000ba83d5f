package nsync

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Errors callers branch on (errors.Is). Failures of the peer's HTTP answer
// match the api sentinels (api.ErrUnauthorized for a wrong token,
// api.ErrNotFound for an unknown volume, api.ErrServer for a 5xx).
var (
	// ErrTooLarge is returned when a peer sends more than the Limits allow.
	ErrTooLarge = errors.New("nsync: peer sent more than the limits allow")
	// ErrBadPack is returned for a pack that is malformed, truncated or
	// fails its checksum.
	ErrBadPack = errors.New("nsync: malformed pack from peer")
	// ErrIncomplete is returned when the objects received (with ours) do
	// not hold the whole history of the peer's head.
	ErrIncomplete = errors.New("nsync: peer's pack misses objects")
	// ErrNoHead is returned when a peer advertises no branch to fetch.
	ErrNoHead = errors.New("nsync: peer advertises no head")
	// ErrNotEmpty is returned by Clone when the target exists and is not
	// an empty directory.
	ErrNotEmpty = errors.New("nsync: clone target exists and is not empty")
)

// Limits bound what one peer may send in one fetch. The pack is checked
// against them (and its checksum) before any object is decoded into
// memory, so a hostile peer can make a fetch fail but cannot make it use
// more than about PackBytes + Inflated bytes of memory.
type Limits struct {
	// PackBytes bounds the bytes of the pack (after side-band framing is
	// removed); the advertisement GET is bounded separately (1 MiB).
	PackBytes int64
	// Objects bounds the number of objects in the pack.
	Objects int
	// ObjectSize bounds the inflated size of any one object (a delta's
	// data and its result alike).
	ObjectSize int64
	// Inflated bounds the sum of the inflated sizes of all objects.
	Inflated int64
}

// DefaultLimits are the limits of a Fetch whose Options leave them zero: an
// incremental namespace fetch carries manifests and trees, kilobytes to a
// few megabytes.
var DefaultLimits = Limits{
	PackBytes:  256 << 20,
	Objects:    1 << 20,
	ObjectSize: 64 << 20,
	Inflated:   1 << 30,
}

// CloneLimits are the limits of Clone: the whole history of a namespace,
// spooled to disk rather than held in memory.
var CloneLimits = Limits{
	PackBytes:  16 << 30,
	Objects:    1 << 28,
	ObjectSize: 256 << 20,
	Inflated:   256 << 30,
}

// orDefault fills the zero fields of l from d.
func (l Limits) orDefault(d Limits) Limits {
	if l.PackBytes <= 0 {
		l.PackBytes = d.PackBytes
	}
	if l.Objects <= 0 {
		l.Objects = d.Objects
	}
	if l.ObjectSize <= 0 {
		l.ObjectSize = d.ObjectSize
	}
	if l.Inflated <= 0 {
		l.Inflated = d.Inflated
	}
	return l
}

// packHeaderLen and packTrailerLen frame a version 2 pack.
const (
	packHeaderLen  = 12
	packTrailerLen = 20
)

// checkPack checks the pack held in r (n bytes) before anything decodes it
// for real: the signature, version and object count, the trailing SHA-1,
// and each object's declared size (for deltas, the result size the delta
// declares) against lim, inflating each object once into a bounded sink. It
// returns the number of objects.
func checkPack(r io.ReaderAt, n int64, lim Limits) (int, error) {
	if n < packHeaderLen+packTrailerLen {
		return 0, fmt.Errorf("%w: %d bytes is too short for a pack", ErrBadPack, n)
	}
	var hdr [packHeaderLen]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return 0, fmt.Errorf("%w: read header: %w", ErrBadPack, err)
	}
	if !bytes.Equal(hdr[:4], []byte("PACK")) {
		return 0, fmt.Errorf("%w: no PACK signature (got %q)", ErrBadPack, hdr[:4])
	}
	if v := be32(hdr[4:8]); v != 2 && v != 3 {
		return 0, fmt.Errorf("%w: pack version %d", ErrBadPack, v)
	}
	count := be32(hdr[8:12])
	if int64(count) > int64(lim.Objects) {
		return 0, fmt.Errorf("%w: pack of %d objects (limit %d)", ErrTooLarge, count, lim.Objects)
	}
	// Each object takes at least 2 bytes of header and a zlib stream of
	// at least 8 bytes, so a count the bytes cannot hold is a lie.
	if int64(count)*10 > n {
		return 0, fmt.Errorf("%w: %d objects cannot fit in %d bytes", ErrBadPack, count, n)
	}

	h := sha1.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, n-packTrailerLen)); err != nil {
		return 0, fmt.Errorf("%w: hash pack: %w", ErrBadPack, err)
	}
	var trailer [packTrailerLen]byte
	if _, err := r.ReadAt(trailer[:], n-packTrailerLen); err != nil {
		return 0, fmt.Errorf("%w: read trailer: %w", ErrBadPack, err)
	}
	if !bytes.Equal(h.Sum(nil), trailer[:]) {
		return 0, fmt.Errorf("%w: checksum mismatch (truncated or corrupt)", ErrBadPack)
	}

	sc := packfile.NewScanner(io.NewSectionReader(r, 0, n))
	if _, _, err := sc.Header(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadPack, err)
	}
	var total int64
	var sink deltaSink
	for i := uint32(0); i < count; i++ {
		oh, err := sc.NextObjectHeader()
		if err != nil {
			return 0, fmt.Errorf("%w: object %d: %w", ErrBadPack, i, err)
		}
		if oh.Length < 0 || oh.Length > lim.ObjectSize {
			return 0, fmt.Errorf("%w: object %d declares %d bytes (limit %d)", ErrTooLarge, i, oh.Length, lim.ObjectSize)
		}
		if total += oh.Length; total > lim.Inflated {
			return 0, fmt.Errorf("%w: objects inflate to more than %d bytes", ErrTooLarge, lim.Inflated)
		}
		switch oh.Type {
		case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject,
			plumbing.OFSDeltaObject, plumbing.REFDeltaObject:
		default:
			return 0, fmt.Errorf("%w: object %d has type %d", ErrBadPack, i, oh.Type)
		}
		sink.reset()
		got, _, err := sc.NextObject(&sink)
		if err != nil {
			return 0, fmt.Errorf("%w: object %d: %w", ErrBadPack, i, err)
		}
		if got != oh.Length {
			return 0, fmt.Errorf("%w: object %d inflates to %d bytes, declares %d", ErrBadPack, i, got, oh.Length)
		}
		if oh.Type.IsDelta() {
			_, target, ok := sink.sizes()
			if !ok {
				return 0, fmt.Errorf("%w: object %d: bad delta header", ErrBadPack, i)
			}
			if target > uint64(lim.ObjectSize) {
				return 0, fmt.Errorf("%w: delta %d makes %d bytes (limit %d)", ErrTooLarge, i, target, lim.ObjectSize)
			}
			if total += int64(target); total > lim.Inflated {
				return 0, fmt.Errorf("%w: objects inflate to more than %d bytes", ErrTooLarge, lim.Inflated)
			}
		}
	}
	sum, err := sc.Checksum()
	if err != nil {
		return 0, fmt.Errorf("%w: read trailer: %w", ErrBadPack, err)
	}
	if !bytes.Equal(sum[:], trailer[:]) {
		return 0, fmt.Errorf("%w: %d bytes after the last object", ErrBadPack, n)
	}
	return int(count), nil
}

// decodePack checks pack and decodes it into an overlay of base (nil: no
// fallback), then checks that head and every received object's
// references are received or in base. A panic of the decoder (input it
// did not expect) is an ErrBadPack.
func decodePack(pack []byte, base storer.EncodedObjectStorer, lim Limits, head plumbing.Hash) (*overlay, error) {
	ov := newOverlay(base, lim)
	err := safely(func() error {
		if _, err := checkPack(bytes.NewReader(pack), int64(len(pack)), lim); err != nil {
			return err
		}
		p, err := packfile.NewParserWithStorage(packfile.NewScanner(bytes.NewReader(pack)), ov)
		if err == nil {
			_, err = p.Parse()
		}
		if err != nil {
			if !errors.Is(err, ErrTooLarge) {
				err = fmt.Errorf("%w: %w", ErrBadPack, err)
			}
			return fmt.Errorf("decode pack: %w", err)
		}
		return ov.checkClosed(head)
	})
	if err != nil {
		return nil, err
	}
	return ov, nil
}

// safely runs fn, turning a panic (go-git's decoders meeting input they
// did not expect) into an ErrBadPack.
func safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: decoder panicked: %v", ErrBadPack, r)
		}
	}()
	return fn()
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// deltaSink keeps the first bytes written to it (a delta's header) and
// discards the rest.
type deltaSink struct {
	head [24]byte
	n    int
}

func (s *deltaSink) reset() { s.n = 0 }

func (s *deltaSink) Write(p []byte) (int, error) {
	if s.n < len(s.head) {
		s.n += copy(s.head[s.n:], p)
	}
	return len(p), nil
}

// sizes decodes the source and target sizes a delta starts with.
func (s *deltaSink) sizes() (src, target uint64, ok bool) {
	b := s.head[:s.n]
	src, b, ok = uvarint(b)
	if !ok {
		return 0, 0, false
	}
	target, _, ok = uvarint(b)
	return src, target, ok
}

// uvarint decodes git's delta size encoding (7 bits a byte, least
// significant first).
func uvarint(b []byte) (uint64, []byte, bool) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, b[i+1:], true
		}
	}
	return 0, nil, false
}
