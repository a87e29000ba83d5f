package client_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/client"
	"github.com/delugefs/delugefs/bt/swarm/swarmtest"
	"github.com/delugefs/delugefs/piece"
)

// writeData writes size pseudo-random bytes made from seed to dir/name.
func writeData(t testing.TB, dir, name string, size int, seed uint64) (string, []byte) {
	t.Helper()
	data := swarmtest.RandomData(size, seed)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// createTorrent makes the torrent of path and writes it beside it.
func createTorrent(t testing.TB, path string, pieceLength int64) *bt.MetaInfo {
	t.Helper()
	mi, err := client.Create(context.Background(), path, client.CreateOptions{PieceLength: pieceLength})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".torrent", mi.Bencode(), 0o644); err != nil {
		t.Fatal(err)
	}
	return mi
}

// startSeeder runs our seeder of path until the test ends.
func startSeeder(t testing.TB, mi *bt.MetaInfo, path string, peers ...string) *client.Seeder {
	t.Helper()
	s, err := client.NewSeeder(context.Background(), client.SeedConfig{MetaInfo: mi, Data: path, Peers: peers, Logger: swarmtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }() // ends with cancel, in the cleanup
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("seeder: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// checkFile fails the test unless path holds want.
func checkFile(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the %d bytes seeded", path, len(got), len(want))
	}
}

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		size int
		pl   int64
	}{
		{1, 0},
		{16 << 10, 16 << 10},
		{16<<10 + 1, 16 << 10},
		{3<<20 + 7, 0},
		{1 << 20, 1 << 20},
	} {
		path, data := writeData(t, dir, "file.bin", tc.size, uint64(tc.size))
		mi, err := client.Create(context.Background(), path, client.CreateOptions{PieceLength: tc.pl, Announce: "http://127.0.0.1:1/announce"})
		if err != nil {
			t.Fatal(err)
		}
		want := tc.pl
		if want == 0 {
			want = piece.Length(int64(tc.size))
		}
		hs := piece.NewHasher(want)
		hs.Write(data)
		ref := hs.Info()
		info := mi.Info
		if info.Name != "file.bin" || info.Length != int64(tc.size) || info.PieceLength != want || !bytes.Equal(info.Pieces, ref.Pieces) {
			t.Errorf("size %d: got name %q length %d piece length %d, want file.bin %d %d and the Hasher's pieces", tc.size, info.Name, info.Length, info.PieceLength, tc.size, want)
		}
		back, err := bt.ParseMetaInfo(mi.Bencode())
		if err != nil {
			t.Fatal(err)
		}
		if back.Info.Hash() != info.Hash() || back.Announce != mi.Announce || back.CreatedBy != client.CreatedBy {
			t.Errorf("size %d: the torrent does not round-trip: %+v", tc.size, back)
		}
		if err := client.Verify(context.Background(), info, path); err != nil {
			t.Errorf("size %d: verify: %v", tc.size, err)
		}
	}
}

func TestCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeData(t, dir, "f", 100, 1)
	empty, _ := writeData(t, dir, "empty", 0, 1)
	for _, tc := range []struct {
		name string
		path string
		pl   int64
	}{
		{"empty file", empty, 0},
		{"directory", dir, 0},
		{"missing", filepath.Join(dir, "nope"), 0},
		{"piece length not a power of two", path, 3 << 14},
		{"piece length too small", path, 8 << 10},
	} {
		if _, err := client.Create(context.Background(), tc.path, client.CreateOptions{PieceLength: tc.pl}); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestVerifyFindsDamage(t *testing.T) {
	dir := t.TempDir()
	path, data := writeData(t, dir, "f", 1<<20, 2)
	mi := createTorrent(t, path, 64<<10)
	data[700000] ^= 1
	os.WriteFile(path, data, 0o644)
	err := client.Verify(context.Background(), mi.Info, path)
	if !errors.Is(err, client.ErrData) || !strings.Contains(err.Error(), "piece 10 first") {
		t.Errorf("verify of a damaged file: %v, want ErrData naming piece 10", err)
	}
	os.WriteFile(path, data[:1000], 0o644)
	if err := client.Verify(context.Background(), mi.Info, path); !errors.Is(err, client.ErrData) {
		t.Errorf("verify of a short file: %v, want ErrData", err)
	}
	if _, err := client.NewSeeder(context.Background(), client.SeedConfig{MetaInfo: mi, Data: path}); !errors.Is(err, client.ErrData) {
		t.Errorf("seeding a short file: %v, want ErrData", err)
	}
}

// get downloads src into dir/out with our client.
func get(t testing.TB, src client.Source, out string, peers ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return client.Get(ctx, client.GetConfig{Source: src, Out: out, Peers: peers, Timeout: 20 * time.Second, Logger: swarmtest.Logger(t)})
}

func TestSeedGet(t *testing.T) {
	swarmtest.CheckLeaks(t)
	dir := t.TempDir()
	path, data := writeData(t, dir, "movie.mkv", 5<<20+333, 3)
	mi := createTorrent(t, path, 0)
	s := startSeeder(t, mi, path)
	src, err := client.ParseSource(path + ".torrent")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.mkv")
	var reports []client.Progress
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = client.Get(ctx, client.GetConfig{Source: src, Out: out, Peers: []string{s.Addr()}, Logger: swarmtest.Logger(t),
		Progress: func(p client.Progress) { reports = append(reports, p) }})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, out, data)
	last := reports[len(reports)-1]
	if !last.Done || last.Bytes != int64(len(data)) || last.Name != "movie.mkv" {
		t.Errorf("last progress %+v, want done with all bytes", last)
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	if len(ents) != 1 {
		t.Errorf("left beside the output: %v", ents)
	}
	fi, _ := os.Stat(out)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("output mode %v, want 0644", fi.Mode())
	}
}

func TestGetMagnet(t *testing.T) {
	swarmtest.CheckLeaks(t)
	dir := t.TempDir()
	path, data := writeData(t, dir, "m.bin", 2<<20+1, 4)
	mi := createTorrent(t, path, 0)
	s := startSeeder(t, mi, path)
	src, err := client.ParseSource(s.Magnet().String())
	if err != nil {
		t.Fatal(err)
	}
	if src.MetaInfo != nil || len(src.Magnet.Peers) != 1 {
		t.Fatalf("magnet source %+v", src)
	}
	out := filepath.Join(t.TempDir(), "m.bin")
	if err := get(t, src, out); err != nil {
		t.Fatal(err)
	}
	checkFile(t, out, data)
}

func TestGetNoPeer(t *testing.T) {
	swarmtest.CheckLeaks(t)
	dir := t.TempDir()
	path, _ := writeData(t, dir, "x", 100<<10, 5)
	mi := createTorrent(t, path, 0)
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	out := filepath.Join(t.TempDir(), "x")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err = client.Get(ctx, client.GetConfig{Source: client.Source{MetaInfo: mi}, Out: out, Peers: []string{dead}, Timeout: time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, client.ErrNoData) {
		t.Fatalf("get from a dead peer: %v, want ErrNoData", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %v, want about 1 s", d)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output exists after a failed get: %v", err)
	}
	t.Log(err)
}

// TestGetResumes stops a download half-way and runs it again: the second
// run keeps the pieces of the first.
func TestGetResumes(t *testing.T) {
	swarmtest.CheckLeaks(t)
	dir := t.TempDir()
	path, data := writeData(t, dir, "r.bin", 32<<20, 6)
	mi := createTorrent(t, path, 0)
	s := startSeeder(t, mi, path)
	out := filepath.Join(t.TempDir(), "r.bin")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var first client.Progress
	err := client.Get(ctx, client.GetConfig{Source: client.Source{MetaInfo: mi}, Out: out, Peers: []string{s.Addr()},
		Logger: swarmtest.Logger(t), ProgressEvery: time.Millisecond,
		Progress: func(p client.Progress) {
			first = p
			if p.Bytes > 0 {
				cancel() // stop as soon as some pieces are in
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first get: %v, want context.Canceled", err)
	}
	if first.Bytes == 0 || first.Done {
		t.Fatalf("the first run got %d bytes, done %v: nothing to resume", first.Bytes, first.Done)
	}
	var reports []client.Progress
	ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel2()
	err = client.Get(ctx2, client.GetConfig{Source: client.Source{MetaInfo: mi}, Out: out, Peers: []string{s.Addr()},
		Logger: swarmtest.Logger(t), ProgressEvery: time.Millisecond,
		Progress: func(p client.Progress) { reports = append(reports, p) }})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, out, data)
	if reports[0].Bytes < first.Bytes {
		t.Errorf("second run started from %d bytes, the first had verified %d", reports[0].Bytes, first.Bytes)
	}
}
