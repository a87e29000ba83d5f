package swarm_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/bt/swarm/swarmtest"
)

// waitDone waits for the swarm to complete, failing the test after d.
func waitDone(t *testing.T, s *swarm.Swarm, d time.Duration) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(d):
		p, _ := s.Progress(context.Background())
		t.Fatalf("download not done after %v: %+v", d, p)
	}
}

// readAll reads the whole blob through ReadAt.
func readAll(t *testing.T, s *swarm.Swarm) []byte {
	t.Helper()
	info := s.Info()
	out := make([]byte, info.Length)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := s.ReadAt(ctx, out, 0); err != nil || int64(n) != info.Length {
		t.Fatalf("ReadAt whole blob: %d, %v", n, err)
	}
	return out
}

func TestSeedToLeech(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(8<<20+12345, 1)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seed := seedNode.Start(info)
	select {
	case <-seed.Done():
	default:
		t.Fatal("a seed of a complete blob is not done")
	}

	leechNode := swarmtest.NewNode(t, swarm.Config{})
	leech := leechNode.Start(info)
	if err := leech.AddPeer(seedNode.Addr); err != nil {
		t.Fatal(err)
	}
	waitDone(t, leech, 30*time.Second)
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs from the seed's")
	}
	p, err := leech.Progress(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Pieces != p.Total || p.Bytes != int64(len(data)) {
		t.Errorf("progress %+v, want all %d bytes", p, len(data))
	}
	if !leechNode.Store.Has(info.Hash()) {
		t.Error("the store has no complete copy after the download")
	}
}
