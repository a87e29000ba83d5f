package swarm_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/bt/swarm/swarmtest"
	"github.com/delugefs/delugefs/internal/testwait"
)

// TestReaderReadAhead: each reader has its own read-ahead. A stream-only
// leech with a reader that reads without read-ahead (Off) fetches only
// what it reads; a reader with a fixed 4 MiB window gets those 4 MiB after
// its read; a reader with the default gets the small first window.
func TestReaderReadAhead(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(32<<20, 31)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seedNode.Start(info)

	leechNode := swarmtest.NewNode(t, swarm.Config{StreamOnly: true, ReadAheadMin: 256 << 10, ReadAheadMax: 1 << 20})
	leech := leechNode.Start(info)
	leech.AddPeer(seedNode.Addr)
	blob, err := leechNode.Store.OpenBlob(info)
	if err != nil {
		t.Fatal(err)
	}
	defer blob.Close()
	pl := info.PieceLength
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	read := func(r *swarm.Reader, off int64) {
		t.Helper()
		buf := make([]byte, 16<<10)
		if n, err := r.ReadAt(ctx, buf, off); err != nil || n != len(buf) || !bytes.Equal(buf, data[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d): %d, %v (or wrong bytes)", off, n, err)
		}
	}
	// has waits until every piece covering [off, off+n) is verified.
	has := func(off, n int64) {
		t.Helper()
		for i := off / pl; i <= (off+n-1)/pl; i++ {
			if !testwait.Until(10*time.Second, func() bool { return blob.HasPiece(int(i)) }) {
				t.Fatalf("piece %d (of the window [%d, %d)) not fetched", i, off, off+n)
			}
		}
	}

	none := leech.NewReader()
	defer none.Close()
	none.SetReadAhead(swarm.ReadAhead{Off: true})
	offNone := 20 << 20
	read(none, int64(offNone))

	fixed := leech.NewReader()
	defer fixed.Close()
	fixed.SetReadAhead(swarm.ReadAhead{Min: 4 << 20, Max: 4 << 20})
	offFixed := int64(8 << 20)
	read(fixed, offFixed)
	has(offFixed+16<<10, 4<<20)

	def := leech.NewReader()
	defer def.Close()
	offDef := int64(14 << 20)
	read(def, offDef)
	has(offDef+16<<10, 256<<10)

	// The requests of the windows went out after the read without
	// read-ahead was served, on the one connection to the one seed: had
	// it a window, its pieces would be here by now.
	for i := int64(offNone)/pl + 1; i < int64(offNone+(1<<20))/pl; i++ {
		if blob.HasPiece(int(i)) {
			t.Errorf("piece %d after a read at %d without read-ahead was fetched", i, offNone)
		}
	}
	// Nor did the default window take more than its first size.
	if i := (offDef + 16<<10 + 1<<20) / pl; blob.HasPiece(int(i)) {
		t.Errorf("piece %d, 1 MiB after a first read with the default window of 256 KiB, was fetched", i)
	}
	// A fixed window does not grow: reading on moves it by the read.
	read(fixed, offFixed+16<<10)
	has(offFixed+32<<10, 4<<20)
	if i := (offFixed + 32<<10 + 5<<20) / pl; blob.HasPiece(int(i)) {
		t.Errorf("piece %d, 5 MiB after a read with a fixed 4 MiB window, was fetched", i)
	}
}
