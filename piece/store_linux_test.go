package piece

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/internal/testwait"
	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of the given size (as mount(8) spells it) on a
// new temporary directory and unmounts it when the test ends. It needs root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs on %s (the test needs root): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the disk is full.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return path
		}
	}
}

// shardEntries lists blobs/ab/ of h.
func shardEntries(t *testing.T, s *Store, h bt.InfoHash) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(s.dataPath(h)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestSealNoSpace(t *testing.T) {
	disk := mountTmpfs(t, "2m")
	s, err := OpenStore(filepath.Join(disk, "root"))
	if err != nil {
		t.Fatal(err)
	}
	old := randomBlobData(512<<10, 20)
	oldInfo, err := s.Seal(writeTemp(t, s, old), nil)
	if err != nil {
		t.Fatal(err)
	}

	// A file from another disk that does not fit: ENOSPC, nothing changed.
	outside := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(outside, randomBlobData(3<<20, 21), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(outside, nil); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Seal of a file larger than the disk: %v, want ENOSPC", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("the file given to a failed Seal: %v", err)
	}
	if hs, err := s.Complete(); err != nil || !slices.Equal(hs, []bt.InfoHash{oldInfo.Hash()}) {
		t.Fatalf("Complete() after a failed Seal = %v, %v", hs, err)
	}
	if got := tmpEntries(t, s); len(got) != 0 {
		t.Fatalf("tmp/ after a failed Seal: %v", got)
	}

	// A download larger than the disk is refused before it starts.
	bigInfo := blobInfo(randomBlobData(4<<20, 22), testPieceLen)
	if _, err := s.OpenBlob(bigInfo); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("OpenBlob larger than the disk: %v, want ENOSPC", err)
	}
	for _, p := range []string{s.dataPath(bigInfo.Hash()), s.havePath(bigInfo.Hash())} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s after a refused OpenBlob: %v", p, err)
		}
	}

	// A download that fits, then the disk fills up under it.
	data := randomBlobData(32*testPieceLen, 23)
	info := blobInfo(data, testPieceLen)
	b, err := s.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	writeBlobPiece(t, b, data, 0)
	writeBlobPiece(t, b, data, 2)
	mustVerifyPiece(t, b, 0)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	small := randomBlobData(10<<10, 24)
	smallPath := writeTemp(t, s, small)

	filler := fillDisk(t, disk)

	if _, err := b.WriteAt(data[testPieceLen:2*testPieceLen], testPieceLen); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteAt on a full disk: %v, want ENOSPC", err)
	}
	if ok, err := b.VerifyPiece(1); ok || err != nil {
		t.Fatalf("VerifyPiece of a piece that did not fit = %v, %v; want false, nil", ok, err)
	}
	if ok, _ := b.VerifyPiece(2); !ok { // persisting may fail: checked by Sync below
		t.Fatal("VerifyPiece(2) = false")
	}
	if err := b.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Sync on a full disk: %v, want ENOSPC", err)
	}
	for _, name := range shardEntries(t, s, info.Hash()) {
		if strings.Contains(name, tmpMarker) {
			t.Fatalf("half-written %s left after a failed Sync", name)
		}
	}
	bf, err := ParseBitfield(persistedHave(t, s, info), info.NumPieces())
	if err != nil || bf.Count() != 1 || !bf.Has(0) {
		t.Fatalf("persisted bitfield after a failed Sync: %v, %v", bf.Bytes(), err)
	}

	// Sealing a file already written needs no space: it is a rename.
	smallInfo, err := s.Seal(smallPath, nil)
	if err != nil {
		t.Fatalf("Seal on a full disk: %v", err)
	}
	if !bytes.Equal(readBlob(t, s, smallInfo.Hash()), small) {
		t.Fatal("small blob differs")
	}
	if !bytes.Equal(readBlob(t, s, oldInfo.Hash()), old) {
		t.Fatal("old blob changed")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatalf("Sync after space came back: %v", err)
	}
	bf, _ = ParseBitfield(persistedHave(t, s, info), info.NumPieces())
	if bf.Count() != 2 || !bf.Has(0) || !bf.Has(2) {
		t.Fatalf("persisted bitfield = %08b, want pieces 0 and 2", bf.Bytes())
	}
}

func TestSealFromOtherFilesystem(t *testing.T) {
	disk := mountTmpfs(t, "16m")
	s, err := OpenStore(filepath.Join(disk, "root"))
	if err != nil {
		t.Fatal(err)
	}
	data := randomBlobData(1<<20+3, 25)
	outside := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(outside, data, 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := s.Seal(outside, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(outside); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("sealed file still at its old place: %v", err)
	}
	if !bytes.Equal(readBlob(t, s, info.Hash()), data) {
		t.Fatal("blob differs")
	}
	if got := tmpEntries(t, s); len(got) != 0 {
		t.Fatalf("tmp/ after Seal: %v", got)
	}
}

// The background writer of PutSmallAsync runs at the lowest priority, on
// a thread of its own; a reader (Open) or Flush that needs a blob it has
// not begun writes the blob itself instead of waiting for it.
func TestPutSmallAsyncPriorityAndHelp(t *testing.T) {
	s := newTestStore(t)
	nice := make(chan string, 1)
	hold := make(chan struct{})
	var once sync.Once
	s.async.mu.Lock()
	s.async.beforeWrite = func() {
		once.Do(func() {
			stat, err := os.ReadFile("/proc/thread-self/stat")
			if err != nil {
				nice <- err.Error()
			} else {
				// Fields after the command's closing parenthesis: the
				// 17th of them (19th of the line) is the nice value.
				f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
				nice <- f[16]
			}
			<-hold // the writer stops before its first blob
		})
	}
	s.async.mu.Unlock()
	data := randomBlobData(3000, 99)
	info := HashSmall(data)
	if err := s.PutSmallAsync(info, data); err != nil {
		t.Fatal(err)
	}
	if n := <-nice; n != "19" {
		t.Errorf("writer's thread has nice %s, want 19", n)
	}
	// within fails the test when fn does not return in time (it would
	// wait for the held writer).
	within := func(what string, fn func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { defer close(done); fn() }() // ends when fn returns
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			close(hold)
			t.Fatalf("%s waited for the held writer", what)
		}
	}
	// The writer holds the blob without having begun it: Open writes it.
	var f *os.File
	var err error
	within("Open", func() { f, err = s.Open(info.Hash()) })
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read while the writer was held: %v", err)
	}
	f.Close()
	// So does Flush, for another one queued behind it.
	data2 := randomBlobData(2000, 100)
	info2 := HashSmall(data2)
	if err := s.PutSmallAsync(info2, data2); err != nil {
		t.Fatal(err)
	}
	within("Flush", func() { err = s.Flush() })
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(s.dataPath(info2.Hash())); err != nil || !bytes.Equal(b, data2) {
		t.Fatalf("blob after Flush with the writer held: %v", err)
	}
	close(hold)
	// The writer skips what others wrote and ends once idle.
	testwait.For(t, 10*time.Second, "the writer to end", func() bool {
		s.async.mu.Lock()
		defer s.async.mu.Unlock()
		return !s.async.running && len(s.async.queue) == 0
	})
	if b, err := os.ReadFile(s.dataPath(info.Hash())); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("first blob at the end: %v", err)
	}
}
