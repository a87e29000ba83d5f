package swarm

import (
	"sync"
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

	// bufs[i] is the buffer piece i's blocks are assembled in (from the
	// pool), direct when the pool had none and its blocks go to the blob
	// file as they come, or nil before its first block. It is set by the
	// read loop that claims the piece's first block and cleared, with the
	// buffer back in the pool, by the verifier once the piece is written or
	// failed, before the actor clears a failed piece's claims: a read loop
	// loads it only after it claimed a block, so it never writes into a
	// buffer that went back to the pool.
	bufs []atomic.Pointer[pieceBuf]
	pool *bufPool
}

// pieceBuf is a piece assembled in memory.
type pieceBuf struct{ data []byte }

// direct marks a piece whose blocks are written to the blob as they come
// (the pool was empty when its first block arrived); it is verified from
// disk (Blob.VerifyPiece).
var direct = &pieceBuf{}

// bufPool is a bounded pool of piece buffers, allocated on first use.
type bufPool struct {
	size int // bytes per buffer: the piece length

	mu   sync.Mutex // guards the fields below
	free []*pieceBuf
	made int // buffers allocated and not dropped
	max  int // most buffers allocated at once
	peak int // most buffers in use at once (for tests and benchmarks)
	used int
}

// get returns a free buffer, or nil when max are in use.
func (p *bufPool) get() *pieceBuf {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b *pieceBuf
	switch {
	case len(p.free) > 0:
		b = p.free[len(p.free)-1]
		p.free[len(p.free)-1] = nil
		p.free = p.free[:len(p.free)-1]
	case p.made < p.max:
		p.made++
		b = &pieceBuf{data: make([]byte, p.size)}
	default:
		return nil
	}
	p.used++
	p.peak = max(p.peak, p.used)
	return b
}

// put gives a buffer back; once keep is false (the blob is complete) it is
// dropped for the garbage collector.
func (p *bufPool) put(b *pieceBuf, keep bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used--
	if keep {
		p.free = append(p.free, b)
		return
	}
	p.made--
	clear(p.free)
	p.made -= len(p.free)
	p.free = p.free[:0]
}

// maxActive is the picker's bound on pieces in flight (0: none, without
// buffers).
func (t *torrent) maxActive() int {
	if t.pool.max == 0 {
		return 0
	}
	return max(1, t.pool.max-2)
}

// bufFor returns the buffer of piece i (direct when the pool is empty).
// The caller has claimed one of the piece's blocks.
func (t *torrent) bufFor(i int) *pieceBuf {
	for {
		if b := t.bufs[i].Load(); b != nil {
			return b
		}
		nb := t.pool.get()
		if nb == nil {
			nb = direct
		}
		if t.bufs[i].CompareAndSwap(nil, nb) {
			return nb
		}
		if nb != direct {
			t.pool.put(nb, true)
		}
	}
}

// releaseBuf forgets piece i's buffer and gives it back to the pool.
func (t *torrent) releaseBuf(i int) {
	b := t.bufs[i].Swap(nil)
	if b != nil && b != direct {
		t.pool.put(b, !t.blob.Complete())
	}
}

func newTorrent(info *bt.Info, blob *piece.Blob, pieceMemory int64) *torrent {
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
	t.bufs = make([]atomic.Pointer[pieceBuf], n)
	t.pool = &bufPool{size: int(info.PieceLength)}
	if pieceMemory > 0 {
		t.pool.max = int(max(4, pieceMemory/info.PieceLength))
	}
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
