package piece

import (
	"bytes"
	"crypto/sha1"
	"math/rand/v2"
	"testing"
)

func naivePieces(data []byte, pieceLength int64) []byte {
	var out []byte
	for off := int64(0); off < int64(len(data)); off += pieceLength {
		end := min(off+pieceLength, int64(len(data)))
		s := sha1.Sum(data[off:end])
		out = append(out, s[:]...)
	}
	return out
}

func TestHasherMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const pl = 16 << 10
	for _, size := range []int{0, 1, pl - 1, pl, pl + 1, 5*pl + 77} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		h := NewHasher(pl)
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(3*pl))
			h.Write(rest[:n])
			rest = rest[n:]
		}
		info := h.Info()
		if size == 0 {
			if info != nil {
				t.Fatal("empty blob has an info")
			}
			continue
		}
		if info.Length != int64(size) || !bytes.Equal(info.Pieces, naivePieces(data, pl)) {
			t.Fatalf("size %d: hasher disagrees with naive hashing", size)
		}
	}
}

func BenchmarkHasher(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	h := NewHasher(256 << 10)
	for b.Loop() {
		h.Write(buf)
	}
}
