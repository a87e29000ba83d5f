package fs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/delugefs/delugefs/piece"
)

// toyLength is a piece-length rule like piece.Length at a small scale:
// 4 KiB pieces up to 16 KiB, then doubling to keep 4 pieces, up to 64 KiB.
func toyLength(size int64) int64 {
	l := int64(4 << 10)
	for l < 64<<10 && size > 4*l {
		l *= 2
	}
	return l
}

// toyLadder returns a ladder over a new temp file using toyLength, with
// the writer hashing inline up to 6 KiB.
func toyLadder(t *testing.T) (*ladder, *os.File) {
	t.Helper()
	tmp, err := os.Create(filepath.Join(t.TempDir(), "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tmp.Close() })
	l := newLadder(tmp)
	l.length = toyLength
	l.inline = piece.NewHasher(toyLength(0))
	l.inlineMax = 6 << 10
	return l, tmp
}

// write writes p at off into tmp and tells l, as file.write does.
func write(t *testing.T, l *ladder, tmp *os.File, p []byte, off int64) bool {
	t.Helper()
	if _, err := tmp.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
	return l.wrote(p, off)
}

// wantInfo returns the info Store.Seal would compute for data.
func wantHash(data []byte, length func(int64) int64) string {
	hs := piece.NewHasher(length(int64(len(data))))
	hs.Write(data)
	return hs.Info().Hash().String()
}

// TestLadderSequential writes files of sizes around every threshold of
// the toy rule in random chunks and checks that finish returns the info
// of the whole contents with the piece length of the final size, with at
// most two rungs alive at any time and no goroutine left.
func TestLadderSequential(t *testing.T) {
	for _, lead := range []int64{0, leadDiv, 1} {
		t.Run(fmt.Sprint("lead", lead), func(t *testing.T) { testLadderSequential(t, lead) })
	}
}

func testLadderSequential(t *testing.T, lead int64) {
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	sizes := []int64{1, 4 << 10, 6<<10 - 1, 6 << 10, 6<<10 + 1, 16 << 10, 16<<10 + 1, 32 << 10, 32<<10 + 1, 64<<10 + 7, 256 << 10, 300<<10 + 3}
	for range 20 {
		sizes = append(sizes, 1+rng.Int64N(400<<10))
	}
	for _, size := range sizes {
		l, tmp := toyLadder(t)
		l.leadDiv = lead
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		var off int64
		for off < size {
			n := min(size-off, 1+rng.Int64N(9<<10))
			if !write(t, l, tmp, data[off:off+n], off) {
				t.Fatalf("size %d: in-order write at %d refused", size, off)
			}
			off += n
			if len(l.rungs) > 2 {
				t.Fatalf("size %d at %d: %d rungs alive", size, off, len(l.rungs))
			}
		}
		rungs := append([]*rung(nil), l.rungs...)
		info := l.finish(size)
		if info == nil {
			t.Fatalf("size %d: no info from the ladder", size)
		}
		if info.PieceLength != toyLength(size) || info.Length != size {
			t.Fatalf("size %d: info length %d piece length %d", size, info.Length, info.PieceLength)
		}
		if got, want := info.Hash().String(), wantHash(data, toyLength); got != want {
			t.Fatalf("size %d: info-hash %s, want %s", size, got, want)
		}
		for _, r := range rungs {
			select {
			case <-r.done:
			default:
				t.Fatalf("size %d: rung of %d still running after finish", size, r.pieceLength)
			}
		}
		// Each rung started rehashes at most what was written before it:
		// one per piece length crossed, plus the one taking over from
		// inline, plus one started early for a threshold not reached.
		if max := 2 + bitsBetween(toyLength(0), toyLength(size)); l.started > max {
			t.Fatalf("size %d: %d rungs started, want at most %d", size, l.started, max)
		}
	}
}

// bitsBetween is log2(b/a) for powers of two a <= b.
func bitsBetween(a, b int64) int {
	n := 0
	for ; a < b; a *= 2 {
		n++
	}
	return n
}

// TestLadderOutOfOrder: a write that is not the next in order stops the
// ladder (finish gives nil, so Seal hashes the file), and so does a
// finish at a size other than the bytes seen.
func TestLadderOutOfOrder(t *testing.T) {
	l, tmp := toyLadder(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 2<<10) // 32 KiB: a rung runs
	if !write(t, l, tmp, data[:20<<10], 0) {
		t.Fatal("first write refused")
	}
	rungs := append([]*rung(nil), l.rungs...)
	if len(rungs) == 0 {
		t.Fatal("no rung past inlineMax")
	}
	if write(t, l, tmp, data[24<<10:], 24<<10) {
		t.Fatal("write past a hole accepted")
	}
	for _, r := range rungs {
		<-r.done // stop waited for it already: never blocks
	}
	if info := l.finish(32 << 10); info != nil {
		t.Fatal("finish after an out-of-order write gave an info")
	}

	l, tmp = toyLadder(t)
	write(t, l, tmp, data[:10<<10], 0)
	if info := l.finish(12 << 10); info != nil {
		t.Fatal("finish at a size the ladder did not see gave an info")
	}
}

// TestLadderStopWhileCatchingUp: stopping a ladder whose rung is still
// catching up ends the rung's goroutine before stop returns.
func TestLadderStopWhileCatchingUp(t *testing.T) {
	l, tmp := toyLadder(t)
	l.inlineMax = 0
	data := make([]byte, 8<<20)
	if !write(t, l, tmp, data, 0) {
		t.Fatal("write refused")
	}
	rungs := append([]*rung(nil), l.rungs...)
	l.stop()
	for _, r := range rungs {
		select {
		case <-r.done:
		default:
			t.Fatal("rung running after stop")
		}
	}
}
