package piece

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/delugefs/delugefs/bt"
)

const testPieceLen = 16 << 10

// writeBlobPiece writes piece i of data into b in 4 KiB blocks.
func writeBlobPiece(t testing.TB, b *Blob, data []byte, i int) {
	t.Helper()
	pl := int(b.Info().PieceLength)
	end := min((i+1)*pl, len(data))
	for off := i * pl; off < end; off += 4 << 10 {
		if _, err := b.WriteAt(data[off:min(off+4<<10, end)], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
}

func mustVerifyPiece(t testing.TB, b *Blob, i int) {
	t.Helper()
	ok, err := b.VerifyPiece(i)
	if err != nil || !ok {
		t.Fatalf("VerifyPiece(%d) = %v, %v; want true", i, ok, err)
	}
}

// persistedHave reads the .have file of b as a fresh process would.
func persistedHave(t testing.TB, s *Store, info *bt.Info) []byte {
	t.Helper()
	raw, err := os.ReadFile(s.havePath(info.Hash()))
	if err != nil {
		t.Fatal(err)
	}
	bits, ok := decodeHave(raw, info, info.Hash())
	if !ok {
		t.Fatal("damaged .have file")
	}
	return bits
}

func TestBlobResumeWithoutRehash(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBlobData(10*testPieceLen-777, 10)
	info := blobInfo(data, testPieceLen)
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.dataPath(info.Hash())); err != nil || fi.Size() != info.Length {
		t.Fatalf("data file: %v, %v; want %d bytes", fi, err, info.Length)
	}
	for i := 0; i < 5; i++ {
		writeBlobPiece(t, b, data, i)
		mustVerifyPiece(t, b, i)
	}
	if s.Has(info.Hash()) {
		t.Fatal("partial blob counts as complete")
	}
	if _, err := s.Open(info.Hash()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(partial) = %v, want ErrNotFound", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Damage a verified piece behind the store's back: a resume that
	// rehashed would notice, one that trusts its bitfield does not.
	f, err := os.OpenFile(s.dataPath(info.Hash()), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("garbage"), 2*testPieceLen+10); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s, err = OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err = s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < info.NumPieces(); i++ {
		if got, want := b.HasPiece(i), i < 5; got != want {
			t.Fatalf("after reopen HasPiece(%d) = %v, want %v", i, got, want)
		}
	}
	if _, err := b.WriteAt([]byte{1}, 3*testPieceLen); !errors.Is(err, ErrVerified) {
		t.Fatalf("WriteAt into a verified piece: %v, want ErrVerified", err)
	}
	for i := 5; i < info.NumPieces(); i++ {
		writeBlobPiece(t, b, data, i)
		mustVerifyPiece(t, b, i)
	}
	if !b.Complete() {
		t.Fatal("blob not complete after every piece verified")
	}
	if _, err := os.Stat(s.havePath(info.Hash())); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf(".have file after completion: %v", err)
	}
	if fi, err := os.Stat(s.dataPath(info.Hash())); err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("complete blob mode: %v, %v", fi, err)
	}
	if !s.Has(info.Hash()) {
		t.Fatal("Has = false for a completed download")
	}
	if _, err := b.WriteAt([]byte{1}, 0); !errors.Is(err, ErrVerified) {
		t.Fatalf("WriteAt into a complete blob: %v, want ErrVerified", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
	got := readBlob(t, s, info.Hash())
	copy(data[2*testPieceLen+10:], "garbage") // the damage made above, trusted
	if !bytes.Equal(got, data) {
		t.Fatal("completed blob differs")
	}
}

func TestBlobCorruptPiece(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(6*testPieceLen, 11)
	info := blobInfo(data, testPieceLen)
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	bad := bytes.Clone(data[3*testPieceLen : 4*testPieceLen])
	bad[100] ^= 1
	if _, err := b.WriteAt(bad, 3*testPieceLen); err != nil {
		t.Fatal(err)
	}
	ok, err := b.VerifyPiece(3)
	if ok || err != nil {
		t.Fatalf("VerifyPiece(corrupt) = %v, %v; want false, nil", ok, err)
	}
	if b.HasPiece(3) {
		t.Fatal("corrupt piece marked")
	}
	writeBlobPiece(t, b, data, 3)
	mustVerifyPiece(t, b, 3)

	// A piece never written is a hole of zeros: no match.
	if ok, err := b.VerifyPiece(4); ok || err != nil {
		t.Fatalf("VerifyPiece(missing) = %v, %v; want false, nil", ok, err)
	}
	for _, i := range []int{-1, 6} {
		if _, err := b.VerifyPiece(i); !errors.Is(err, ErrRange) {
			t.Fatalf("VerifyPiece(%d) = %v, want ErrRange", i, err)
		}
	}
	if _, err := b.WriteAt([]byte{1, 2}, info.Length-1); !errors.Is(err, ErrRange) {
		t.Fatalf("WriteAt past the end: %v, want ErrRange", err)
	}
	have := b.Have()
	if have.Len() != 6 || have.Count() != 1 || !have.Has(3) {
		t.Fatalf("Have() = %08b (len %d)", have.Bytes(), have.Len())
	}
}

// TestBlobMarksFollowData checks what a crash would leave: the persisted
// bitfield only ever names pieces whose data is on disk, and marks are
// batched (no write per piece) until Sync or Close.
func TestBlobMarksFollowData(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBlobData(64*testPieceLen, 12)
	info := blobInfo(data, testPieceLen)
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 40; i++ {
		writeBlobPiece(t, b, data, i)
		mustVerifyPiece(t, b, i)
		bits := persistedHave(t, s, info)
		bf, err := ParseBitfield(bits, info.NumPieces())
		if err != nil {
			t.Fatal(err)
		}
		if bf.Count() > i+1 {
			t.Fatalf("after %d pieces the .have file names %d", i+1, bf.Count())
		}
		for j := 0; j < info.NumPieces(); j++ {
			if bf.Has(j) && !b.HasPiece(j) {
				t.Fatalf("persisted mark for piece %d, which is not verified", j)
			}
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	bf, _ := ParseBitfield(persistedHave(t, s, info), info.NumPieces())
	if bf.Count() != 40 {
		t.Fatalf("after Sync the .have file names %d pieces, want 40", bf.Count())
	}
	// A second store on the root sees what a restart would.
	s2, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := s2.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	for j := 0; j < info.NumPieces(); j++ {
		if b2.HasPiece(j) != (j < 40) {
			t.Fatalf("restarted HasPiece(%d) = %v", j, b2.HasPiece(j))
		}
	}
}

func TestBlobOver4GiBSparse(t *testing.T) {
	s := newTestStore(t)
	const length = 5<<30 + 12345
	pl := Length(length)
	n := NumPieces(length, pl)
	last := randomBlobData(int(length-int64(n-1)*pl), 13)
	zero := sha1.Sum(make([]byte, pl))
	lastSum := sha1.Sum(last)
	pieces := bytes.Repeat(zero[:], n-1)
	pieces = append(pieces, lastSum[:]...)
	info := bt.NewInfo(length, pl, pieces)

	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	off := info.PieceOffset(n - 1)
	if off <= 4<<30 {
		t.Fatalf("last piece at %d, not past 4 GiB", off)
	}
	if _, err := b.WriteAt(last, off); err != nil {
		t.Fatal(err)
	}
	mustVerifyPiece(t, b, n-1)
	mustVerifyPiece(t, b, 0) // a hole reads as zeros, which is what piece 0 holds
	if b.Complete() || !b.HasPiece(n-1) || b.HasPiece(1) {
		t.Fatal("wrong marks after two pieces")
	}
	got := make([]byte, len(last)+100)
	if _, err := b.ReadAt(got, off-100); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[100:], last) || !bytes.Equal(got[:100], make([]byte, 100)) {
		t.Fatal("read back past 4 GiB differs")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.dataPath(info.Hash()))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != length {
		t.Fatalf("data file size %d, want %d", fi.Size(), int64(length))
	}
	if used := allocatedBytes(fi); used > 16<<20 {
		t.Fatalf("sparse data file uses %d bytes of disk", used)
	}
	b, err = s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if have := b.Have(); have.Count() != 2 || !have.Has(0) || !have.Has(n-1) {
		t.Fatalf("after reopen %d pieces had, want 0 and %d", have.Count(), n-1)
	}
}

func TestSealReplacesPartial(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(8*MinLength, 14)
	info := blobInfo(data, Length(8*MinLength)) // Seal only trusts the canonical info
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	writeBlobPiece(t, b, data, 0)
	mustVerifyPiece(t, b, 0)

	got, err := s.Seal(writeTemp(t, s, data), info)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash() != info.Hash() {
		t.Fatal("sealed hash differs")
	}
	if !b.Complete() || !b.HasPiece(7) {
		t.Fatal("open partial blob not completed by Seal")
	}
	buf := make([]byte, len(data))
	if _, err := b.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, data) {
		t.Fatal("blob reads differ after Seal replaced it")
	}
	if _, err := os.Stat(s.havePath(info.Hash())); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf(".have after Seal: %v", err)
	}
	if !bytes.Equal(readBlob(t, s, info.Hash()), data) {
		t.Fatal("Open reads differ")
	}
}

func TestRemoveOpenPartial(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(4*testPieceLen, 15)
	info := blobInfo(data, testPieceLen)
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	if b2 != b {
		t.Fatal("second OpenBlob returned another Blob")
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	writeBlobPiece(t, b, data, 1)
	mustVerifyPiece(t, b, 1)
	if err := s.Remove(info.Hash()); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	// A new download of the same blob starts afresh, beside the old
	// holder.
	fresh, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	if fresh == b || fresh.HasPiece(1) {
		t.Fatal("OpenBlob after Remove returned the removed blob's state")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if have := persistedHave(t, s, info); !bytes.Equal(have, make([]byte, 1)) {
		t.Fatalf("the removed blob's Close wrote its marks: %08b", have)
	}
	if err := fresh.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(info.Hash()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{s.dataPath(info.Hash()), s.havePath(info.Hash())} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s after Remove: %v", p, err)
		}
	}
}

func TestConcurrentReaders(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(4<<20, 16)
	info, err := s.Seal(writeTemp(t, s, data), nil)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := s.Open(info.Hash())
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	cb, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if !cb.Complete() {
		t.Fatal("OpenBlob of a complete blob is not complete")
	}

	// Partial blob: one writer per piece, readers checking that verified
	// data never changes under them.
	pdata := randomBlobData(32*testPieceLen+500, 17)
	pinfo := blobInfo(pdata, testPieceLen)
	pb, err := s.OpenBlob(pinfo)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() { // exits after writing its pieces
			defer wg.Done()
			for i := w; i < pinfo.NumPieces(); i += 4 {
				off := int(pinfo.PieceOffset(i))
				end := off + int(pinfo.PieceSize(i))
				for o := off; o < end; o += 4 << 10 {
					if _, err := pb.WriteAt(pdata[o:min(o+4<<10, end)], int64(o)); err != nil {
						errs <- err
						return
					}
				}
				if ok, err := pb.VerifyPiece(i); !ok || err != nil {
					errs <- errors.Join(errors.New("verify failed"), err)
					return
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for r := 0; r < 6; r++ {
		readers.Add(1)
		go func() { // exits when done is closed
			defer readers.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			own, err := s.Open(info.Hash())
			if err != nil {
				errs <- err
				return
			}
			defer own.Close()
			buf := make([]byte, 64<<10)
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				sz := 1 + rng.IntN(len(buf))
				off := rng.IntN(len(data) - sz)
				src := []interface {
					ReadAt([]byte, int64) (int, error)
				}{shared, own, cb}[n%3]
				if _, err := src.ReadAt(buf[:sz], int64(off)); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:sz], data[off:off+sz]) {
					errs <- errors.New("complete blob read differs")
					return
				}
				i := rng.IntN(pinfo.NumPieces())
				if pb.HasPiece(i) {
					p := buf[:pinfo.PieceSize(i)]
					if _, err := pb.ReadAt(p, pinfo.PieceOffset(i)); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(p, pdata[pinfo.PieceOffset(i):][:len(p)]) {
						errs <- errors.New("verified piece read differs")
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !pb.Complete() || !s.Has(pinfo.Hash()) {
		t.Fatal("partial blob not complete after all pieces verified")
	}
	if !bytes.Equal(readBlob(t, s, pinfo.Hash()), pdata) {
		t.Fatal("downloaded blob differs")
	}
}

// FuzzDecodeHave checks that the .have decoder never panics and accepts
// only what encodeHave makes for the blob's info.
func FuzzDecodeHave(f *testing.F) {
	info := blobInfo(randomBlobData(20*testPieceLen+1, 40), testPieceLen)
	h := info.Hash()
	f.Add(encodeHave(info, h, make([]byte, (info.NumPieces()+7)/8)))
	f.Add(encodeHave(info, h, []byte{0xff, 0x0f, 0x80}))
	f.Add([]byte(haveMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		bits, ok := decodeHave(raw, info, h)
		if !ok {
			return
		}
		if !bytes.Equal(encodeHave(info, h, bits), raw) {
			t.Fatalf("decoded %x from %x, which re-encodes differently", bits, raw)
		}
	})
}

// TestBlobRecovery covers the states a crash can leave a partial blob in.
func TestBlobRecovery(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBlobData(4*testPieceLen, 41)
	info := blobInfo(data, testPieceLen)
	h := info.Hash()
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	mustVerifyPiece(t, b, 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// A damaged .have file: resume from nothing, never from garbage.
	if err := os.WriteFile(s.havePath(h), []byte("not a bitfield"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err = s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	if have := b.Have(); have.Count() != 0 {
		t.Fatalf("resumed %d pieces from a damaged .have file", have.Count())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Every piece marked but the .have file still there: the crash came
	// while completing. OpenBlob finishes the job.
	if err := os.WriteFile(s.havePath(h), encodeHave(info, h, []byte{0xf0}), 0o644); err != nil {
		t.Fatal(err)
	}
	if s.Has(h) {
		t.Fatal("Has = true with a .have file present")
	}
	b, err = s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Complete() || !s.Has(h) {
		t.Fatal("a fully marked blob was not completed on open")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readBlob(t, s, h), data) {
		t.Fatal("completed blob differs")
	}
}

// TestSealOverClosedPartial seals a file whose blob is a partial download
// nobody has open.
func TestSealOverClosedPartial(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(3*MinLength+5, 42)
	info := blobInfo(data, Length(int64(len(data))))
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(writeTemp(t, s, data), nil); err != nil {
		t.Fatal(err)
	}
	if !s.Has(info.Hash()) || !bytes.Equal(readBlob(t, s, info.Hash()), data) {
		t.Fatal("sealed blob missing or different")
	}
	if _, err := os.Stat(s.havePath(info.Hash())); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf(".have after Seal: %v", err)
	}
}
