package piece

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
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

// PutSmall stores bytes from memory as a complete read-only blob, keeps an
// identical stored copy, replaces a torn one, and refuses empty and
// oversize data.
func TestPutSmall(t *testing.T) {
	s := newTestStore(t)
	data := randomBlobData(5000, 3)
	info, err := s.PutSmall(data)
	if err != nil {
		t.Fatal(err)
	}
	if want := blobInfo(data, Length(int64(len(data)))); info.Hash() != want.Hash() {
		t.Fatalf("info hash %s, want %s", info.Hash(), want.Hash())
	}
	if !s.Has(info.Hash()) {
		t.Fatal("not complete after PutSmall")
	}
	got, err := os.ReadFile(s.dataPath(info.Hash()))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes, %v", len(got), err)
	}
	if fi, _ := os.Stat(s.dataPath(info.Hash())); fi.Mode().Perm() != 0o444 {
		t.Errorf("mode %v, want read-only", fi.Mode())
	}
	if _, err := s.PutSmall(data); err != nil { // already stored
		t.Fatal(err)
	}
	// A torn copy (a crash before the journal carried it) is replaced.
	p := s.dataPath(info.Hash())
	os.Chmod(p, 0o644)
	os.WriteFile(p, data[:100], 0o644)
	if _, err := s.PutSmall(data); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("torn copy not replaced")
	}
	if _, err := s.PutSmall(nil); err == nil {
		t.Error("empty data stored")
	}
	if _, err := s.PutSmall(make([]byte, MaxSmallBlob+1)); err == nil {
		t.Error("oversize data stored")
	}
	if ents, _ := os.ReadDir(s.tmp); len(ents) != 0 {
		t.Errorf("temp files left: %d", len(ents))
	}
}

func BenchmarkPutSmall(b *testing.B) {
	s, err := OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := randomBlobData(4096, 9)
	i := 0
	for b.Loop() {
		data[0], data[1], data[2] = byte(i), byte(i>>8), byte(i>>16)
		i++
		if _, err := s.PutSmall(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutSmallWithSync(b *testing.B) {
	dir := b.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	j, _ := os.Create(dir + "/journal")
	j.Write(make([]byte, 8<<20))
	j.Sync()
	data := randomBlobData(4096, 9)
	i := 0
	var put time.Duration
	for b.Loop() {
		data[0], data[1], data[2] = byte(i), byte(i>>8), byte(i>>16)
		i++
		t0 := time.Now()
		if _, err := s.PutSmall(data); err != nil {
			b.Fatal(err)
		}
		put += time.Since(t0)
		j.WriteAt(data, int64(i%1000)*4096)
		j.Sync()
	}
	b.ReportMetric(float64(put.Microseconds())/float64(i), "us-put")
}

// PutSmallAsync: the blob counts at once (Has, Open waits for its file),
// Flush waits for every pending write; identical puts are fine; bad
// arguments are refused.
func TestPutSmallAsync(t *testing.T) {
	s := newTestStore(t)
	var infos []*bt.Info
	var datas [][]byte
	for i := range 50 {
		data := randomBlobData(1000+i, uint64(i+20))
		info := HashSmall(data)
		if err := s.PutSmallAsync(info, data); err != nil {
			t.Fatal(err)
		}
		if !s.Has(info.Hash()) {
			t.Fatalf("blob %d not complete right after PutSmallAsync", i)
		}
		infos, datas = append(infos, info), append(datas, data)
	}
	// Open waits for the file.
	f, err := s.Open(infos[49].Hash())
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(datas[49]))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, datas[49]) {
		t.Fatalf("read %v", err)
	}
	f.Close()
	if err := s.PutSmallAsync(infos[3], datas[3]); err != nil { // again
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, info := range infos {
		b, err := os.ReadFile(s.dataPath(info.Hash()))
		if err != nil || !bytes.Equal(b, datas[i]) {
			t.Fatalf("blob %d after Flush: %v", i, err)
		}
	}
	hs, err := s.Complete()
	if err != nil || len(hs) != len(infos) {
		t.Fatalf("Complete: %d, %v", len(hs), err)
	}
	if err := s.PutSmallAsync(infos[0], datas[1]); err == nil {
		t.Error("data that is not the info's accepted")
	}
	if err := s.PutSmallAsync(HashSmall([]byte{1}), nil); err == nil {
		t.Error("empty data accepted")
	}
}
