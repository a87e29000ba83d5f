package piece

// Bounds of the piece-length rule.
const (
	MinLength    = 256 << 10 // the piece length of every file up to TargetPieces × 256 KiB
	MaxLength    = 8 << 20   // the longest piece: a stream's first byte stays one short piece away
	TargetPieces = 2048      // pieces a file is cut into before the piece length grows
)

// Length returns the piece length of a file of size bytes: 256 KiB up to
// 512 MiB, then doubling so that a file has about TargetPieces pieces (its
// manifest stays near 40 KiB), up to 8 MiB for files past 16 GiB.
func Length(size int64) int64 {
	l := int64(MinLength)
	for l < MaxLength && size > l*TargetPieces {
		l *= 2
	}
	return l
}

// NumPieces returns ceil(size / pieceLength).
func NumPieces(size, pieceLength int64) int {
	return int((size + pieceLength - 1) / pieceLength)
}
