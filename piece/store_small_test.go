package piece

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

func TestSealSmallNoSyncAndRestore(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(4096, 1)
	info, got, err := s.SealSmall(writeTemp(t, s, data), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("SealSmall returned %d bytes, want the file's %d", len(got), len(data))
	}
	want := blobInfo(data, Length(int64(len(data))))
	if info.Hash() != want.Hash() {
		t.Fatalf("info hash %s, want %s", info.Hash(), want.Hash())
	}
	readBlob := func() []byte {
		t.Helper()
		f, err := s.Open(info.Hash())
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, len(data)+1)
		n, _ := f.ReadAt(b, 0)
		return b[:n]
	}
	if b := readBlob(); !bytes.Equal(b, data) {
		t.Fatal("stored blob differs from the data")
	}

	// Restore is idempotent over a good copy.
	for range 2 {
		if err := s.Restore(info, data); err != nil {
			t.Fatal(err)
		}
	}
	if b := readBlob(); !bytes.Equal(b, data) {
		t.Fatal("blob differs after Restore")
	}

	// A torn copy (what a crash leaves of a file written without fsync)
	// is replaced by Restore.
	p := s.dataPath(info.Hash())
	os.Chmod(p, 0o644)
	if err := os.Truncate(p, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(info, data); err != nil {
		t.Fatal(err)
	}
	if b := readBlob(); !bytes.Equal(b, data) {
		t.Fatal("Restore did not repair a torn blob")
	}
	// A missing one is written.
	if err := s.Remove(info.Hash()); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(info, data); err != nil {
		t.Fatal(err)
	}
	if b := readBlob(); !bytes.Equal(b, data) {
		t.Fatal("Restore did not rewrite a missing blob")
	}

	// Restore verifies: wrong bytes or a wrong length are refused and
	// change nothing.
	bad := bytes.Clone(data)
	bad[10] ^= 1
	if err := s.Restore(info, bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Restore of corrupt data: %v, want ErrCorrupt", err)
	}
	if err := s.Restore(info, data[:100]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Restore of short data: %v, want ErrCorrupt", err)
	}
	if b := readBlob(); !bytes.Equal(b, data) {
		t.Fatal("a refused Restore changed the blob")
	}
	if ents, _ := os.ReadDir(s.tmp); len(ents) != 0 {
		t.Fatalf("tmp/ holds %d leftovers", len(ents))
	}
}

func TestSealSmallDuplicateAndTorn(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(10000, 2)
	known := blobInfo(data, Length(int64(len(data))))
	info, _, err := s.SealSmall(writeTemp(t, s, data), known)
	if err != nil {
		t.Fatal(err)
	}
	if info.Hash() != known.Hash() {
		t.Fatal("SealSmall did not use the known info")
	}
	// A duplicate is dropped.
	path := writeTemp(t, s, data)
	if _, got, err := s.SealSmall(path, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("duplicate SealSmall: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("duplicate temp file left behind")
	}
	// Tear the stored copy; the next Seal (durable) and SealSmall of the
	// same contents replace it instead of trusting it.
	for _, durable := range []bool{true, false} {
		p := s.dataPath(info.Hash())
		os.Chmod(p, 0o644)
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
		if durable {
			_, err = s.Seal(writeTemp(t, s, data), nil)
		} else {
			_, _, err = s.SealSmall(writeTemp(t, s, data), nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("durable=%v: torn stored copy not replaced (%d bytes, %v)", durable, len(got), err)
		}
	}
	// Empty files are no blob; big ones go through Seal and give no data.
	if info, got, err := s.SealSmall(writeTemp(t, s, nil), nil); info != nil || got != nil || err != nil {
		t.Fatalf("empty: %v %v %v", info, got, err)
	}
	big := randomBlobData(MaxSmallBlob+1, 3)
	info, got, err := s.SealSmall(writeTemp(t, s, big), nil)
	if err != nil || got != nil || !s.Has(info.Hash()) {
		t.Fatalf("big: %v, %d bytes, has %v", err, len(got), s.Has(info.Hash()))
	}
}
