package volume

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/internal/testwait"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/node"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testOpts are options for an in-process node on loopback: no mDNS, fast
// periods.
func testOpts(roots ...string) Options {
	return Options{
		ID:          "vol",
		Roots:       roots,
		Listen:      "127.0.0.1:0",
		API:         "127.0.0.1:0",
		AntiEntropy: 300 * time.Millisecond,
		PeerPoll:    200 * time.Millisecond,
		NoPeerWait:  3 * time.Second,
		JoinTimeout: 20 * time.Second,
		Log:         quiet,
	}
}

func start(t *testing.T, o Options) *Volume {
	t.Helper()
	v, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := v.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return v
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

// sealData makes data a blob of n's store.
func sealData(t *testing.T, n *node.Node, data []byte) *bt.Info {
	t.Helper()
	f, err := n.Store.TempFile()
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	f.Close()
	info, err := n.Store.Seal(f.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// putFile seals data into n's store and commits it at path.
func putFile(t *testing.T, n *node.Node, path string, data []byte) *bt.Info {
	t.Helper()
	info := sealData(t, n, data)
	err := n.Repo.Update(t.Context(), "write "+path, func(tx *meta.Tx) error {
		return tx.Put(path, &meta.Entry{Kind: meta.KindFile, Mode: 0o644, Mtime: time.Now().UnixNano(), Info: info})
	})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func has(n *node.Node, path string) bool {
	_, ok := n.Repo.Snapshot().Get(path)
	return ok
}

// Two processes' worth of volume on loopback: B joins A with the key and
// A's API address, clones the namespace, sees A's writes, reads A's blob
// from the middle, and A sees B's writes and copies.
func TestJoinSyncAndRead(t *testing.T) {
	oa := testOpts(filepath.Join(t.TempDir(), "a"))
	oa.Create = true
	a := start(t, oa)
	data := make([]byte, 5<<20+333)
	rand.Read(data)
	info := putFile(t, a.Primary(), "film.mkv", data)

	ob := testOpts(filepath.Join(t.TempDir(), "b"))
	ob.Key = a.Key()
	ob.Peers = []string{a.APIAddr().String()}
	b := start(t, ob)
	if !has(b.Primary(), "film.mkv") {
		t.Fatal("B started without the namespace it cloned")
	}

	// A write on A reaches B.
	putFile(t, a.Primary(), "second", []byte("second file"))
	waitFor(t, 10*time.Second, "A's write visible on B", func() bool { return has(b.Primary(), "second") })

	// B reads A's blob from the middle through its swarm.
	buf := make([]byte, 100<<10)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	off := int64(len(data) / 2)
	if n, err := b.Primary().Swarms.ReadAt(ctx, info, buf, off); err != nil || !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
		t.Fatalf("read from the middle: %d, %v", n, err)
	}
	waitFor(t, 20*time.Second, "B holds a complete copy", func() bool { return b.Primary().Store.Has(info.Hash()) })
	waitFor(t, 10*time.Second, "A counts two copies", func() bool { n, _ := a.Copies(info.Hash()); return n == 2 })

	// A write on B reaches A (A learned B from its notices).
	putFile(t, b.Primary(), "from-b", []byte("b's file"))
	waitFor(t, 10*time.Second, "B's write visible on A", func() bool { return has(a.Primary(), "from-b") })
	waitFor(t, 10*time.Second, "equal heads", func() bool { return a.Primary().Repo.Head() == b.Primary().Repo.Head() })

	st, err := a.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 3 || len(st.Peers) != 1 || !st.Peers[0].Alive || st.Peers[0].Node != b.Primary().Config.NodeID {
		t.Errorf("A's status: %d files, peers %+v", st.Files, st.Peers)
	}
}

// Two roots in one process: the second disk's node follows the first's
// namespace, and a blob on the second disk is read through the first.
func TestTwoDisksOneProcess(t *testing.T) {
	o := testOpts(filepath.Join(t.TempDir(), "d1"), filepath.Join(t.TempDir(), "d2"))
	o.Create = true
	v := start(t, o)
	if len(v.Nodes) != 2 || v.Nodes[0].Config.VolumeKey != v.Nodes[1].Config.VolumeKey {
		t.Fatalf("nodes: %d", len(v.Nodes))
	}
	putFile(t, v.Nodes[0], "a", []byte("on disk one"))
	waitFor(t, 10*time.Second, "disk two's namespace follows", func() bool { return has(v.Nodes[1], "a") })

	// A blob only disk two holds, named in disk one's namespace.
	data := []byte("only on the second disk, read through the first")
	f, _ := v.Nodes[1].Store.TempFile()
	f.Write(data)
	f.Close()
	info, err := v.Nodes[1].Store.Seal(f.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = v.Nodes[0].Repo.Update(t.Context(), "name it", func(tx *meta.Tx) error {
		return tx.Put("b", &meta.Entry{Kind: meta.KindFile, Mode: 0o644, Info: info})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "disk two knows b", func() bool { return has(v.Nodes[1], "b") })
	buf := make([]byte, len(data))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if n, err := v.Nodes[0].Swarms.ReadAt(ctx, info, buf, 0); err != nil || !bytes.Equal(buf[:n], data) {
		t.Fatalf("read through the first disk: %d %q, %v", n, buf[:n], err)
	}
	if n, _ := v.Copies(info.Hash()); n != 1 {
		t.Errorf("copies %d, want 1", n)
	}
}

// A new node without a key, or without a peer, or with a wrong key, fails
// with a clear error and leaves no root behind.
func TestJoinRefusals(t *testing.T) {
	root := filepath.Join(t.TempDir(), "new")
	if _, err := Open(t.Context(), testOpts(root)); !errors.Is(err, ErrNeedKey) || !errors.Is(err, ErrUsage) {
		t.Fatalf("no key: %v", err)
	}
	o := testOpts(root)
	o.Key = base64.StdEncoding.EncodeToString(make([]byte, 32))
	if _, err := Open(t.Context(), o); !errors.Is(err, ErrNoPeer) {
		t.Fatalf("no peer: %v", err)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused join left %s: %v", root, err)
	}

	oa := testOpts(filepath.Join(t.TempDir(), "a"))
	oa.Create = true
	a := start(t, oa)
	o.Peers = []string{a.APIAddr().String()} // the key is wrong
	v, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	err = v.Start(t.Context())
	if !errors.Is(err, ErrUsage) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, node.ConfigFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed join left its node.json: %v", err)
	}

	// --create on a root that holds a node.
	oc := testOpts(a.Primary().Root)
	oc.Create = true
	if _, err := Open(t.Context(), oc); !errors.Is(err, ErrUsage) {
		t.Fatalf("create over a node: %v", err)
	}
}

// Reads that cross between two disks at once (disk one reading blobs only
// disk two holds while disk two reads blobs only disk one holds) never
// wait on each other: each asks the registry's resolver without holding
// its own lock.
func TestCrossDiskReadsConcurrently(t *testing.T) {
	o := testOpts(filepath.Join(t.TempDir(), "d1"), filepath.Join(t.TempDir(), "d2"))
	o.Create = true
	v := start(t, o)
	type blob struct {
		info *bt.Info
		data []byte
	}
	seal := func(n *node.Node, i int) blob {
		data := []byte(fmt.Sprintf("blob %d held by %s only", i, n.Config.NodeID))
		info := sealData(t, n, data)
		err := v.Nodes[0].Repo.Update(t.Context(), "name it", func(tx *meta.Tx) error {
			return tx.Put(fmt.Sprintf("b%d-%s", i, n.Config.NodeID), &meta.Entry{Kind: meta.KindFile, Mode: 0o644, Info: info})
		})
		if err != nil {
			t.Fatal(err)
		}
		return blob{info, data}
	}
	const n = 40
	var on1, on2 []blob
	for i := range n {
		on1 = append(on1, seal(v.Nodes[0], i))
		on2 = append(on2, seal(v.Nodes[1], i))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	errs := make(chan error, 2*n)
	var wg sync.WaitGroup
	read := func(reader *node.Node, b blob) {
		defer wg.Done()
		buf := make([]byte, len(b.data))
		if k, err := reader.Swarms.ReadAt(ctx, b.info, buf, 0); err != nil || !bytes.Equal(buf[:k], b.data) {
			errs <- fmt.Errorf("read %s: %d bytes, %v", b.info.Hash(), k, err)
		}
	}
	for i := range n {
		wg.Add(2)
		go read(v.Nodes[0], on2[i])
		go read(v.Nodes[1], on1[i])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
