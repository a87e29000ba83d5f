package piece

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestWritePiece covers the whole-piece write: a wrong piece is refused and
// nothing of it reaches the disk, a right one is written and marked in
// memory at once but persisted only by Sync, after its data is durable.
func TestWritePiece(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBlobData(8*testPieceLen-100, 21)
	info := blobInfo(data, testPieceLen)
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pieceOf := func(i int) []byte {
		return data[info.PieceOffset(i) : info.PieceOffset(i)+info.PieceSize(i)]
	}

	// A wrong sum is refused: nothing written, nothing marked.
	bad := bytes.Clone(pieceOf(2))
	bad[100] ^= 1
	if ok, err := b.WritePiece(2, bad); ok || err != nil {
		t.Fatalf("WritePiece(corrupt) = %v, %v; want false, nil", ok, err)
	}
	if b.HasPiece(2) {
		t.Fatal("corrupt piece marked")
	}
	got := make([]byte, testPieceLen)
	if _, err := b.ReadAt(got, info.PieceOffset(2)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, testPieceLen)) {
		t.Fatal("a refused piece reached the disk")
	}
	// Wrong sizes and indices are errors.
	if _, err := b.WritePiece(1, pieceOf(1)[1:]); !errors.Is(err, ErrRange) {
		t.Fatalf("WritePiece(short) = %v, want ErrRange", err)
	}
	if _, err := b.WritePiece(8, nil); !errors.Is(err, ErrRange) {
		t.Fatalf("WritePiece(8 of 8) = %v, want ErrRange", err)
	}

	// Right pieces: marked at once, readable, not persisted.
	for _, i := range []int{0, 1, 7} {
		if ok, err := b.WritePiece(i, pieceOf(i)); !ok || err != nil {
			t.Fatalf("WritePiece(%d) = %v, %v", i, ok, err)
		}
		if !b.HasPiece(i) {
			t.Fatalf("piece %d not marked", i)
		}
	}
	if _, err := b.ReadAt(got[:info.PieceSize(7)], info.PieceOffset(7)); err != nil || !bytes.Equal(got[:info.PieceSize(7)], pieceOf(7)) {
		t.Fatalf("piece 7 reads back wrong (%v)", err)
	}
	if bf, _ := ParseBitfield(persistedHave(t, s, info), info.NumPieces()); bf.Count() != 0 {
		t.Fatalf("WritePiece persisted %d marks: it must leave that to Sync", bf.Count())
	}
	if !b.Due() {
		// Not 64 MiB and maybe not a second yet: only time makes it due.
		b.mu.Lock()
		b.lastFlush = b.lastFlush.Add(-flushEvery)
		b.mu.Unlock()
		if !b.Due() {
			t.Fatal("Due is false a second after marks were added")
		}
	}
	// A piece verified already is not written again.
	if ok, err := b.WritePiece(0, pieceOf(0)); !ok || err != nil {
		t.Fatalf("WritePiece(verified) = %v, %v", ok, err)
	}

	// A failed data sync persists no mark.
	b.syncHook = func(*os.File) error { return errors.New("disk on fire") }
	if err := b.Sync(); err == nil {
		t.Fatal("Sync with a failing data sync succeeded")
	}
	if bf, _ := ParseBitfield(persistedHave(t, s, info), info.NumPieces()); bf.Count() != 0 {
		t.Fatalf("%d marks persisted although the data sync failed", bf.Count())
	}
	// The marks are written after the data sync, never before.
	synced := false
	b.syncHook = func(f *os.File) error {
		if bf, _ := ParseBitfield(persistedHave(t, s, info), info.NumPieces()); bf.Count() != 0 {
			t.Errorf("%d marks persisted before the data sync", bf.Count())
		}
		synced = true
		return f.Sync()
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if !synced {
		t.Fatal("Sync did not sync the data")
	}
	bf, _ := ParseBitfield(persistedHave(t, s, info), info.NumPieces())
	if bf.Count() != 3 || !bf.Has(0) || !bf.Has(1) || !bf.Has(7) {
		t.Fatalf("persisted marks %v, want 0, 1, 7", bf)
	}
	if b.Due() {
		t.Fatal("Due after Sync")
	}
	b.syncHook = nil
}

// TestWritePieceCrash: marks not yet persisted are lost by a crash (a
// second store on the root sees what a restarted process would), and the
// last piece completes the blob only through Sync.
func TestWritePieceCrash(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBlobData(4*testPieceLen, 22)
	info := blobInfo(data, testPieceLen)
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	write := func(i int) {
		t.Helper()
		if ok, err := b.WritePiece(i, data[i*testPieceLen:(i+1)*testPieceLen]); !ok || err != nil {
			t.Fatalf("WritePiece(%d) = %v, %v", i, ok, err)
		}
	}
	restarted := func() *Blob {
		t.Helper()
		s2, err := OpenStore(root)
		if err != nil {
			t.Fatal(err)
		}
		b2, err := s2.OpenBlob(info)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b2.Close() })
		return b2
	}
	write(0)
	write(1)
	if h := restarted().Have(); h.Count() != 0 {
		c := h.Count()
		t.Fatalf("after a crash before Sync %d pieces are had, want 0", c)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	write(2)
	write(3)
	if b.Complete() || s.Has(info.Hash()) {
		t.Fatal("the last WritePiece completed the blob: that is Sync's job")
	}
	if !b.Due() {
		t.Fatal("not Due with every piece verified")
	}
	if h := restarted().Have(); h.Count() != 2 || !h.Has(0) || !h.Has(1) {
		t.Fatalf("after a crash %v are had, want 0 and 1", h)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if !b.Complete() || !s.Has(info.Hash()) {
		t.Fatal("Sync with every piece verified did not complete the blob")
	}
	if _, err := os.Stat(s.havePath(info.Hash())); !os.IsNotExist(err) {
		t.Fatalf(".have file after completion: %v", err)
	}
	f, err := s.Open(info.Hash())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("complete blob reads back wrong (%v)", err)
	}
}

// TestBlobMap: the map shows what WritePiece wrote, refuses ranges outside
// the blob, and follows Seal replacing the partial file (whose map has
// holes) with a complete one.
func TestBlobMap(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(8*MinLength, 23)
	info := blobInfo(data, Length(8*MinLength))
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pl := info.PieceLength
	if ok, err := b.WritePiece(1, data[pl:2*pl]); !ok || err != nil {
		t.Fatalf("WritePiece(1) = %v, %v", ok, err)
	}
	m, ok := b.Map(pl, pl)
	if !ok {
		t.Fatal("Map of a verified piece refused")
	}
	if !bytes.Equal(m, data[pl:2*pl]) {
		t.Fatal("Map differs from the piece written")
	}
	// Written after the map was made: a shared map sees it.
	if ok, err := b.WritePiece(2, data[2*pl:3*pl]); !ok || err != nil {
		t.Fatalf("WritePiece(2) = %v, %v", ok, err)
	}
	if m, _ := b.Map(2*pl, pl); !bytes.Equal(m, data[2*pl:3*pl]) {
		t.Fatal("Map does not see a piece written after it was made")
	}
	for _, r := range [][2]int64{{-1, 10}, {info.Length - 10, 11}, {0, -1}} {
		if _, ok := b.Map(r[0], r[1]); ok {
			t.Errorf("Map(%d, %d) outside the blob accepted", r[0], r[1])
		}
	}
	if _, err := s.Seal(writeTemp(t, s, data), info); err != nil {
		t.Fatal(err)
	}
	all, ok := b.Map(0, info.Length)
	if !ok || !bytes.Equal(all, data) {
		t.Fatalf("Map after Seal replaced the partial blob differs (ok %v)", ok)
	}
}
