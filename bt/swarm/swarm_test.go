package swarm_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/internal/testwait"

	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/bt/swarm/swarmtest"
	"github.com/delugefs/delugefs/bt/wire"
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

func TestReadAtMiddleBeforeComplete(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(32<<20, 2)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seedNode.Start(info)

	leechNode := swarmtest.NewNode(t, swarm.Config{StreamOnly: true})
	leech := leechNode.Start(info)
	leech.AddPeer(seedNode.Addr)
	r := leech.NewReader()
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, off := range []int64{int64(len(data)) / 2, 12345678, int64(len(data)) - 1000} {
		buf := make([]byte, 100000)
		n, err := r.ReadAt(ctx, buf, off)
		if off+int64(len(buf)) > int64(len(data)) {
			if err != io.EOF || n != len(data)-int(off) {
				t.Fatalf("ReadAt at %d past the end: %d, %v", off, n, err)
			}
		} else if err != nil || n != len(buf) {
			t.Fatalf("ReadAt at %d: %d, %v", off, n, err)
		}
		if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
			t.Fatalf("ReadAt at %d: wrong bytes", off)
		}
	}
	p, err := leech.Progress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pieces == 0 || p.Pieces >= p.Total/2 {
		t.Errorf("after three reads the leech has %d of %d pieces; want some, far from all", p.Pieces, p.Total)
	}
	select {
	case <-leech.Done():
		t.Error("a stream-only leech completed after three small reads")
	default:
	}
	// The first and last pieces were fetched for the open reader.
	if n, err := leech.ReadAt(ctx, make([]byte, 10), 0); err != nil || n != 10 {
		t.Errorf("read of the first piece: %d, %v", n, err)
	}
}

func TestReadAtNoPeers(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(1<<20, 3)
	other := swarmtest.NewNode(t, swarm.Config{})
	info := other.Seed(data)

	wait := 300 * time.Millisecond
	leechNode := swarmtest.NewNode(t, swarm.Config{NoPeerWait: wait})
	leech := leechNode.Start(info)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := leech.ReadAt(ctx, make([]byte, 100), 500000)
	took := time.Since(start)
	if !errors.Is(err, swarm.ErrNoPeers) {
		t.Fatalf("ReadAt without peers: %v, want ErrNoPeers", err)
	}
	if took < wait || took > wait+2*time.Second {
		t.Errorf("ReadAt without peers failed after %v, want about %v", took, wait)
	}

	// A magnet swarm without peers fails the same way.
	mag := leechNode.StartMagnet(bt.InfoHash{1, 2, 3})
	if _, err := mag.ReadAt(ctx, make([]byte, 100), 0); !errors.Is(err, swarm.ErrNoPeers) {
		t.Fatalf("magnet ReadAt without peers: %v, want ErrNoPeers", err)
	}
}

func TestDeadSeedMidTransfer(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(24<<20, 4)
	a := swarmtest.NewNode(t, swarm.Config{})
	info := a.Seed(data)
	seedA := a.Start(info)
	b := swarmtest.NewNode(t, swarm.Config{})
	b.Seed(data)
	b.Start(info)

	// 16 MB/s per connection: about a second with both seeds.
	leechNode := swarmtest.NewNode(t, swarm.Config{Dial: throttledDial(16 << 20)})
	leech := leechNode.Start(info)
	leech.AddPeer(a.Addr)
	leech.AddPeer(b.Addr)
	waitFor(t, 20*time.Second, "the leech to get a quarter from both seeds", func() bool {
		ps, _ := leech.Peers(context.Background())
		p, _ := leech.Progress(context.Background())
		busy := 0
		for _, pi := range ps {
			if pi.Outstanding > 0 {
				busy++
			}
		}
		return busy == 2 && p.Pieces >= p.Total/4
	})
	if err := a.Stop(seedA); err != nil {
		t.Fatal(err)
	}
	p, _ := leech.Progress(context.Background())
	if p.Pieces == p.Total {
		t.Fatal("the download finished before the seed was stopped")
	}
	waitDone(t, leech, 30*time.Second)
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs")
	}
}

func TestSilentPeer(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(4<<20, 5)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seedNode.Start(info)
	silent := newFakePeer(t, info.Hash(), fakeSilent)

	leechNode := swarmtest.NewNode(t, swarm.Config{RequestTimeout: 2 * time.Second, Dial: throttledDial(8 << 20)})
	leech := leechNode.Start(info)
	leech.AddPeer(silent.Addr())
	waitFor(t, 10*time.Second, "requests to the silent peer", func() bool { return silent.Requests() > 0 })
	leech.AddPeer(seedNode.Addr)
	waitDone(t, leech, 30*time.Second)
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs")
	}
}

func TestCorruptPeerBanned(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(8<<20, 6)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seedNode.Start(info)
	liar := newFakePeer(t, info.Hash(), fakeLiar)

	bans := swarm.NewBanList()
	leechNode := swarmtest.NewNode(t, swarm.Config{Bans: bans, BanDuration: time.Hour, Dial: throttledDial(8 << 20)})
	leech := leechNode.Start(info)
	leech.AddPeer(liar.Addr())
	leech.AddPeer(seedNode.Addr)
	waitDone(t, leech, 30*time.Second)
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs")
	}
	if liar.Requests() == 0 {
		t.Fatal("the liar got no request: the test proves nothing")
	}
	if !bans.Banned(liar.Addr(), time.Now()) {
		t.Error("the liar is not banned")
	}
	if bans.Banned(seedNode.Addr, time.Now()) {
		t.Error("the honest seed is banned")
	}
	// A banned peer is not dialed again.
	leech.AddPeer(liar.Addr())
	ps, _ := leech.Peers(context.Background())
	for _, p := range ps {
		if p.Addr == liar.Addr() {
			t.Error("still connected to the liar")
		}
	}
}

func TestMagnet(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(3<<20+777, 8)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seedNode.Start(info)

	leechNode := swarmtest.NewNode(t, swarm.Config{})
	leech := leechNode.StartMagnet(info.Hash())
	if leech.Info() != nil {
		t.Fatal("a magnet swarm knows its info before any peer")
	}
	leech.AddPeer(seedNode.Addr)
	// A read issued before the info is known waits for it, then for its
	// pieces.
	buf := make([]byte, 5000)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if n, err := leech.ReadAt(ctx, buf, 1<<20); err != nil || n != len(buf) || !bytes.Equal(buf, data[1<<20:1<<20+5000]) {
		t.Fatalf("ReadAt on a magnet swarm: %d, %v", n, err)
	}
	select {
	case <-leech.Ready():
	default:
		t.Fatal("not ready after a read")
	}
	if leech.Info().Hash() != info.Hash() {
		t.Fatal("fetched info has another hash")
	}
	waitDone(t, leech, 30*time.Second)
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs")
	}
}

// TestInboundAndSeedServes checks the listener direction: the seed dials
// the leech, and the seed serves (unchokes) an inbound peer.
func TestInbound(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(2<<20, 9)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seed := seedNode.Start(info)
	leechNode := swarmtest.NewNode(t, swarm.Config{})
	leech := leechNode.Start(info)
	seed.AddPeer(leechNode.Addr)
	waitDone(t, leech, 30*time.Second)
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs")
	}
	ps, err := seed.Peers(context.Background())
	if err != nil || len(ps) != 1 || !ps[0].Outbound || ps[0].AmChoking {
		t.Fatalf("seed's peers: %+v, %v", ps, err)
	}
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

func TestProtocolErrorClosesConnection(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(2<<20, 10)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seedNode.Start(info)
	broken := newFakePeer(t, info.Hash(), fakeBroken)

	rec := &logRecorder{}
	leechNode := swarmtest.NewNode(t, swarm.Config{Logger: slog.New(rec)})
	leech := leechNode.Start(info)
	leech.AddPeer(broken.Addr())
	waitFor(t, 10*time.Second, "the broken peer's connection to close", func() bool {
		for _, l := range rec.Lines() {
			if strings.Contains(l, "peer closed") && strings.Contains(l, broken.Addr()) && strings.Contains(l, "unknown message") {
				return true
			}
		}
		return false
	})
	leech.AddPeer(seedNode.Addr)
	waitDone(t, leech, 30*time.Second)
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs")
	}
}

func TestChoking(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(4<<20, 11)
	seedNode := swarmtest.NewNode(t, swarm.Config{
		UnchokeSlots:       1,
		ChokeInterval:      100 * time.Millisecond,
		OptimisticInterval: 200 * time.Millisecond,
	})
	info := seedNode.Seed(data)
	seed := seedNode.Start(info)

	var leeches []*swarm.Swarm
	for range 3 {
		n := swarmtest.NewNode(t, swarm.Config{Dial: throttledDial(4 << 20)})
		l := n.Start(info)
		l.AddPeer(seedNode.Addr)
		leeches = append(leeches, l)
	}
	maxUnchoked := 0
	timeout := time.After(30 * time.Second)
	for _, l := range leeches {
		for {
			select {
			case <-l.Done():
			case <-time.After(5 * time.Millisecond):
				ps, _ := seed.Peers(context.Background())
				n := 0
				for _, p := range ps {
					if !p.AmChoking {
						n++
					}
				}
				maxUnchoked = max(maxUnchoked, n)
				continue
			case <-timeout:
				t.Fatal("a leech did not finish")
			}
			break
		}
		if got := readAll(t, l); !bytes.Equal(got, data) {
			t.Fatal("leech's blob differs")
		}
	}
	if maxUnchoked > 2 {
		t.Errorf("the seed unchoked %d peers at once; 1 regular + 1 optimistic allowed", maxUnchoked)
	}
}

func TestTrustedAlwaysUnchoked(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(1<<20, 12)
	seedNode := swarmtest.NewNode(t, swarm.Config{UnchokeSlots: 1, Trusted: func(string) bool { return true }})
	info := seedNode.Seed(data)
	seed := seedNode.Start(info)
	for range 3 {
		n := swarmtest.NewNode(t, swarm.Config{StreamOnly: true})
		l := n.Start(info)
		l.AddPeer(seedNode.Addr)
	}
	waitFor(t, 10*time.Second, "three trusted peers unchoked", func() bool {
		ps, _ := seed.Peers(context.Background())
		n := 0
		for _, p := range ps {
			if !p.AmChoking && p.Trusted {
				n++
			}
		}
		return n == 3
	})
}

func TestKeepAliveAndIdleTimeout(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(1<<20, 16)
	idle := swarm.Config{KeepAlive: 50 * time.Millisecond, IdleTimeout: time.Second, StreamOnly: true}
	seedNode := swarmtest.NewNode(t, idle)
	info := seedNode.Seed(data)
	seedNode.Start(info)
	leechNode := swarmtest.NewNode(t, idle)
	leech := leechNode.Start(info)
	leech.AddPeer(seedNode.Addr)
	waitFor(t, 10*time.Second, "the connection", func() bool {
		ps, _ := leech.Peers(context.Background())
		return len(ps) == 1
	})
	// Nothing but keep-alives flows for several idle timeouts: the
	// connection must stay.
	if !testwait.Holds(2500*time.Millisecond, func() bool {
		ps, _ := leech.Peers(context.Background())
		return len(ps) == 1
	}) {
		t.Fatal("an idle connection with keep-alives was closed")
	}

	// A peer that sends nothing at all is dropped after the idle timeout.
	silent := newFakePeer(t, info.Hash(), fakeMute)
	leech.AddPeer(silent.Addr())
	waitFor(t, 10*time.Second, "the mute peer to connect", func() bool { return silent.Conns() > 0 })
	waitFor(t, 10*time.Second, "the mute peer to be dropped", func() bool {
		ps, _ := leech.Peers(context.Background())
		return len(ps) == 1
	})
}

func TestDuplicateConnections(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(3<<20, 17)
	a := swarmtest.NewNode(t, swarm.Config{})
	info := a.Seed(data)
	seed := a.Start(info)
	b := swarmtest.NewNode(t, swarm.Config{})
	leech := b.Start(info)
	// Both dial each other, twice.
	for range 2 {
		seed.AddPeer(b.Addr)
		leech.AddPeer(a.Addr)
	}
	waitDone(t, leech, 30*time.Second)
	waitFor(t, 10*time.Second, "one connection on each side", func() bool {
		ps1, _ := seed.Peers(context.Background())
		ps2, _ := leech.Peers(context.Background())
		return len(ps1) == 1 && len(ps2) == 1
	})
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs")
	}
}

// TestClaimsHandedOverOnError: a connection whose read loop fails with a
// block in its batch (here a malformed message right behind it; in the
// field, a duplicate connection the actor closed mid-batch) hands the
// block over on its way out. The block used to keep its claim for good:
// the seed's copy of it was skipped unread and the download stalled.
func TestClaimsHandedOverOnError(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(1<<20, 23)
	a := swarmtest.NewNode(t, swarm.Config{})
	info := a.Seed(data)
	a.Start(info)
	cut := newFakePeerData(t, info.Hash(), fakeCutOff, data, info.PieceLength)
	b := swarmtest.NewNode(t, swarm.Config{})
	leech := b.Start(info)
	leech.AddPeer(cut.Addr())
	waitFor(t, 10*time.Second, "the cut-off peer served and gone", func() bool {
		ps, _ := leech.Peers(context.Background())
		return cut.Requests() > 0 && len(ps) == 0
	})
	leech.AddPeer(a.Addr)
	waitDone(t, leech, 10*time.Second)
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs")
	}
}

// TestRedial: a leech whose only peer could not be reached dials it again
// (with backoff) until it can, and completes.
func TestRedial(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(1<<20, 24)
	a := swarmtest.NewNode(t, swarm.Config{})
	info := a.Seed(data) // no swarm yet: its listener refuses the info-hash
	rec := &logRecorder{}
	b := swarmtest.NewNode(t, swarm.Config{Logger: slog.New(rec)})
	leech := b.Start(info)
	leech.AddPeer(a.Addr)
	waitFor(t, 10*time.Second, "the first dial to fail", func() bool {
		for _, l := range rec.Lines() {
			if strings.Contains(l, "dial failed") && strings.Contains(l, a.Addr) {
				return true
			}
		}
		return false
	})
	a.Start(info)
	waitDone(t, leech, 10*time.Second)
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs")
	}
}

// TestRestart stops a leech mid-transfer and runs Serve again on the same
// Swarm (as a supervisor does), then makes a new Swarm on the same store
// (as a restarted node does): the download resumes and completes.
func TestRestart(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(16<<20, 18)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seedNode.Start(info)

	leechNode := swarmtest.NewNode(t, swarm.Config{})
	cfg := swarm.Config{Store: leechNode.Store, Logger: swarmtest.Logger(t), Dial: throttledDial(16 << 20)}
	s, err := swarm.New(info, cfg)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(s *swarm.Swarm) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	progress := func(s *swarm.Swarm, frac int) {
		waitFor(t, 20*time.Second, "progress", func() bool {
			p, _ := s.Progress(context.Background())
			return p.Total > 0 && p.Pieces >= p.Total/frac
		})
	}
	stop := serve(s)
	s.AddPeer(seedNode.Addr)
	progress(s, 4)
	stop()

	stop = serve(s)
	p, _ := s.Progress(context.Background())
	if p.Pieces == 0 || p.Pieces == p.Total {
		t.Fatalf("after a restart of Serve: %+v", p)
	}
	s.AddPeer(seedNode.Addr)
	progress(s, 2)
	stop()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := swarm.New(info, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop = serve(s2)
	defer func() {
		stop()
		s2.Close()
	}()
	p, _ = s2.Progress(context.Background())
	if p.Pieces < p.Total/2 || p.Pieces == p.Total {
		t.Logf("resumed with %+v", p) // the store persists marks every 64 MiB or second
	}
	s2.AddPeer(seedNode.Addr)
	waitDone(t, s2, 30*time.Second)
	if got := readAll(t, s2); !bytes.Equal(got, data) {
		t.Fatal("blob differs after restarts")
	}
}

// TestBadMessagesClose sends malformed messages to a seed through its
// listener: each connection is closed (never a panic), and the seed goes
// on serving.
func TestBadMessagesClose(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(1<<20+5, 19)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seedNode.Start(info)
	n := uint32(info.NumPieces())
	msg := func(id byte, payload ...byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(1+len(payload)))
		return append(append(b, id), payload...)
	}
	u32 := func(vs ...uint32) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.BigEndian.AppendUint32(b, v)
		}
		return b
	}
	cases := []struct {
		name string
		send []byte
	}{
		{"length over the limit", u32(1 << 30)},
		{"unknown id", msg(99, 1, 2)},
		{"request too long", msg(6, u32(0, 0, 1<<20)...)},
		{"request past the end", msg(6, u32(n, 0, 16<<10)...)},
		{"have past the end", msg(4, u32(n+5)...)},
		{"bitfield of the wrong size", msg(5, 0xff, 0xff, 0xff, 0xff, 0xff)},
		{"piece block too long", append(msg(7, u32(0, 0)...)[:0], append(u32(9+32<<10), append([]byte{7}, make([]byte, 8+32<<10)...)...)...)},
		{"bad extension handshake", msg(20, append([]byte{0}, "d1:mi5ee"...)...)},
		{"bad ut_metadata", msg(20, append([]byte{1}, "i3e"...)...)},
		{"choke with a payload", msg(0, 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", seedNode.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			res := wire.ReservedFast.With(wire.ReservedExtended)
			if err := wire.WriteHandshake(nc, wire.Handshake{Reserved: res, InfoHash: info.Hash(), PeerID: [20]byte{'x'}}); err != nil {
				t.Fatal(err)
			}
			if _, err := wire.ReadHandshake(nc); err != nil {
				t.Fatal(err)
			}
			if _, err := nc.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(io.Discard, nc)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the seed did not close the connection")
			}
		})
	}
	t.Run("unknown info-hash", func(t *testing.T) {
		nc, err := net.Dial("tcp", seedNode.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		wire.WriteHandshake(nc, wire.Handshake{InfoHash: bt.InfoHash{9}})
		b, err := io.ReadAll(nc) // EOF, or a reset: the head was read, the peer id not
		var ne net.Error
		if len(b) != 0 || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("listener answered %d bytes, %v; want a close", len(b), err)
		}
	})
	leechNode := swarmtest.NewNode(t, swarm.Config{})
	leech := leechNode.Start(info)
	leech.AddPeer(seedNode.Addr)
	waitDone(t, leech, 30*time.Second)
}
