package piece

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"os"
	"testing"

	"github.com/delugefs/delugefs/bt"
)

const benchSealSize = 256 << 20

// BenchmarkSeal seals a 256 MiB file that the store must hash ("hash"), one
// whose info the writer computed ("known"), and, as the reference, writes
// the same bytes' fsync alone ("fsync").
func BenchmarkSeal(b *testing.B) {
	data := randomBlobData(benchSealSize, 30)
	for _, mode := range []string{"hash", "known", "fsync"} {
		b.Run(mode, func(b *testing.B) {
			s := newTestStore(b)
			b.SetBytes(benchSealSize)
			b.ReportAllocs()
			var n uint64
			for b.Loop() {
				b.StopTimer()
				n++
				binary.LittleEndian.PutUint64(data, n) // unique contents
				// The info first, then the file: Seal meets freshly
				// written (dirty) data, as it does after a write.
				known := blobInfoIf(mode == "known", data)
				path := writeTemp(b, s, data)
				b.StartTimer()
				if mode == "fsync" {
					f, err := os.OpenFile(path, os.O_RDWR, 0)
					if err != nil {
						b.Fatal(err)
					}
					if err := f.Sync(); err != nil {
						b.Fatal(err)
					}
					f.Close()
					b.StopTimer()
					os.Remove(path)
					b.StartTimer()
					continue
				}
				info, err := s.Seal(path, known)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Remove(info.Hash()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

func blobInfoIf(cond bool, data []byte) *bt.Info {
	if !cond {
		return nil
	}
	return blobInfo(data, Length(int64(len(data))))
}

// BenchmarkVerifyPiece hashes 256 KiB pieces of a partial blob from disk
// (page cache), marking them and persisting the bitfield as it goes.
func BenchmarkVerifyPiece(b *testing.B) {
	const pl = 256 << 10
	data := randomBlobData(64<<20, 31)
	info := blobInfo(data, pl)
	s := newTestStore(b)
	blob, err := s.OpenBlob(info)
	if err != nil {
		b.Fatal(err)
	}
	defer blob.Close()
	n := info.NumPieces() - 1 // the last piece stays missing: never complete
	if _, err := blob.WriteAt(data[:n*pl], 0); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(pl)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if ok, err := blob.VerifyPiece(i % n); !ok || err != nil {
			b.Fatalf("VerifyPiece(%d) = %v, %v", i%n, ok, err)
		}
		i++
	}
}

// BenchmarkBlobReadAt reads 128 KiB blocks of a complete blob: the fs's
// read path (one atomic load, one pread).
func BenchmarkBlobReadAt(b *testing.B) {
	data := randomBlobData(16<<20, 32)
	s := newTestStore(b)
	info, err := s.Seal(writeTemp(b, s, data), nil)
	if err != nil {
		b.Fatal(err)
	}
	blob, err := s.OpenBlob(info)
	if err != nil {
		b.Fatal(err)
	}
	defer blob.Close()
	buf := make([]byte, 128<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	off := int64(0)
	for b.Loop() {
		if _, err := blob.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
		off = (off + int64(len(buf))) % int64(len(data))
	}
}

// BenchmarkVerifyPieceMarking verifies fresh pieces of a 16 GiB sparse blob
// of zeros, so every iteration marks a new piece and the bitfield is
// persisted as VerifyPiece's batching decides (every 64 MiB or second).
func BenchmarkVerifyPieceMarking(b *testing.B) {
	const pl = 256 << 10
	const n = 1 << 16
	zero := sha1.Sum(make([]byte, pl))
	info := bt.NewInfo(n*pl, pl, bytes.Repeat(zero[:], n))
	s := newTestStore(b)
	blob, err := s.OpenBlob(info)
	if err != nil {
		b.Fatal(err)
	}
	defer blob.Close()
	b.SetBytes(pl)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if ok, err := blob.VerifyPiece(i % (n - 1)); !ok || err != nil {
			b.Fatalf("VerifyPiece(%d) = %v, %v", i%(n-1), ok, err)
		}
		i++
	}
	b.ReportMetric(float64(i)/float64(n-1), "passes")
}
