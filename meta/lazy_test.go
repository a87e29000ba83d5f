package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/piece"
)

// syncedOff returns the offset in j's file up to which records are
// durable.
func syncedOff(j *journal) int64 {
	return journalHeader + max(0, j.durable.Load()-j.epochBase)
}

// powerCut copies the node root of r (meta.git and the blob store) as a
// power cut at this moment would leave it: journal bytes written after the
// last fdatasync are lost (zeroed), and so are the blob files named in
// torn (truncated to 0 bytes, as a file written without fsync can come
// back). r's Serve loop must run with a long FlushDelay so that no loose
// object or ref is written that a journal record does not cover.
func powerCut(t *testing.T, r *Repo, root string, torn []bt.InfoHash) string {
	t.Helper()
	r.serveMu.Lock()
	defer r.serveMu.Unlock()
	dst := filepath.Join(t.TempDir(), "cut")
	if out, err := exec.Command("cp", "-a", root, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy root: %v\n%s", err, out)
	}
	if lost := r.j.off - syncedOff(r.j); lost > 0 {
		f, err := os.OpenFile(filepath.Join(dst, "meta.git", journalName), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(make([]byte, lost), syncedOff(r.j)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	for _, h := range torn {
		p := filepath.Join(dst, "blobs", h.String()[:2], h.String())
		os.Chmod(p, 0o644)
		if err := os.Truncate(p, 0); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	return dst
}

// reopen opens the store and the repository at root as a node does after
// a crash, with the store's Restore as the restorer.
func reopen(t *testing.T, root string) (*Repo, *piece.Store) {
	t.Helper()
	st, err := piece.OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(filepath.Join(root, "meta.git"), Options{RestoreBlob: st.Restore})
	if err != nil {
		t.Fatalf("Open after the cut: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if p := r.Problems(); len(p) > 0 {
		t.Errorf("problems: %v", p)
	}
	return r, st
}

// sealSmall stores n random bytes (from seed) with SealSmall, as fs does.
func sealSmall(t *testing.T, st *piece.Store, n int, seed uint64) (*bt.Info, []byte) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	f, err := st.TempFile()
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	f.Close()
	info, got, err := st.SealSmall(f.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return info, got
}

// blobIs checks that the store holds info's blob with exactly data.
func blobIs(t *testing.T, st *piece.Store, info *bt.Info, data []byte) {
	t.Helper()
	f, err := st.Open(info.Hash())
	if err != nil {
		t.Errorf("blob %s: %v", info.Hash(), err)
		return
	}
	defer f.Close()
	got := make([]byte, len(data)+1)
	n, _ := f.ReadAt(got, 0)
	if !bytes.Equal(got[:n], data) {
		t.Errorf("blob %s holds %d bytes that differ from the %d written", info.Hash(), n, len(data))
	}
}

func emptyFile() *Entry { return &Entry{Kind: KindFile, Mode: 0o644} }

// openForCuts opens a repository in a new node root, with a blob store
// there as its restorer and a FlushDelay of an hour (so that only journal
// records make anything durable, as powerCut requires), and serves it.
func openForCuts(t *testing.T, opts Options) (root string, r *Repo, st *piece.Store) {
	t.Helper()
	root = t.TempDir()
	st, err := piece.OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	opts.FlushDelay, opts.RestoreBlob = time.Hour, st.Restore
	if r, err = Open(filepath.Join(root, "meta.git"), opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() }) // after serve's cleanup stops Serve
	serve(t, r)
	return root, r, st
}

// TestUpdateLazyPowerCut: a lazy update is published at once but costs no
// barrier; a power cut loses it whole until the next durable update (even
// one that changes nothing), Sync or FlushDelay makes it durable.
func TestUpdateLazyPowerCut(t *testing.T) {
	root := t.TempDir()
	r, err := Open(filepath.Join(root, "meta.git"), Options{FlushDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() }) // after serve's cleanup stops Serve
	serve(t, r)
	ctx := context.Background()
	lazy := func(p string) {
		t.Helper()
		if err := r.UpdateLazy(ctx, "create "+p, func(tx *Tx) error { return tx.Put(p, emptyFile()) }); err != nil {
			t.Fatal(err)
		}
		if _, ok := r.Snapshot().Get(p); !ok {
			t.Fatalf("lazy %s not published", p)
		}
	}
	has := func(r *Repo, want map[string]bool) {
		t.Helper()
		for p, w := range want {
			if _, ok := r.Snapshot().Get(p); ok != w {
				t.Errorf("%s present %v, want %v", p, ok, w)
			}
		}
	}
	barriers := func(want uint64) {
		t.Helper()
		if got := r.Stats().Barriers; got != want {
			t.Errorf("%d barriers, want %d", got, want)
		}
	}

	lazy("a")
	barriers(0)
	c, _ := reopen(t, powerCut(t, r, root, nil))
	has(c, map[string]bool{"a": false})

	lazy("b")
	put(t, r, "c", 3) // durable: a and b with it
	barriers(1)
	cut := powerCut(t, r, root, nil)
	c, _ = reopen(t, cut)
	has(c, map[string]bool{"a": true, "b": true, "c": true})
	gitFsckDir(t, filepath.Join(cut, "meta.git"))

	lazy("d")
	if err := r.Update(ctx, "nothing", func(*Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	barriers(2)
	c, _ = reopen(t, powerCut(t, r, root, nil))
	has(c, map[string]bool{"d": true})

	lazy("e")
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	c, _ = reopen(t, powerCut(t, r, root, nil))
	has(c, map[string]bool{"e": true})
	if s := r.Stats(); s.Lazy != 4 || s.Updates != 5 {
		t.Errorf("stats %+v: want 4 lazy of 5 updates", s)
	}
}

// TestUpdateLazyFlushDelay: with nothing else happening, a lazy update is
// durable within FlushDelay.
func TestUpdateLazyFlushDelay(t *testing.T) {
	r, err := Open(filepath.Join(t.TempDir(), "meta.git"), Options{FlushDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() }) // after serve's cleanup stops Serve
	serve(t, r)
	if err := r.UpdateLazy(context.Background(), "a", func(tx *Tx) error { return tx.Put("a", emptyFile()) }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Barriers == 0 {
		if time.Now().After(deadline) {
			t.Fatal("lazy update not made durable after FlushDelay")
		}
		select {
		case <-r.Watch():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestAttachBlobPowerCut: blobs sealed without fsync and attached to a
// commit come back from the journal after a power cut that tore their
// files; lazy commits with blobs count once a durable one follows.
func TestAttachBlobPowerCut(t *testing.T) {
	root, r, st := openForCuts(t, Options{})
	if !r.AttachesBlobs() {
		t.Fatal("AttachesBlobs is false with a RestoreBlob")
	}
	ctx := context.Background()
	write := func(p string, info *bt.Info, data []byte, lazy bool) {
		t.Helper()
		up := r.Update
		if lazy {
			up = r.UpdateLazy
		}
		err := up(ctx, "write "+p, func(tx *Tx) error {
			if err := tx.AttachBlob(info, data); err != nil {
				return err
			}
			return tx.Put(p, &Entry{Kind: KindFile, Mode: 0o644, Info: info})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := r.UpdateLazy(ctx, "create a", func(tx *Tx) error { return tx.Put("a", emptyFile()) }); err != nil {
		t.Fatal(err)
	}
	infoA, dataA := sealSmall(t, st, 5000, 1)
	write("a", infoA, dataA, false)
	infoB, dataB := sealSmall(t, st, piece.MaxSmallBlob, 2)
	write("b", infoB, dataB, true) // lazy: lost in a cut now
	if s := r.Stats(); s.Barriers != 1 || s.Blobs != 1 || s.Commits != 1 {
		t.Errorf("stats %+v: want 1 barrier, 1 commit with 1 blob (the lazy create went with it; b waits)", s)
	}
	torn := []bt.InfoHash{infoA.Hash(), infoB.Hash()}
	cut := powerCut(t, r, root, torn)

	// Without a restorer the journal cannot be replayed: Open refuses
	// rather than publish a manifest without its blob.
	cutCopy := filepath.Join(t.TempDir(), "cut2")
	if out, err := exec.Command("cp", "-a", cut, cutCopy).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r2, err := Open(filepath.Join(cutCopy, "meta.git"), Options{}); err == nil {
		r2.Close()
		t.Error("Open without RestoreBlob replayed a journal with blobs")
	}
	failing := func(*bt.Info, []byte) error { return errors.New("disk on fire") }
	if r2, err := Open(filepath.Join(cutCopy, "meta.git"), Options{RestoreBlob: failing}); err == nil {
		r2.Close()
		t.Error("Open succeeded although RestoreBlob failed")
	}

	c, cst := reopen(t, cut)
	if e, ok := c.Snapshot().Get("a"); !ok || e.Hash != infoA.Hash() {
		t.Errorf("a after the cut: %v %v", e, ok)
	}
	blobIs(t, cst, infoA, dataA)
	if _, ok := c.Snapshot().Get("b"); ok {
		t.Error("lazy b survived a cut before any barrier")
	}

	// A durable update that changes nothing makes the lazy b durable.
	if err := r.Update(ctx, "nothing", func(*Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	c, cst = reopen(t, powerCut(t, r, root, torn))
	blobIs(t, cst, infoA, dataA)
	if e, ok := c.Snapshot().Get("b"); !ok || e.Hash != infoB.Hash() {
		t.Errorf("b after the cut: %v %v", e, ok)
	}
	blobIs(t, cst, infoB, dataB)
	// The replay checkpointed: the restored blobs are durable and the
	// journal is empty.
	if recs, _ := c.j.records(); len(recs) != 0 {
		t.Errorf("%d live records after replay", len(recs))
	}

	// A torn record (the append of a record with a blob): replay stops
	// before it.
	infoC, dataC := sealSmall(t, st, 3000, 3)
	r.serveMu.Lock()
	off := r.j.off
	r.serveMu.Unlock()
	write("c", infoC, dataC, false)
	cut = powerCut(t, r, root, []bt.InfoHash{infoC.Hash()})
	jf, err := os.OpenFile(filepath.Join(cut, "meta.git", journalName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	jf.ReadAt(b[:], off+recordHead+100)
	b[0] ^= 0xff
	jf.WriteAt(b[:], off+recordHead+100)
	jf.Close()
	c, _ = reopen(t, cut)
	if _, ok := c.Snapshot().Get("c"); ok {
		t.Error("c survived a torn record")
	}
	if e, ok := c.Snapshot().Get("b"); !ok || e.Hash != infoB.Hash() {
		t.Errorf("b lost with a later torn record: %v %v", e, ok)
	}
}

// TestAttachBlobChecks: AttachBlob refuses what it cannot carry, and a
// batch of many attached blobs is split into several commits.
func TestAttachBlobChecks(t *testing.T) {
	root := t.TempDir()
	st, err := piece.OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	info, data := sealSmall(t, st, 1000, 1)
	attach := func(r *Repo, info *bt.Info, data []byte) error {
		return r.Update(context.Background(), "x", func(tx *Tx) error {
			if err := tx.AttachBlob(info, data); err != nil {
				return err
			}
			return tx.Put("x", &Entry{Kind: KindFile, Info: info})
		})
	}
	plain, err := Open(filepath.Join(t.TempDir(), "meta.git"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	serve(t, plain)
	if plain.AttachesBlobs() {
		t.Error("AttachesBlobs without a RestoreBlob")
	}
	if err := attach(plain, info, data); !errors.Is(err, ErrInvalid) {
		t.Errorf("attach without a restorer: %v, want ErrInvalid", err)
	}

	r, err := Open(filepath.Join(root, "meta.git"), Options{RestoreBlob: st.Restore, JournalSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	serve(t, r)
	if err := attach(r, info, data[:10]); !errors.Is(err, ErrInvalid) {
		t.Errorf("attach of short data: %v, want ErrInvalid", err)
	}
	big := bt.NewInfo(piece.MaxSmallBlob+1, 1<<20, make([]byte, 20))
	if err := attach(r, big, make([]byte, piece.MaxSmallBlob+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("attach of a big blob: %v, want ErrInvalid", err)
	}

	// A journal under 4 MiB takes no blobs.
	small, err := Open(filepath.Join(t.TempDir(), "meta.git"), Options{RestoreBlob: st.Restore, JournalSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if small.AttachesBlobs() {
		t.Error("AttachesBlobs with a 1 MiB journal")
	}
	small.Close()

	// 40 concurrent writers of 100 KiB blobs: a 4 MiB journal allows 1
	// MiB of blobs per commit, so they cannot all go in one.
	var wg sync.WaitGroup
	infos := make([]*bt.Info, 40)
	datas := make([][]byte, 40)
	for i := range infos {
		infos[i], datas[i] = sealSmall(t, st, 100<<10, uint64(10+i))
	}
	start := r.Stats().Commits
	for i := range infos {
		wg.Go(func() {
			p := fmt.Sprintf("f%d", i)
			err := r.Update(context.Background(), p, func(tx *Tx) error {
				if err := tx.AttachBlob(infos[i], datas[i]); err != nil {
					return err
				}
				return tx.Put(p, &Entry{Kind: KindFile, Info: infos[i]})
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// Batches end once 1 MiB is attached: at most 11 blobs per commit.
	if n := r.Stats().Commits - start; n < 4 {
		t.Errorf("%d commits for 4 MiB of blobs, want at least 4", n)
	}
	for i := range infos {
		if e, ok := r.Snapshot().Get(fmt.Sprintf("f%d", i)); !ok || e.Hash != infos[i].Hash() {
			t.Errorf("f%d missing", i)
		}
	}
}

// gitFsckDir runs git fsck on the repository at dir.
func gitFsckDir(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("git", "--git-dir", dir, "fsck", "--no-dangling")
	cmd.Env = append(cmd.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("git fsck: %v\n%s", err, out)
	}
}
