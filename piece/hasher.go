package piece

import (
	"crypto/sha1"
	"hash"

	"github.com/delugefs/delugefs/bt"
)

// Hasher computes a blob's piece hashes from its bytes written in order, so a
// file written sequentially needs no second read to be sealed. It implements
// io.Writer. A Hasher is not safe for concurrent use.
type Hasher struct {
	pieceLength int64
	h           hash.Hash
	inPiece     int64 // bytes of the current piece hashed so far
	length      int64
	pieces      []byte
}

// NewHasher returns a Hasher cutting pieces of pieceLength bytes.
func NewHasher(pieceLength int64) *Hasher {
	return &Hasher{pieceLength: pieceLength, h: sha1.New()}
}

// Write hashes p as the next bytes of the blob. It never fails.
func (hs *Hasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := hs.pieceLength - hs.inPiece
		chunk := p
		if int64(len(chunk)) > room {
			chunk = p[:room]
		}
		hs.h.Write(chunk)
		hs.inPiece += int64(len(chunk))
		hs.length += int64(len(chunk))
		p = p[len(chunk):]
		if hs.inPiece == hs.pieceLength {
			hs.pieces = hs.h.Sum(hs.pieces)
			hs.h.Reset()
			hs.inPiece = 0
		}
	}
	return n, nil
}

// Len returns the number of bytes hashed so far.
func (hs *Hasher) Len() int64 { return hs.length }

// PieceLength returns the piece length the Hasher cuts.
func (hs *Hasher) PieceLength() int64 { return hs.pieceLength }

// Info finishes the last piece and returns the blob's info dictionary, or nil
// for an empty blob (empty files have no blob). The Hasher must not be
// written to afterwards.
func (hs *Hasher) Info() *bt.Info {
	if hs.length == 0 {
		return nil
	}
	pieces := hs.pieces
	if hs.inPiece > 0 {
		pieces = hs.h.Sum(pieces)
	}
	return bt.NewInfo(hs.length, hs.pieceLength, pieces)
}
