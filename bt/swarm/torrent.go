package swarm

import (
	"sync/atomic"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/wire"
	"github.com/delugefs/delugefs/piece"
)

// torrent is what a swarm knows once it has the info dictionary: the blob
// and its geometry, plus the block claims the read loops share. It is
// published once through Swarm.state and immutable afterwards, except the
// claim bits, which are atomic.
type torrent struct {
	info    *bt.Info
	blob    *piece.Blob
	geo     piece.Geometry
	wgeo    wire.Geometry
	bpp     int // blocks per full piece
	nblocks int
	meta    *wire.MetadataServer

	// claimed has bit b set while block b is written or received and its
	// piece not failed: the read loop that sets it writes the block and
	// reports it; any other copy of the block is dropped unread, so a
	// block has one writer and the picker's record of who sent it is
	// right. The actor clears the bits of a piece that failed its hash.
	claimed []atomic.Uint64
}

func newTorrent(info *bt.Info, blob *piece.Blob) *torrent {
	t := &torrent{
		info: info,
		blob: blob,
		geo:  piece.Geometry{Length: info.Length, PieceLength: info.PieceLength},
		wgeo: wire.NewGeometry(info.Length, info.PieceLength),
		bpp:  int((info.PieceLength + piece.BlockSize - 1) / piece.BlockSize),
		meta: wire.NewMetadataServer(info.Bencode()),
	}
	n := info.NumPieces()
	t.nblocks = (n-1)*t.bpp + t.geo.NumBlocks(n-1)
	t.claimed = make([]atomic.Uint64, (t.nblocks+63)/64)
	return t
}

// blockID returns the global index of the aligned block index+begin of
// length bytes, or false when it is not one.
func (t *torrent) blockID(index, begin, length uint32) (int, bool) {
	n := t.geo.NumPieces()
	if int64(index) >= int64(n) || begin%piece.BlockSize != 0 {
		return 0, false
	}
	k := int(begin / piece.BlockSize)
	if k >= t.geo.NumBlocks(int(index)) || t.geo.Block(int(index), k).Length != int(length) {
		return 0, false
	}
	return int(index)*t.bpp + k, true
}

// claim sets the claim of block b and reports whether it was clear.
func (t *torrent) claim(b int) bool {
	m := uint64(1) << (b & 63)
	return t.claimed[b>>6].Or(m)&m == 0
}

func (t *torrent) unclaim(b int) {
	t.claimed[b>>6].And(^(uint64(1) << (b & 63)))
}

// setPiece sets (verified) or clears (failed, or not on disk) the claims of
// every block of piece i.
func (t *torrent) setPiece(i int, on bool) {
	base := i * t.bpp
	for b := base; b < base+t.geo.NumBlocks(i); b++ {
		if on {
			t.claim(b)
		} else {
			t.unclaim(b)
		}
	}
}

// covered reports whether every piece covering [off, off+n) is verified.
func (t *torrent) covered(off, n int64) bool {
	if n <= 0 {
		return true
	}
	last := int((off + n - 1) / t.info.PieceLength)
	for i := int(off / t.info.PieceLength); i <= last; i++ {
		if !t.blob.HasPiece(i) {
			return false
		}
	}
	return true
}
