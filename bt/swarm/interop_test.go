package swarm_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/bt/swarm/swarmtest"
)

// TestAria2Downloads checks that a stock client receives data from our
// seed under our choking: aria2c downloads a torrent with every discovery
// off, listening on loopback, and our seed dials it.
func TestAria2Downloads(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(6<<20+4321, 13)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seed := seedNode.Start(info)
	dir := t.TempDir()
	torrent := filepath.Join(dir, "blob.torrent")
	if err := os.WriteFile(torrent, (&bt.MetaInfo{Info: info}).Bencode(), 0o644); err != nil {
		t.Fatal(err)
	}
	runAria2(t, seed, nil, "--dir="+filepath.Join(dir, "out"), "--seed-time=0", torrent)
	checkFile(t, filepath.Join(dir, "out", info.Name), data)
}

// TestAria2Magnet: aria2c given only a magnet link fetches the info from
// our seed with ut_metadata, then the data.
func TestAria2Magnet(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(3<<20+99, 14)
	seedNode := swarmtest.NewNode(t, swarm.Config{})
	info := seedNode.Seed(data)
	seed := seedNode.Start(info)
	dir := t.TempDir()
	magnet := bt.Magnet{InfoHash: info.Hash()}.String()
	runAria2(t, seed, nil, "--dir="+dir, "--seed-time=0", "--bt-save-metadata=false", magnet)
	checkFile(t, filepath.Join(dir, info.Name), data)
}

// TestFromAria2Seed: our leech downloads from aria2c seeding the file.
func TestFromAria2Seed(t *testing.T) {
	swarmtest.CheckLeaks(t)
	data := swarmtest.RandomData(5<<20+17, 15)
	other := swarmtest.NewNode(t, swarm.Config{})
	info := other.Seed(data)
	dir := t.TempDir()
	torrent := filepath.Join(dir, "blob.torrent")
	if err := os.WriteFile(torrent, (&bt.MetaInfo{Info: info}).Bencode(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, info.Name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	leechNode := swarmtest.NewNode(t, swarm.Config{})
	leech := leechNode.Start(info)
	runAria2(t, leech, leech.Done(), "--dir="+dir, "--check-integrity=true", "--seed-ratio=0.0", "--seed-time=60", torrent)
	if got := readAll(t, leech); !bytes.Equal(got, data) {
		t.Fatal("leech's blob differs")
	}
}

// runAria2 runs aria2c with every discovery off, listening on loopback,
// and has s dial it until connected. It returns when aria2c exits (exit
// status 0 required) or, if until is not nil, when until is closed (aria2c
// is then killed).
func runAria2(t *testing.T, s *swarm.Swarm, until <-chan struct{}, args ...string) {
	t.Helper()
	aria, err := exec.LookPath("aria2c")
	if err != nil {
		t.Fatal("aria2c is missing: run scripts/deps.sh --test (apt package aria2)")
	}
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, aria, append([]string{
		"--listen-port=" + strconv.Itoa(port),
		"--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
		"--enable-peer-exchange=false", "--file-allocation=none",
		"--disable-ipv6=true", "--summary-interval=0", "--console-log-level=warn",
		"--bt-max-peers=5", "--no-conf=true",
	}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel()
		<-exited
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err
			if err != nil {
				t.Fatalf("aria2c: %v\n%s", err, out.String())
			}
			return
		case <-until:
			return
		case <-ctx.Done():
			t.Fatalf("aria2c did not finish\n%s", out.String())
		case <-tick.C:
			// Dial until aria2c listens and we are connected.
			if ps, _ := s.Peers(ctx); len(ps) == 0 {
				s.AddPeer(addr)
			}
		}
	}
}

func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the data", path)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
