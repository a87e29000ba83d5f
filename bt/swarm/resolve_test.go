package swarm_test

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/bt/swarm/swarmtest"
	"github.com/delugefs/delugefs/internal/testwait"
)

// A node that runs no swarm for a blob it holds still serves it: the
// listener asks the registry's resolver, which starts a seed on demand.
// A hash the resolver does not know is refused.
func TestResolverSeedsOnDemand(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(3<<20+77, 5)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data) // complete in the store, no swarm running
	if seedNode.Registry.Get(info.Hash()) != nil {
		t.Fatal("Seed started a swarm; the test needs none")
	}
	var asked, unknown atomic.Int32
	seedNode.Registry.SetResolver(func(h bt.InfoHash) *swarm.Swarm {
		asked.Add(1)
		if h != info.Hash() {
			unknown.Add(1)
			return nil
		}
		return seedNode.Start(info) // registers it
	})

	other := swarmtest.RandomData(1<<20, 6)
	otherInfo := swarmtest.NewNode(t, swarm.Config{}).Seed(other)
	lost := swarmtest.NewNode(t, swarm.Config{NoPeerWait: 300 * time.Millisecond})
	ls := lost.Start(otherInfo)
	if err := ls.AddPeer(seedNode.Addr); err != nil {
		t.Fatal(err)
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
	if seedNode.Registry.Get(info.Hash()) == nil {
		t.Error("the resolved swarm is not registered")
	}
	if !testwait.Until(10*time.Second, func() bool { return unknown.Load() > 0 }) {
		t.Error("the resolver was never asked for the unknown hash")
	}
	if seedNode.Registry.Get(otherInfo.Hash()) != nil {
		t.Error("a swarm was registered for a hash the node does not hold")
	}
}
