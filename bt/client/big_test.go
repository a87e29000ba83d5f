package client_test

// 64-bit offsets: a blob longer than 4 GiB, read past the 4 GiB line by
// our swarm and by anacrolix/torrent from our seeder.

import (
	"bytes"
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/client"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/bt/swarm/swarmtest"
	"github.com/delugefs/delugefs/piece"
)

func TestBeyond4GiB(t *testing.T) {
	swarmtest.CheckLeaks(t)
	const size = 4<<30 + 3<<20 + 17
	// A sparse file with marks around the 4 GiB line and at the end.
	path := filepath.Join(t.TempDir(), "big.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	marks := map[int64][]byte{
		0:               swarmtest.RandomData(1000, 40),
		1<<32 - 5000:    swarmtest.RandomData(10000, 41), // across the line
		1<<32 + 1<<20:   swarmtest.RandomData(3000, 42),
		size - 4096 - 7: swarmtest.RandomData(4096+7, 43), // the very end
	}
	for off, b := range marks {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Hashing 4 GiB would take most of the test's time: pieces without a
	// mark are zeros and share one hash.
	const pl = 8 << 20
	mi := &bt.MetaInfo{Info: sparseInfo(t, path, size, pl, marks)}
	if mi.Info.NumPieces() != 513 {
		t.Fatalf("torrent of %d pieces, want 513", mi.Info.NumPieces())
	}
	s, err := client.NewSeeder(context.Background(), client.SeedConfig{MetaInfo: mi, Data: path, NoVerify: true, Logger: swarmtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }() // ends with cancel
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		s.Close()
	})

	t.Run("our swarm", func(t *testing.T) {
		st, err := piece.OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		sw, err := swarm.New(mi.Info, swarm.Config{Store: st, StreamOnly: true, Logger: swarmtest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		sctx, stop := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- sw.Serve(sctx) }() // ends with stop
		defer func() {
			stop()
			if err := <-served; err != nil {
				t.Error(err)
			}
			sw.Close()
		}()
		if err := sw.AddPeer(s.Addr()); err != nil {
			t.Fatal(err)
		}
		for off, want := range marks {
			got := make([]byte, len(want))
			rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
			n, err := sw.ReadAt(rctx, got, off)
			rcancel()
			if err != nil && !(err == io.EOF && n == len(want)) {
				t.Fatalf("ReadAt %d: %d, %v", off, n, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("ReadAt %d: bytes differ", off)
			}
		}
		p, err := sw.Progress(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if p.Pieces > 16 {
			t.Errorf("a streaming swarm fetched %d pieces for 4 reads", p.Pieces)
		}
	})

	t.Run("anacrolix", func(t *testing.T) {
		cl := newAnacrolix(t, t.TempDir())
		tt, err := cl.AddTorrent(theirMetaInfo(t, mi))
		if err != nil {
			t.Fatal(err)
		}
		waitFlag(t, "anacrolix got the info", tt.GotInfo(), 30*time.Second)
		// The pieces it will read are wanted before it meets our seed:
		// anacrolix v1.61 can lose the wake-up that declares interest
		// later (see anacrolixGet).
		for off, want := range marks {
			tt.DownloadPieces(int(off/pl), int((off+int64(len(want))-1)/pl)+1)
		}
		tt.AddPeers([]torrent.PeerInfo{{Addr: addrString(s.Addr()), Trusted: true}})
		r := tt.NewReader()
		defer r.Close()
		r.SetReadahead(0)
		for off, want := range marks {
			rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
			r.SetContext(rctx)
			if _, err := r.Seek(off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(want))
			_, err := io.ReadFull(r, got)
			rcancel()
			if err != nil {
				t.Fatalf("anacrolix reads %d: %v", off, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("anacrolix reads %d: bytes differ", off)
			}
		}
	})
}

// sparseInfo makes the info dictionary of a sparse file that holds zeros
// except at marks, hashing only the pieces with a mark.
func sparseInfo(t *testing.T, path string, size, pl int64, marks map[int64][]byte) *bt.Info {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := int((size + pl - 1) / pl)
	marked := map[int]bool{n - 1: true}
	for off, b := range marks {
		for i := off / pl; i <= (off+int64(len(b))-1)/pl; i++ {
			marked[int(i)] = true
		}
	}
	zero := sha1.Sum(make([]byte, pl))
	buf := make([]byte, pl)
	var pieces []byte
	for i := range n {
		if !marked[i] {
			pieces = append(pieces, zero[:]...)
			continue
		}
		m := min(pl, size-int64(i)*pl)
		if _, err := f.ReadAt(buf[:m], int64(i)*pl); err != nil {
			t.Fatal(err)
		}
		sum := sha1.Sum(buf[:m])
		pieces = append(pieces, sum[:]...)
	}
	info, err := bt.ParseInfo(bt.EncodeDict(map[string][]byte{
		"length":       []byte(fmt.Sprintf("i%de", size)),
		"name":         []byte(fmt.Sprintf("%d:%s", len(filepath.Base(path)), filepath.Base(path))),
		"piece length": []byte(fmt.Sprintf("i%de", pl)),
		"pieces":       append([]byte(fmt.Sprintf("%d:", len(pieces))), pieces...),
	}))
	if err != nil {
		t.Fatal(err)
	}
	return info
}
