package wire

// BlockSize is the block size every client uses: 16 KiB.
const BlockSize = 16 << 10

// Limits bound what a Reader accepts before it reads a payload. The zero
// value means the defaults.
type Limits struct {
	// MaxBlock bounds the block of a piece message and the length of a
	// request, cancel or reject request (default BlockSize).
	MaxBlock int
	// MaxMessage bounds the length prefix of a bitfield or an extended
	// message (default 1 MiB: a bitfield of 8 Mi pieces).
	MaxMessage int
}

// DefaultLimits are the limits of the zero Limits.
var DefaultLimits = Limits{MaxBlock: BlockSize, MaxMessage: 1 << 20}

func (l Limits) withDefaults() Limits {
	if l.MaxBlock <= 0 {
		l.MaxBlock = DefaultLimits.MaxBlock
	}
	if l.MaxMessage <= 0 {
		l.MaxMessage = DefaultLimits.MaxMessage
	}
	return l
}

// Geometry is the shape of a torrent that validation needs: the number of
// pieces, the piece length and the total length. The zero Geometry means
// "not known yet" (a magnet fetch before the metadata arrives): checks that
// need it are skipped.
type Geometry struct {
	NumPieces   int
	PieceLength int64
	Length      int64
}

// NewGeometry returns the geometry of a torrent of length bytes cut in
// pieces of pieceLength bytes.
func NewGeometry(length, pieceLength int64) Geometry {
	if pieceLength <= 0 || length < 0 {
		return Geometry{}
	}
	return Geometry{
		NumPieces:   int((length + pieceLength - 1) / pieceLength),
		PieceLength: pieceLength,
		Length:      length,
	}
}

// Known reports whether g describes a torrent.
func (g Geometry) Known() bool { return g.PieceLength > 0 }

// PieceSize returns the size of piece i (the last piece may be short), or
// 0 when i is outside the torrent.
func (g Geometry) PieceSize(i int) int64 {
	if i < 0 || i >= g.NumPieces {
		return 0
	}
	if i == g.NumPieces-1 {
		return g.Length - int64(i)*g.PieceLength
	}
	return g.PieceLength
}

// Offset returns the byte offset in the torrent of begin in piece index,
// computed in 64 bits.
func (g Geometry) Offset(index, begin uint32) int64 {
	return int64(index)*g.PieceLength + int64(begin)
}

// BitfieldLen returns the size in bytes of a bitfield of g's pieces.
func (g Geometry) BitfieldLen() int { return (g.NumPieces + 7) / 8 }

// CheckIndex checks that index names a piece of the torrent.
func (g Geometry) CheckIndex(id ID, index uint32) error {
	if uint64(index) >= uint64(g.NumPieces) {
		return protoErr(id, ErrOutOfRange, "piece %d of %d", index, g.NumPieces)
	}
	return nil
}

// CheckBlock checks that length bytes at begin in piece index lie inside
// the piece and that 0 < length <= maxBlock.
func (g Geometry) CheckBlock(id ID, index, begin, length uint32, maxBlock int) error {
	if length == 0 || int64(length) > int64(maxBlock) {
		return protoErr(id, ErrOutOfRange, "block of %d bytes at %d+%d (max %d)", length, index, begin, maxBlock)
	}
	if err := g.CheckIndex(id, index); err != nil {
		return err
	}
	if size := g.PieceSize(int(index)); int64(begin)+int64(length) > size {
		return protoErr(id, ErrOutOfRange, "block %d+%d/%d past the end of a piece of %d bytes", index, begin, length, size)
	}
	return nil
}

// CheckBitfield checks that b has exactly BitfieldLen bytes and no spare
// bit set after the last piece.
func (g Geometry) CheckBitfield(b []byte) error {
	if len(b) != g.BitfieldLen() {
		return protoErr(Bitfield, ErrBadBitfield, "%d bytes for %d pieces, want %d", len(b), g.NumPieces, g.BitfieldLen())
	}
	if spare := g.NumPieces % 8; spare != 0 && b[len(b)-1]&(0xff>>spare) != 0 {
		return protoErr(Bitfield, ErrBadBitfield, "spare bits set in last byte %#02x for %d pieces", b[len(b)-1], g.NumPieces)
	}
	return nil
}

// Check validates m against the torrent: indices inside it, blocks inside
// their piece and at most lim.MaxBlock long, a bitfield of the right size.
// Messages that carry no index always pass. With an unknown g only the
// block limit is checked.
func (g Geometry) Check(m *Message, lim Limits) error {
	lim = lim.withDefaults()
	switch m.ID {
	case Request, Cancel, Reject, Piece:
		length := m.Length
		if m.ID == Piece && m.Block != nil {
			length = uint32(len(m.Block))
		}
		if !g.Known() {
			if length == 0 || int64(length) > int64(lim.MaxBlock) {
				return protoErr(m.ID, ErrOutOfRange, "block of %d bytes (max %d)", length, lim.MaxBlock)
			}
			return nil
		}
		return g.CheckBlock(m.ID, m.Index, m.Begin, length, lim.MaxBlock)
	case Have, Suggest, AllowedFast:
		if !g.Known() {
			return nil
		}
		return g.CheckIndex(m.ID, m.Index)
	case Bitfield:
		if !g.Known() {
			return nil
		}
		return g.CheckBitfield(m.Bitfield)
	}
	return nil
}
