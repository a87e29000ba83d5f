package client_test

// Interoperability with stock clients, both directions and by magnet link,
// on loopback. Every transfer is checked byte for byte.

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/client"
	"github.com/delugefs/delugefs/bt/swarm/swarmtest"
)

// interopSize is not a multiple of the piece length: the last piece is short.
const interopSize = 3<<20 + 12345

// interopData writes the data and its torrent (64 KiB pieces: many of them)
// into a new directory.
func interopData(t *testing.T, seed uint64) (string, []byte, *bt.MetaInfo) {
	t.Helper()
	path, data := writeData(t, t.TempDir(), "interop.bin", interopSize, seed)
	return path, data, createTorrent(t, path, 64<<10)
}

// anacrolixGet downloads through an anacrolix client t that it waits on;
// on a timeout it reports the state of both sides.
//
// anacrolix v1.61 sometimes loses the wake-up that would make it declare
// interest in a peer that has not unchoked it (about one run in 30 here):
// it then waits for an unchoke forever, and our seed, like libtorrent,
// unchokes only interested peers. (anacrolix seeds unchoke every peer
// while they have upload slots, so two anacrolix clients never meet it.)
// Tests tell it which pieces they want before it connects where they can;
// after a magnet link they cannot, so when nothing arrives for 2 s it is
// reconnected: the transfer itself is still all ours and theirs.
func anacrolixGet(t *testing.T, s *client.Seeder, cl *torrent.Client, tt *torrent.Torrent, dir string, data []byte) {
	t.Helper()
	fail := func(what string, d time.Duration) {
		t.Helper()
		ps, _ := s.Swarm().Peers(context.Background())
		var status strings.Builder
		cl.WriteStatus(&status)
		t.Fatalf("%s: not after %v\nour seed's peers: %+v\nanacrolix: %d of %d bytes\n%s",
			what, d, ps, tt.BytesCompleted(), tt.Length(), status.String())
	}
	select {
	case <-tt.GotInfo():
	case <-time.After(30 * time.Second):
		fail("anacrolix got the info", 30*time.Second)
	}
	tt.DownloadAll()
	const limit = 30 * time.Second
	deadline := time.After(limit)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last, since := int64(-1), time.Now()
	for done := false; !done; {
		select {
		case <-tt.Complete().On():
			done = true
		case <-deadline:
			fail("anacrolix download complete", limit)
		case now := <-tick.C:
			if b := tt.BytesCompleted(); b != last {
				last, since = b, now
			} else if now.Sub(since) >= 2*time.Second {
				// A new connection, made now that it wants every piece,
				// does not meet the lost update.
				t.Logf("anacrolix stalled at %d bytes for %v: reconnecting it", b, now.Sub(since))
				for _, pc := range tt.PeerConns() {
					pc.Close()
				}
				tt.AddPeers([]torrent.PeerInfo{{Addr: addrString(s.Addr()), Trusted: true}})
				since = now
			}
		}
	}
	checkFile(t, filepath.Join(dir, tt.Info().Name), data)
}

func TestOurSeedToAnacrolix(t *testing.T) {
	swarmtest.CheckLeaks(t)
	path, data, mi := interopData(t, 10)
	s := startSeeder(t, mi, path)
	dir := t.TempDir()
	cl := newAnacrolix(t, dir)
	tt, err := cl.AddTorrent(theirMetaInfo(t, mi))
	if err != nil {
		t.Fatal(err)
	}
	tt.DownloadAll() // before it meets the peer: see anacrolixGet
	tt.AddPeers([]torrent.PeerInfo{{Addr: addrString(s.Addr()), Trusted: true}})
	anacrolixGet(t, s, cl, tt, dir, data)
}

func TestOurSeedToAnacrolixMagnet(t *testing.T) {
	swarmtest.CheckLeaks(t)
	path, data, mi := interopData(t, 11)
	s := startSeeder(t, mi, path)
	dir := t.TempDir()
	cl := newAnacrolix(t, dir)
	// Their magnet parser takes our link, x.pe and all (BEP 9).
	tt, err := cl.AddMagnet(s.Magnet().String())
	if err != nil {
		t.Fatal(err)
	}
	if tt.InfoHash() != metainfo.Hash(mi.Info.Hash()) {
		t.Fatalf("anacrolix reads info-hash %v from our magnet, want %v", tt.InfoHash(), mi.Info.Hash())
	}
	anacrolixGet(t, s, cl, tt, dir, data)
	if got := tt.Metainfo().InfoBytes; string(got) != string(mi.Info.Bencode()) {
		t.Errorf("anacrolix fetched an info dictionary of %d bytes that differs from ours (%d)", len(got), len(mi.Info.Bencode()))
	}
}

func TestAnacrolixSeedToOurGet(t *testing.T) {
	swarmtest.CheckLeaks(t)
	_, data, mi := interopData(t, 12)
	cl := anacrolixSeed(t, mi, data)
	out := filepath.Join(t.TempDir(), "out.bin")
	if err := get(t, client.Source{MetaInfo: mi}, out, anacrolixAddr(cl)); err != nil {
		t.Fatal(err)
	}
	checkFile(t, out, data)
}

func TestAnacrolixSeedToOurGetMagnet(t *testing.T) {
	swarmtest.CheckLeaks(t)
	_, data, mi := interopData(t, 13)
	cl := anacrolixSeed(t, mi, data)
	src, err := client.ParseSource(client.MagnetOf(mi, []string{anacrolixAddr(cl)}).String())
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.bin")
	if err := get(t, src, out); err != nil {
		t.Fatal(err)
	}
	checkFile(t, out, data)
}

// aria2 cannot be given a peer address (no x.pe, no option): when it
// downloads, our seeder dials it, which BitTorrent allows either way.

func TestOurSeedToAria2(t *testing.T) {
	swarmtest.CheckLeaks(t)
	path, data, mi := interopData(t, 20)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startAria2(ctx, t, "--seed-time=0", "-d", dir, path+".torrent")
	if err := a.out.waitFor(a.exited, 20*time.Second, "listening on TCP port"); err != nil {
		t.Fatalf("aria2c: %v", err)
	}
	startSeeder(t, mi, path, a.addr)
	if err := a.wait(t, 50*time.Second); err != nil {
		t.Fatalf("aria2c: %v", err)
	}
	checkFile(t, filepath.Join(dir, mi.Info.Name), data)
}

func TestOurSeedToAria2Magnet(t *testing.T) {
	swarmtest.CheckLeaks(t)
	path, data, mi := interopData(t, 21)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startAria2(ctx, t, "--seed-time=0", "-d", dir, client.MagnetOf(mi, nil).String())
	if err := a.out.waitFor(a.exited, 20*time.Second, "listening on TCP port"); err != nil {
		t.Fatalf("aria2c: %v", err)
	}
	// aria2c fetches the info dictionary from us (BEP 9), then starts the
	// download proper as a new one, which our seeder dials again.
	startSeeder(t, mi, path, a.addr)
	if err := a.wait(t, 50*time.Second); err != nil {
		t.Fatalf("aria2c: %v", err)
	}
	checkFile(t, filepath.Join(dir, mi.Info.Name), data)
}

// aria2Seed runs aria2c seeding data under the torrent at tpath.
func aria2Seed(ctx context.Context, t *testing.T, mi *bt.MetaInfo, tpath string, data []byte) *aria2 {
	t.Helper()
	dir := t.TempDir()
	copyTo(t, filepath.Join(dir, mi.Info.Name), data)
	a := startAria2(ctx, t, "--check-integrity=true", "--seed-ratio=0.0", "-d", dir, tpath)
	if err := a.out.waitFor(a.exited, 30*time.Second, "Verification finished successfully", "listening on TCP port"); err != nil {
		t.Fatalf("aria2c seed: %v", err)
	}
	return a
}

func TestAria2SeedToOurGet(t *testing.T) {
	swarmtest.CheckLeaks(t)
	path, data, mi := interopData(t, 22)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := aria2Seed(ctx, t, mi, path+".torrent", data)
	out := filepath.Join(t.TempDir(), "out.bin")
	if err := get(t, client.Source{MetaInfo: mi}, out, a.addr); err != nil {
		t.Fatal(err)
	}
	checkFile(t, out, data)
}

func TestAria2SeedToOurGetMagnet(t *testing.T) {
	swarmtest.CheckLeaks(t)
	path, data, mi := interopData(t, 23)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := aria2Seed(ctx, t, mi, path+".torrent", data)
	src, err := client.ParseSource(client.MagnetOf(mi, []string{a.addr}).String())
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.bin")
	if err := get(t, src, out); err != nil {
		t.Fatal(err)
	}
	checkFile(t, out, data)
}

// addrString makes a host:port usable as anacrolix's PeerRemoteAddr.
type addrString string

func (a addrString) String() string { return string(a) }

// TestGetFromThreeSeeds downloads from anacrolix, aria2c and our seeder at
// once.
func TestGetFromThreeSeeds(t *testing.T) {
	swarmtest.CheckLeaks(t)
	path, data, mi := interopData(t, 24)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := aria2Seed(ctx, t, mi, path+".torrent", data)
	cl := anacrolixSeed(t, mi, data)
	s := startSeeder(t, mi, path)
	out := filepath.Join(t.TempDir(), "out.bin")
	if err := get(t, client.Source{MetaInfo: mi}, out, a.addr, anacrolixAddr(cl), s.Addr()); err != nil {
		t.Fatal(err)
	}
	checkFile(t, out, data)
}

// TestOurSeedToThreeLeeches serves anacrolix, aria2c and our client at
// once: the choking algorithm lets each of them finish.
func TestOurSeedToThreeLeeches(t *testing.T) {
	swarmtest.CheckLeaks(t)
	path, data, mi := interopData(t, 25)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adir := t.TempDir()
	a := startAria2(ctx, t, "--seed-time=0", "-d", adir, path+".torrent")
	if err := a.out.waitFor(a.exited, 20*time.Second, "listening on TCP port"); err != nil {
		t.Fatalf("aria2c: %v", err)
	}
	s := startSeeder(t, mi, path, a.addr)
	cdir := t.TempDir()
	cl := newAnacrolix(t, cdir)
	tt, err := cl.AddTorrent(theirMetaInfo(t, mi))
	if err != nil {
		t.Fatal(err)
	}
	tt.DownloadAll() // before it meets the peer: see anacrolixGet
	tt.AddPeers([]torrent.PeerInfo{{Addr: addrString(s.Addr())}})
	out := filepath.Join(t.TempDir(), "out.bin")
	if err := get(t, client.Source{MetaInfo: mi}, out, s.Addr()); err != nil {
		t.Fatal(err)
	}
	checkFile(t, out, data)
	waitFlag(t, "anacrolix download complete", tt.Complete().On(), 50*time.Second)
	checkFile(t, filepath.Join(cdir, mi.Info.Name), data)
	if err := a.wait(t, 50*time.Second); err != nil {
		t.Fatalf("aria2c: %v", err)
	}
	checkFile(t, filepath.Join(adir, mi.Info.Name), data)
}
