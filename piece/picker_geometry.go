package piece

import (
	"errors"
	"fmt"
)

// BlockSize is the size of a request on the wire: 16 KiB. The last block of
// the last piece (and of every piece when the piece length is not a multiple
// of it, which a power-of-two piece length rules out) may be shorter.
const BlockSize = 16 << 10

// ErrGeometry is returned for a blob geometry the picker cannot serve.
var ErrGeometry = errors.New("piece: bad geometry")

// Geometry is the shape of one blob: its length and its piece length. All
// offsets are 64-bit.
type Geometry struct {
	Length      int64 // bytes in the blob, > 0
	PieceLength int64 // bytes in every piece but the last, > 0
}

// Check reports whether g describes a blob the picker can serve.
func (g Geometry) Check() error {
	switch {
	case g.Length <= 0:
		return fmt.Errorf("%w: length %d", ErrGeometry, g.Length)
	case g.PieceLength <= 0:
		return fmt.Errorf("%w: piece length %d", ErrGeometry, g.PieceLength)
	case g.PieceLength > 1<<30:
		return fmt.Errorf("%w: piece length %d over 1 GiB", ErrGeometry, g.PieceLength)
	case (g.Length+g.PieceLength-1)/g.PieceLength > 1<<31-1:
		return fmt.Errorf("%w: too many pieces", ErrGeometry)
	}
	return nil
}

// NumPieces returns the number of pieces: ceil(Length / PieceLength).
func (g Geometry) NumPieces() int {
	return int((g.Length + g.PieceLength - 1) / g.PieceLength)
}

// PieceSize returns the size of piece i; only the last piece may be short.
func (g Geometry) PieceSize(i int) int64 {
	off := int64(i) * g.PieceLength
	return min(g.PieceLength, g.Length-off)
}

// NumBlocks returns the number of blocks of piece i.
func (g Geometry) NumBlocks(i int) int {
	return int((g.PieceSize(i) + BlockSize - 1) / BlockSize)
}

// Block returns block k of piece i.
func (g Geometry) Block(i, k int) Block {
	begin := int64(k) * BlockSize
	return Block{Piece: i, Begin: int(begin), Length: int(min(BlockSize, g.PieceSize(i)-begin))}
}

// Block is one request on the wire: Length bytes at Begin inside piece Piece.
// The picker only deals in aligned blocks: Begin is a multiple of BlockSize
// and Length is BlockSize except at the end of a piece.
type Block struct {
	Piece  int
	Begin  int
	Length int
}

// Offset returns the block's byte offset in the blob.
func (b Block) Offset(g Geometry) int64 {
	return int64(b.Piece)*g.PieceLength + int64(b.Begin)
}

// String formats b as "piece.block", block counted in 16 KiB units.
func (b Block) String() string {
	return fmt.Sprintf("%d.%d", b.Piece, b.Begin/BlockSize)
}
