package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/dht"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/meta"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// host is one node with its own listener, as if on its own machine.
type host struct {
	n  *Node
	ln *swarm.Listener
}

func startHost(t *testing.T, ctx context.Context, peers ...string) *host {
	return startHostDHT(t, ctx, nil, peers...)
}

func startHostDHT(t *testing.T, ctx context.Context, d PeerFinder, peers ...string) *host {
	t.Helper()
	reg := swarm.NewRegistry()
	ln, err := swarm.Listen("127.0.0.1:0", reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	lport, _ := strconv.Atoi(port)
	n, err := Open(filepath.Join(t.TempDir(), "root"), "vol", Options{
		Create: true,
		Log:    quiet,
		Swarms: SwarmOptions{Registry: reg, Peers: peers, NoPeerWait: 5 * time.Second, DHT: d, ListenPort: lport},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { ln.Serve(ctx); done <- struct{}{} }()
	go func() { n.Serve(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		<-done
		<-done
		n.Close()
	})
	return &host{n: n, ln: ln}
}

// putFile seals data into h's store and commits it at path.
func putFile(t *testing.T, ctx context.Context, h *host, path string, data []byte) *bt.Info {
	t.Helper()
	f, err := h.n.Store.TempFile()
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	f.Close()
	info, err := h.n.Store.Seal(f.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	commitManifest(t, ctx, h, path, info)
	return info
}

func commitManifest(t *testing.T, ctx context.Context, h *host, path string, info *bt.Info) {
	t.Helper()
	err := h.n.Repo.Update(ctx, "write "+path, func(tx *meta.Tx) error {
		return tx.Put(path, &meta.Entry{Kind: meta.KindFile, Mode: 0o644, Mtime: time.Now().UnixNano(), Info: info})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRemoteReadThroughMount: a file whose blob only node A holds is read
// on node B, through B's mount, from the middle first; B ends up with a
// complete copy.
func TestRemoteReadThroughMount(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a := startHost(t, ctx)
	b := startHost(t, ctx, a.ln.Addr().String())
	data := make([]byte, 9<<20+77)
	rand.Read(data)
	info := putFile(t, ctx, a, "film.mkv", data)
	if _, err := a.n.Swarms.Ensure(info); err != nil { // A seeds it
		t.Fatal(err)
	}
	// The namespace sync is a later step: give B the manifest by hand.
	commitManifest(t, ctx, b, "film.mkv", info)
	if b.n.Store.Has(info.Hash()) {
		t.Fatal("B has the blob before reading")
	}

	mnt := t.TempDir()
	fsys := fs.New(b.n.Repo, b.n.Store, fs.Options{Logger: quiet, Remote: b.n.Swarms, RemoteTimeout: 20 * time.Second})
	pt, err := fs.Mount(mnt, fsys, fs.MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pt.Unmount()
	f, err := os.Open(filepath.Join(mnt, "film.mkv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mid := make([]byte, 64<<10)
	off := int64(len(data) / 2)
	if _, err := f.ReadAt(mid, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mid, data[off:off+int64(len(mid))]) {
		t.Fatal("middle of the file differs")
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole file: %d bytes, %v; want %d equal bytes", len(got), err, len(data))
	}
	sw, err := b.n.Swarms.Ensure(info)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sw.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("B's copy did not become complete")
	}
	if !b.n.Store.Has(info.Hash()) {
		t.Fatal("B's store has no complete copy after the swarm finished")
	}
}

// TestRemoteReadNoPeerFails: with no live peer holding the blob, a read
// fails after the bounded wait instead of hanging.
func TestRemoteReadNoPeerFails(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := startHost(t, ctx)
	info := bt.NewInfo(1<<20, 256<<10, bytes.Repeat([]byte{7}, 4*20))
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	start := time.Now()
	_, err := b.n.Swarms.ReadAt(rctx, info, make([]byte, 10), 0)
	if err == nil {
		t.Fatal("read with no peer succeeded")
	}
	if time.Since(start) > 25*time.Second {
		t.Fatalf("failed only after %v", time.Since(start))
	}
}

// TestDHTFindsSeed: B knows no peer of the blob, but the DHT it shares
// with A does: A announces the blob it seeds, B's swarm asks the DHT and
// reads from A.
func TestDHTFindsSeed(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var ds []*dht.Server
	for range 2 {
		d, err := dht.New(dht.Config{Addr: "127.0.0.1:0", QueryTimeout: time.Second, LookupTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	ds[0].AddNode(ds[1].Addr())
	ds[1].AddNode(ds[0].Addr())
	done := make(chan struct{}, 2)
	for _, d := range ds {
		go func() { d.Serve(ctx); done <- struct{}{} }()
	}
	defer func() { cancel(); <-done; <-done }()

	a := startHostDHT(t, ctx, ds[0])
	b := startHostDHT(t, ctx, ds[1])
	data := make([]byte, 3<<20+5)
	rand.Read(data)
	info := putFile(t, ctx, a, "f", data)
	if _, err := a.n.Swarms.Ensure(info); err != nil { // A seeds and announces
		t.Fatal(err)
	}
	_, aport, _ := net.SplitHostPort(a.ln.Addr().String())
	deadline := time.Now().Add(20 * time.Second)
	for announced := false; !announced; {
		if time.Now().After(deadline) {
			t.Fatal("A's announce never reached the DHT")
		}
		lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
		ds[1].GetPeers(lctx, info.Hash(), func(ap netip.AddrPort) {
			if strconv.Itoa(int(ap.Port())) == aport {
				announced = true
			}
		})
		lcancel()
	}
	buf := make([]byte, 64<<10)
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	off := int64(len(data) / 3)
	if n, err := b.n.Swarms.ReadAt(rctx, info, buf, off); err != nil || !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
		t.Fatalf("B's read through a peer found on the DHT: %d, %v", n, err)
	}
}
