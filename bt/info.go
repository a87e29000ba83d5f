package bt

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/zeebo/bencode"
)

// Bounds on the info dictionaries ParseInfo accepts.
const (
	MinPieceLength = 16 << 10 // 16 KiB: one block
	MaxPieceLength = 64 << 20 // 64 MiB
	MaxPieces      = 1 << 22  // 4 Mi pieces: an 80 MiB pieces string
	BlockSize      = 16 << 10 // the unit of a request on the wire
)

// ErrInfo is wrapped by every error ParseInfo returns for a dictionary that
// decodes but breaks the rules.
var ErrInfo = errors.New("bt: invalid info dictionary")

// Info is a v1 single-file info dictionary. Length and offsets are int64.
// An Info is immutable once made; it is safe for concurrent use.
type Info struct {
	Name        string
	Length      int64
	PieceLength int64
	Pieces      []byte // 20 bytes per piece, concatenated

	raw  []byte   // the exact bytes it was parsed from, or nil for a canonical encoding
	hash InfoHash // SHA-1 of Bencode(), computed once
}

// NewInfo returns the info dictionary of a blob of length bytes cut into
// pieces of pieceLength with the given concatenated piece hashes. Its name is
// derived from the contents (the hex SHA-1 of the piece hashes), so the same
// contents give the same info-hash on every node.
func NewInfo(length, pieceLength int64, pieces []byte) *Info {
	sum := sha1.Sum(pieces)
	i := &Info{
		Name:        hex.EncodeToString(sum[:]),
		Length:      length,
		PieceLength: pieceLength,
		Pieces:      pieces,
	}
	i.hash = sha1.Sum(i.Bencode())
	return i
}

// NumPieces returns the number of pieces: ceil(Length / PieceLength).
func (i *Info) NumPieces() int {
	return len(i.Pieces) / sha1.Size
}

// PieceHash returns the SHA-1 that piece n must hash to.
func (i *Info) PieceHash(n int) [20]byte {
	var h [20]byte
	copy(h[:], i.Pieces[n*sha1.Size:])
	return h
}

// PieceOffset returns the offset of piece n in the blob.
func (i *Info) PieceOffset(n int) int64 {
	return int64(n) * i.PieceLength
}

// PieceSize returns the length of piece n; the last piece may be short.
func (i *Info) PieceSize(n int) int64 {
	off := i.PieceOffset(n)
	if rest := i.Length - off; rest < i.PieceLength {
		return rest
	}
	return i.PieceLength
}

// Bencode returns the bencoded info dictionary: the bytes it was parsed from,
// or its canonical encoding. The caller must not modify the result.
func (i *Info) Bencode() []byte {
	if i.raw != nil {
		return i.raw
	}
	var b []byte
	b = append(b, "d6:lengthi"...)
	b = strconv.AppendInt(b, i.Length, 10)
	b = append(b, "e4:name"...)
	b = appendString(b, i.Name)
	b = append(b, "12:piece lengthi"...)
	b = strconv.AppendInt(b, i.PieceLength, 10)
	b = append(b, "e6:pieces"...)
	b = appendString(b, string(i.Pieces))
	b = append(b, 'e')
	return b
}

func appendString(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// Hash returns the info-hash: the SHA-1 of Bencode().
func (i *Info) Hash() InfoHash {
	if i.hash.IsZero() {
		return sha1.Sum(i.Bencode())
	}
	return i.hash
}

// infoDict is the decoding shape of an info dictionary.
type infoDict struct {
	Name        *string            `bencode:"name"`
	Length      *int64             `bencode:"length"`
	PieceLength *int64             `bencode:"piece length"`
	Pieces      *string            `bencode:"pieces"`
	Files       bencode.RawMessage `bencode:"files"`
}

// ParseInfo parses and checks a bencoded info dictionary. It keeps raw, so
// the info-hash of the result is the SHA-1 of raw even if the dictionary has
// keys this package does not know.
func ParseInfo(raw []byte) (*Info, error) {
	if err := CheckBencode(raw, 4); err != nil {
		return nil, fmt.Errorf("parse info: %w", err)
	}
	if len(raw) == 0 || raw[0] != 'd' {
		return nil, fmt.Errorf("%w: not a dictionary", ErrInfo)
	}
	var d infoDict
	if err := bencode.DecodeBytes(raw, &d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfo, err)
	}
	if d.Files != nil {
		return nil, fmt.Errorf("%w: multi-file torrents are not supported", ErrInfo)
	}
	if d.Name == nil || d.Length == nil || d.PieceLength == nil || d.Pieces == nil {
		return nil, fmt.Errorf("%w: missing name, length, piece length or pieces", ErrInfo)
	}
	i := &Info{
		Name:        *d.Name,
		Length:      *d.Length,
		PieceLength: *d.PieceLength,
		Pieces:      []byte(*d.Pieces),
		raw:         append([]byte(nil), raw...),
	}
	if err := i.check(); err != nil {
		return nil, err
	}
	i.hash = sha1.Sum(i.raw)
	return i, nil
}

// check enforces the geometry rules on i.
func (i *Info) check() error {
	switch {
	case i.Name == "" || i.Name == "." || i.Name == ".." || strings.ContainsAny(i.Name, "/\\\x00"):
		return fmt.Errorf("%w: unsafe name %q", ErrInfo, i.Name)
	case i.Length <= 0:
		return fmt.Errorf("%w: length %d must be positive", ErrInfo, i.Length)
	case i.PieceLength < MinPieceLength || i.PieceLength > MaxPieceLength || i.PieceLength&(i.PieceLength-1) != 0:
		return fmt.Errorf("%w: piece length %d is not a power of two in [%d, %d]", ErrInfo, i.PieceLength, MinPieceLength, MaxPieceLength)
	case len(i.Pieces)%sha1.Size != 0:
		return fmt.Errorf("%w: pieces string of %d bytes is not a multiple of 20", ErrInfo, len(i.Pieces))
	}
	want := (i.Length + i.PieceLength - 1) / i.PieceLength
	if want > MaxPieces {
		return fmt.Errorf("%w: %d pieces, more than %d", ErrInfo, want, MaxPieces)
	}
	if got := int64(len(i.Pieces) / sha1.Size); got != want {
		return fmt.Errorf("%w: %d piece hashes for %d bytes in pieces of %d (want %d)", ErrInfo, got, i.Length, i.PieceLength, want)
	}
	return nil
}
