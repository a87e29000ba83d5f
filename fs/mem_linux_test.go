//go:build linux

package fs_test

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/delugefs/delugefs/piece"
)

// TestSmallFilesInMemory: files up to piece.MaxSmallBlob are written in
// memory; one that grows past it spills into a temp file (in order: the
// ladder takes over; with a hole: the seal hashes it); holes, overwrites
// and truncates inside memory read back as on a plain file; the stored
// blob and its info-hash are the canonical ones.
func TestSmallFilesInMemory(t *testing.T) {
	n := start(t)
	check := func(name string, want []byte) {
		t.Helper()
		p := filepath.Join(n.Dir, name)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: read %d bytes, %v; want %d", name, len(got), err, len(want))
		}
		ref := piece.NewHasher(piece.Length(int64(len(want))))
		ref.Write(want)
		if len(want) > 0 {
			if h := infohashXattr(t, p); h != ref.Info().Hash().String() {
				t.Fatalf("%s: info-hash %s, want %s", name, h, ref.Info().Hash())
			}
		}
	}
	rnd := func(k int) []byte {
		b := make([]byte, k)
		rand.Read(b)
		return b
	}

	// In order, in 4 KiB writes, past MaxSmallBlob: spills, ladder.
	big := rnd(piece.MaxSmallBlob + 70000)
	f, err := os.Create(filepath.Join(n.Dir, "grows"))
	must(t, err)
	for off := 0; off < len(big); off += 4096 {
		_, err := f.Write(big[off:min(off+4096, len(big))])
		must(t, err)
	}
	// Read through the handle before the close: it sees what was written.
	mid := make([]byte, 100)
	_, err = f.ReadAt(mid, int64(piece.MaxSmallBlob-50))
	must(t, err)
	if !bytes.Equal(mid, big[piece.MaxSmallBlob-50:piece.MaxSmallBlob+50]) {
		t.Fatal("read before close differs")
	}
	must(t, f.Close())
	check("grows", big)

	// A hole, an overwrite across the end, truncates down and up, all in
	// memory; then a write far past MaxSmallBlob with a hole (spill, hash).
	want := make([]byte, 0)
	f, err = os.Create(filepath.Join(n.Dir, "holes"))
	must(t, err)
	put := func(b []byte, off int) {
		t.Helper()
		_, err := f.WriteAt(b, int64(off))
		must(t, err)
		if end := off + len(b); end > len(want) {
			want = append(want, make([]byte, end-len(want))...)
		}
		copy(want[off:], b)
	}
	trunc := func(k int) {
		t.Helper()
		must(t, f.Truncate(int64(k)))
		if k <= len(want) {
			want = want[:k]
		} else {
			want = append(want, make([]byte, k-len(want))...)
		}
	}
	put(rnd(1000), 5000) // hole 0..5000
	put(rnd(3000), 4000) // overlaps the end
	trunc(2000)
	trunc(9000) // zeros again
	put(rnd(10), 8995)
	must(t, f.Sync()) // an fsync seals and commits: memory again after
	put(rnd(100), 100)
	must(t, f.Close())
	check("holes", want)

	f, err = os.OpenFile(filepath.Join(n.Dir, "holes"), os.O_RDWR, 0)
	must(t, err)
	put(rnd(10), piece.MaxSmallBlob+100000) // reopened: contents read in, then spill with a hole
	must(t, f.Close())
	check("holes", want)

	// Empty, then rewritten small over a big one.
	must(t, os.WriteFile(filepath.Join(n.Dir, "empty"), nil, 0o644))
	check("empty", nil)
	small := rnd(777)
	must(t, os.WriteFile(filepath.Join(n.Dir, "grows"), small, 0o644))
	check("grows", small)
}
