package piece

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/delugefs/delugefs/bt"
)

// randomBlobData returns n pseudo-random bytes from seed.
func randomBlobData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// blobInfo returns the info dictionary of data cut into pieces of pieceLength.
func blobInfo(data []byte, pieceLength int64) *bt.Info {
	hs := NewHasher(pieceLength)
	hs.Write(data)
	return hs.Info()
}

// newTestStore opens a store in a fresh temporary directory.
func newTestStore(t testing.TB) *Store {
	t.Helper()
	s, err := OpenStore(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeTemp writes data into a new store temp file and returns its path.
func writeTemp(t testing.TB, s *Store, data []byte) string {
	t.Helper()
	f, err := s.TempFile()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// readBlob reads all of complete blob h through Store.Open.
func readBlob(t testing.TB, s *Store, h bt.InfoHash) []byte {
	t.Helper()
	f, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tmpEntries(t testing.TB, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(3<<20+12345, 1)

	path := writeTemp(t, s, data)
	info, err := s.Seal(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Length != int64(len(data)) || info.PieceLength != Length(int64(len(data))) {
		t.Fatalf("info length %d piece length %d, want %d and %d", info.Length, info.PieceLength, len(data), Length(int64(len(data))))
	}
	want := blobInfo(data, Length(int64(len(data))))
	h := info.Hash()
	if h != want.Hash() {
		t.Fatalf("hash %s, want %s", h, want.Hash())
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("temp file still there after Seal: %v", err)
	}
	if got := readBlob(t, s, h); !bytes.Equal(got, data) {
		t.Fatal("blob contents differ from what was sealed")
	}
	fi, err := os.Stat(s.dataPath(h))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Fatalf("blob mode %v, want 0444", fi.Mode().Perm())
	}
	if filepath.Base(filepath.Dir(s.dataPath(h))) != h.String()[:2] {
		t.Fatalf("blob at %s, want under shard %s", s.dataPath(h), h.String()[:2])
	}
	if !s.Has(h) {
		t.Fatal("Has = false after Seal")
	}

	// The same contents again, once hashed and once with a known info:
	// stored once, temp files dropped.
	info2, err := s.Seal(writeTemp(t, s, data), nil)
	if err != nil {
		t.Fatal(err)
	}
	info3, err := s.Seal(writeTemp(t, s, data), want)
	if err != nil {
		t.Fatal(err)
	}
	if info2.Hash() != h || info3.Hash() != h {
		t.Fatalf("resealed hashes %s %s, want %s", info2.Hash(), info3.Hash(), h)
	}
	if got := tmpEntries(t, s); len(got) != 0 {
		t.Fatalf("tmp/ holds %v after sealing duplicates", got)
	}
	other := randomBlobData(100, 2)
	oinfo, err := s.Seal(writeTemp(t, s, other), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := s.Complete()
	if err != nil {
		t.Fatal(err)
	}
	wantHs := []bt.InfoHash{h, oinfo.Hash()}
	slices.SortFunc(wantHs, func(a, b bt.InfoHash) int { return bytes.Compare(a[:], b[:]) })
	if !slices.Equal(hs, wantHs) {
		t.Fatalf("Complete() = %v, want %v", hs, wantHs)
	}

	if err := s.Remove(h); err != nil {
		t.Fatal(err)
	}
	if s.Has(h) {
		t.Fatal("Has = true after Remove")
	}
	if _, err := s.Open(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Remove: %v, want ErrNotFound", err)
	}
	if err := s.Remove(h); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if got := readBlob(t, s, oinfo.Hash()); !bytes.Equal(got, other) {
		t.Fatal("other blob changed")
	}
}

func TestSealEmptyFile(t *testing.T) {
	s := newTestStore(t)
	path := writeTemp(t, s, nil)
	info, err := s.Seal(path, nil)
	if info != nil || err != nil {
		t.Fatalf("Seal(empty) = %v, %v; want nil, nil", info, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty temp file not removed: %v", err)
	}
}

func TestSealKnownInfoMismatch(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(1000, 3)
	want := blobInfo(data, Length(1000))
	for _, known := range []*bt.Info{
		blobInfo(data[:999], Length(999)),   // wrong length
		blobInfo(data, 16<<10),              // not the piece-length rule
		bt.NewInfo(1000, Length(1000), nil), // no piece hashes
	} {
		info, err := s.Seal(writeTemp(t, s, data), known)
		if err != nil {
			t.Fatal(err)
		}
		if info.Hash() != want.Hash() {
			t.Fatalf("Seal with a wrong known info gave %s, want the file's %s", info.Hash(), want.Hash())
		}
	}
	if hs, _ := s.Complete(); len(hs) != 1 || hs[0] != want.Hash() {
		t.Fatalf("blobs %v, want just %s", hs, want.Hash())
	}
}

func TestOpenNotFound(t *testing.T) {
	s := newTestStore(t)
	var h bt.InfoHash
	h[0] = 0xab
	if _, err := s.Open(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(absent) = %v, want ErrNotFound", err)
	}
	if ErrNotFound.Error() != "piece: blob not found" {
		t.Fatalf("ErrNotFound = %q", ErrNotFound)
	}
}

func TestOpenStoreCleansLeftovers(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	complete := randomBlobData(50000, 4)
	cinfo, err := s.Seal(writeTemp(t, s, complete), nil)
	if err != nil {
		t.Fatal(err)
	}
	pdata := randomBlobData(5*16<<10, 5)
	pinfo := blobInfo(pdata, 16<<10)
	b, err := s.OpenBlob(pinfo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteAt(pdata[:16<<10], 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.VerifyPiece(0); !ok || err != nil {
		t.Fatalf("VerifyPiece(0) = %v, %v", ok, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// What a crash leaves: files being written, a .have being replaced, a
	// .have whose data file was never created.
	leftover := writeTemp(t, s, []byte("half written"))
	if err := os.MkdirAll(filepath.Join(s.tmp, "dir", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	strayHave := s.havePath(pinfo.Hash()) + tmpMarker + "123"
	if err := os.WriteFile(strayHave, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var orphan bt.InfoHash
	orphan[0], orphan[19] = 0xcd, 1
	if err := os.MkdirAll(filepath.Dir(s.havePath(orphan)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.havePath(orphan), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	s, err = OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := tmpEntries(t, s); len(got) != 0 {
		t.Fatalf("tmp/ holds %v after OpenStore", got)
	}
	for _, p := range []string{leftover, strayHave, s.havePath(orphan)} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived OpenStore: %v", p, err)
		}
	}
	if got := readBlob(t, s, cinfo.Hash()); !bytes.Equal(got, complete) {
		t.Fatal("complete blob changed by OpenStore")
	}
	if s.Has(pinfo.Hash()) {
		t.Fatal("partial blob counts as complete after OpenStore")
	}
	b, err = s.OpenBlob(pinfo)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if have := b.Have(); !b.HasPiece(0) || have.Count() != 1 {
		t.Fatalf("partial blob lost its marks: have %v", have.Bytes())
	}
}

func TestSpace(t *testing.T) {
	s := newTestStore(t)
	total, free, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	if total == 0 || free > total {
		t.Fatalf("Space() = %d total, %d free", total, free)
	}
}
