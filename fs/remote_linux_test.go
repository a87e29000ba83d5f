//go:build linux

package fs_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/fs/fstest"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/piece"
)

// swarm is a Remote test double: it serves blobs it was given, by info-hash.
type swarm struct {
	mu    sync.Mutex
	blobs map[bt.InfoHash][]byte
	reads int
}

func (s *swarm) ReadAt(ctx context.Context, info *bt.Info, p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	b, ok := s.blobs[info.Hash()]
	if !ok {
		return 0, context.DeadlineExceeded
	}
	return copy(p, b[off:]), nil
}

// putRemote commits a manifest for data whose blob is not in the store.
func putRemote(t *testing.T, n *fstest.Node, p string, data []byte) *bt.Info {
	hs := piece.NewHasher(piece.Length(int64(len(data))))
	hs.Write(data)
	info := hs.Info()
	err := n.Repo.Update(context.Background(), "remote file", func(tx *meta.Tx) error {
		return tx.Put(p, &meta.Entry{Kind: meta.KindFile, Mode: 0o644, Size: info.Length, Info: info, Hash: info.Hash()})
	})
	must(t, err)
	return info
}

func TestRemoteRead(t *testing.T) {
	data := bytes.Repeat([]byte("somewhere else "), 50000)
	// No swarm: EIO at once.
	n := start(t)
	putRemote(t, n, "far", data)
	_, err := os.ReadFile(filepath.Join(n.Dir, "far"))
	wantErrno(t, "read of a blob that is not here, no swarm", err, syscall.EIO)
	if fi, err := os.Stat(filepath.Join(n.Dir, "far")); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("stat: %v %v", fi, err)
	}
	// Opening it for writing needs its contents: EIO too, nothing committed.
	f, err := os.OpenFile(filepath.Join(n.Dir, "far"), os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("x"), 0)
	wantErrno(t, "write to a blob that is not here", err, syscall.EIO)
	wantErrno(t, "close", f.Close(), syscall.EIO)

	// Through the Remote seam.
	sw := &swarm{blobs: map[bt.InfoHash][]byte{}}
	n2 := fstest.Start(t, t.TempDir(), fs.Options{Remote: sw})
	info := putRemote(t, n2, "far", data)
	sw.mu.Lock()
	sw.blobs[info.Hash()] = data
	sw.mu.Unlock()
	got, err := os.ReadFile(filepath.Join(n2.Dir, "far"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the swarm: %d bytes, %v", len(got), err)
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.reads == 0 {
		t.Fatal("the swarm was not asked")
	}
}

// TestConcurrent runs writers and readers on shared and separate files at
// once (for -race and for deadlocks).
func TestConcurrent(t *testing.T) {
	n := start(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := filepath.Join(n.Dir, "own"+string(rune('a'+w)))
			shared := filepath.Join(n.Dir, "shared")
			for i := range 20 {
				data := bytes.Repeat([]byte{byte(w), byte(i)}, 5000+i)
				if err := os.WriteFile(mine, data, 0o644); err != nil {
					errs <- err
					return
				}
				if got, err := os.ReadFile(mine); err != nil || !bytes.Equal(got, data) {
					errs <- err
					return
				}
				if err := os.WriteFile(shared, data, 0o644); err != nil {
					errs <- err
					return
				}
				if _, err := os.ReadFile(shared); err != nil {
					errs <- err
					return
				}
				os.Rename(mine, mine+".old")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
