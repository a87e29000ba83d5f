package fs

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/piece"
)

// inlineMax is how many bytes of a file written in order the writer hashes
// itself, in the write path; past it a rung on another goroutine takes
// over, so big files are hashed on the second core while they are written.
const inlineMax = 32 << 20

// rungBuf is the size of a rung's reads from the temp file.
const rungBuf = 1 << 20

// leadDiv sets how early a rung starts before the threshold where its
// piece length becomes the one needed: once size+size/leadDiv is past the
// threshold. Such a rung yields to the rung the current size needs while
// that one lags behind the writer, so it uses only spare time of the
// second core; if the file ends before the threshold it is cancelled.
const leadDiv = 4

// writebackChunk is how many hashed bytes a rung lets pile up before it
// starts writing them back to the disk (see startWriteback).
const writebackChunk = 16 << 20

// errRungStopped ends a rung that was stopped before it finished.
var errRungStopped = errors.New("fs: hash rung stopped")

// ladder hashes a temp file that is being written in order from byte 0,
// with the piece length its final size will need, so that sealing it does
// not read it again.
//
// The piece length depends on the final size (piece.Length: 256 KiB up to
// 512 MiB, then doubling), which nobody knows while the file is written.
// Small files are hashed by the writer itself (inline, up to inlineMax);
// past that, and each time the size crosses a threshold where the piece
// length changes, a rung starts: a goroutine with a piece.Hasher of the
// piece length the size now needs, which first catches up by reading the
// temp file from offset 0 (from the page cache) and then follows the
// writer. A rung (or the inline hasher) whose piece length is smaller than
// the size now needs is dropped at once: while the ladder lives the size
// only grows, so it can never be the right one again. So at most two rungs
// are alive (one being dropped, one catching up), and the work is bounded:
// each threshold crossed rehashes the bytes before it once, less than the
// file's size in all.
//
// At the seal, finish waits for the rung of piece.Length(final size) and
// returns its info, which Store.Seal trusts as its known info.
//
// The ladder is owned by its file: every method is called with file.mu
// held. stop cancels the rungs and waits for their goroutines (wg), so
// after stop or finish no goroutine reads the temp file any more.
type ladder struct {
	tmp    *os.File
	length func(int64) int64 // the piece-length rule (piece.Length)
	// inlineMax bounds the bytes hashed by inline (tests make it small).
	inlineMax int64
	// leadDiv is the ladder's leadDiv (0: no early rungs).
	leadDiv int64

	// n is the number of bytes written in order from 0: the temp file holds
	// them. Written by the writer, read by the rungs.
	n atomic.Int64
	// inline is the writer's own Hasher (piece length length(0)); nil once
	// the file is past inlineMax or past its piece length's range.
	inline *piece.Hasher
	// written is how far the rungs have started the write-back of the temp
	// file (only grows).
	written atomic.Int64
	// rungs alive, smallest piece length first.
	rungs []*rung
	wg    sync.WaitGroup // the rungs' goroutines
	// started counts rungs ever started (tests).
	started int
}

// rung is one Hasher run by its own goroutine over the temp file.
type rung struct {
	pieceLength int64
	hs          *piece.Hasher // owned by run until done is closed
	wake        chan struct{} // 1-buffered: more bytes were written, or end was set
	stop        chan struct{} // closed to cancel
	done        chan struct{} // closed when run has returned
	// end is -1 while the file is written, then the final size: run returns
	// once it has hashed that many bytes.
	end atomic.Int64
	pos atomic.Int64 // bytes hashed so far
	// below is the rung the size needed when this one started early; it
	// yields to below while below lags (nil: none, or inline).
	below *rung
	err   error // run's result; read after done is closed
}

// newLadder returns a ladder for tmp, which is empty.
func newLadder(tmp *os.File) *ladder {
	return &ladder{tmp: tmp, length: piece.Length, inlineMax: inlineMax, leadDiv: leadDiv, inline: piece.NewHasher(piece.Length(0))}
}

// wrote records that p was written at off. It returns false (and stops
// the ladder) when p was not the next bytes in order.
func (l *ladder) wrote(p []byte, off int64) bool {
	if off != l.n.Load() {
		l.stop()
		return false
	}
	if len(p) == 0 {
		return true
	}
	if l.inline != nil {
		l.inline.Write(p)
	}
	size := off + int64(len(p))
	l.n.Store(size)
	need := l.length(size)
	if l.inline != nil && l.inline.PieceLength() != need {
		l.inline = nil // outgrown; a rung of the length needed starts below
	}
	if l.inline != nil && size > l.inlineMax {
		// A rung takes over the inline Hasher where it stands.
		l.start(need, nil, l.inline)
		l.inline = nil
	}
	for len(l.rungs) > 0 && l.rungs[0].pieceLength < need {
		l.rungs[0].cancel()
		l.rungs = l.rungs[1:]
	}
	if l.inline == nil && (len(l.rungs) == 0 || l.rungs[0].pieceLength != need) {
		l.start(need, nil, nil)
	}
	if l.leadDiv > 0 {
		// Start the next rung early (see leadDiv): at most two alive.
		if ahead := l.length(size + size/l.leadDiv); ahead > need && l.rungs[len(l.rungs)-1].pieceLength < ahead && len(l.rungs) < 2 {
			var below *rung
			if l.inline == nil {
				below = l.rungs[0]
			}
			l.start(ahead, below, nil)
		}
	}
	for _, r := range l.rungs {
		r.poke()
	}
	return true
}

// start starts a rung of piece length pl, yielding to below. It goes on
// from hs when that is not nil (a Hasher of piece length pl that has seen
// the first hs.Len() bytes), else it starts from byte 0.
func (l *ladder) start(pl int64, below *rung, hs *piece.Hasher) {
	if hs == nil {
		hs = piece.NewHasher(pl)
	}
	r := &rung{
		below:       below,
		pieceLength: pl,
		hs:          hs,
		wake:        make(chan struct{}, 1),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	r.end.Store(-1)
	l.rungs = append(l.rungs, r)
	slices.SortFunc(l.rungs, func(a, b *rung) int { return cmp.Compare(a.pieceLength, b.pieceLength) })
	l.started++
	l.wg.Add(1)
	// run returns when it has hashed the final size (finish) or when it is
	// cancelled (stop, or dropped by wrote); stop and finish wait for it.
	go func() {
		defer l.wg.Done()
		defer close(r.done)
		r.err = r.run(l)
	}()
}

// run hashes the temp file from 0, following the writer (l.n) until end
// is set and reached. On the way it starts the write-back of what it has
// hashed, so the seal's fsync has little left to do.
func (r *rung) run(l *ladder) error {
	tmp := l.tmp
	buf := make([]byte, rungBuf)
	off := r.hs.Len()
	for {
		end := r.end.Load()
		avail := l.n.Load()
		if end >= 0 {
			avail = end
		}
		for off < avail {
			select {
			case <-r.stop:
				return errRungStopped
			default:
			}
			if r.yields(l) {
				break // wait for the next write
			}
			k := min(int64(len(buf)), avail-off)
			m, err := tmp.ReadAt(buf[:k], off)
			r.hs.Write(buf[:m])
			off += int64(m)
			if int64(m) < k {
				return fmt.Errorf("hash %s at %d: %w", tmp.Name(), off, err)
			}
			r.pos.Store(off)
			l.writeback(off)
		}
		if end >= 0 && off == end {
			return nil
		}
		select {
		case <-r.stop:
			return errRungStopped
		case <-r.wake:
		}
	}
}

// yields reports whether r should wait: it started early and the rung
// the size needs lags behind the writer.
func (r *rung) yields(l *ladder) bool {
	b := r.below
	if b == nil || r.end.Load() >= 0 {
		return false
	}
	select {
	case <-b.stop:
		r.below = nil // dropped: r is the one needed now, or is cancelled too
		return false
	default:
	}
	return b.pos.Load() < l.n.Load()-2*rungBuf
}

// writeback starts the write-back of the temp file up to off once
// writebackChunk bytes have piled up since the last one.
func (l *ladder) writeback(off int64) {
	for {
		from := l.written.Load()
		if off-from < writebackChunk {
			return
		}
		if l.written.CompareAndSwap(from, off) {
			startWriteback(l.tmp, from, off-from)
			return
		}
	}
}

// poke tells the rung that there is more to hash.
func (r *rung) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// cancel stops the rung without waiting for it.
func (r *rung) cancel() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
}

// stop cancels every rung and waits for their goroutines to end. The
// ladder hashes nothing more afterwards.
func (l *ladder) stop() {
	l.inline = nil
	for _, r := range l.rungs {
		r.cancel()
	}
	l.rungs = nil
	l.wg.Wait()
}

// finish returns the info of the temp file's size bytes, hashed with
// piece length length(size), waiting for the rung that hashes them to
// catch up; nil when the ladder has no such hasher (the caller's Seal
// hashes the file then). The ladder is stopped afterwards.
func (l *ladder) finish(size int64) *bt.Info {
	defer l.stop()
	if size == 0 || size != l.n.Load() {
		return nil
	}
	need := l.length(size)
	if l.inline != nil && l.inline.PieceLength() == need && l.inline.Len() == size {
		return l.inline.Info()
	}
	var got *rung
	for _, r := range l.rungs {
		if r.pieceLength == need {
			got = r
			continue
		}
		r.cancel()
	}
	if got == nil {
		return nil
	}
	got.end.Store(size)
	got.poke()
	<-got.done
	if got.err != nil || got.hs.Len() != size {
		return nil
	}
	return got.hs.Info()
}
