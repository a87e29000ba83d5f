package client_test

// The delugefs bt commands as a user runs them: the real binary, in child
// processes, on loopback.

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/client"
)

// buildDelugefs builds the delugefs binary into a temporary directory.
func buildDelugefs(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "delugefs")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/delugefs/delugefs/cmd/delugefs").CombinedOutput()
	if err != nil {
		t.Fatalf("build delugefs: %v\n%s", err, out)
	}
	return bin
}

// runBin runs the binary to its end and returns its exit code and output.
func runBin(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }() // ends when the child exits
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("delugefs %v still running after 60 s", args)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// field returns the value printed after "name:" on a line of out.
func field(out, name string) string {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestCommandLine(t *testing.T) {
	bin := buildDelugefs(t)
	dir := t.TempDir()
	path, data := writeData(t, dir, "film.mkv", 2<<20+99, 30)
	tpath := filepath.Join(dir, "film.torrent")

	code, out, errOut := runBin(t, bin, "bt", "create", path, "-o", tpath, "--piece-length", "64KiB")
	if code != 0 {
		t.Fatalf("bt create: exit %d: %s", code, errOut)
	}
	mi, err := client.ReadTorrent(tpath)
	if err != nil {
		t.Fatal(err)
	}
	if mi.Info.PieceLength != 64<<10 || mi.Info.Name != "film.mkv" {
		t.Errorf("bt create made piece length %d name %q", mi.Info.PieceLength, mi.Info.Name)
	}
	if got := field(out, "info-hash"); got != mi.Info.Hash().String() {
		t.Errorf("bt create printed info-hash %q, the torrent has %v", got, mi.Info.Hash())
	}
	if m, err := bt.ParseMagnet(field(out, "magnet")); err != nil || m.InfoHash != mi.Info.Hash() {
		t.Errorf("bt create printed magnet %q: %v", field(out, "magnet"), err)
	}

	// seed, in the background until SIGTERM.
	seed := exec.Command(bin, "bt", "seed", tpath, "--data", path, "--listen", "127.0.0.1:0")
	var seedErr bytes.Buffer
	seed.Stderr = &seedErr
	pipe, err := seed.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	// More lines than the seed ever prints, so the reader never blocks.
	lines := make(chan string, 1024)
	go func() { // reads the seed's stdout until it exits
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- seed.Wait()
	}()
	t.Cleanup(func() {
		seed.Process.Kill()
	})
	var seedOut strings.Builder
	deadline := time.After(30 * time.Second)
	for !strings.Contains(seedOut.String(), "magnet:") {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("bt seed exited: %s%s", seedOut.String(), seedErr.String())
			}
			seedOut.WriteString(l + "\n")
		case <-deadline:
			t.Fatalf("bt seed printed no magnet link in 30 s: %s", seedOut.String())
		}
	}
	addr := field(seedOut.String(), "listening")
	magnet, err := bt.ParseMagnet(field(seedOut.String(), "magnet"))
	if err != nil || len(magnet.Peers) != 1 || magnet.Peers[0] != addr || magnet.InfoHash != mi.Info.Hash() {
		t.Fatalf("bt seed printed magnet %+v (%v), listening on %q", magnet, err, addr)
	}

	t.Run("get torrent", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "a.mkv")
		code, stdout, stderr := runBin(t, bin, "bt", "get", tpath, "--peer", addr, "-o", out)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		checkFile(t, out, data)
		if !strings.Contains(stderr, "complete, every piece verified") || !strings.Contains(stdout, "every piece verified") {
			t.Errorf("no final progress line on stderr / summary on stdout:\n%s\n%s", stderr, stdout)
		}
	})
	t.Run("get magnet", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "b.mkv")
		if code, _, stderr := runBin(t, bin, "bt", "get", magnet.String(), "-o", out); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		checkFile(t, out, data)
	})
	t.Run("get from nobody", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := l.Addr().String()
		l.Close()
		out := filepath.Join(t.TempDir(), "c.mkv")
		code, _, stderr := runBin(t, bin, "bt", "get", tpath, "--peer", dead, "-o", out, "--timeout", "1s")
		if code != 1 || !strings.Contains(stderr, "no peer has the data") || !strings.Contains(stderr, "connection refused") {
			t.Errorf("exit %d, stderr %q; want 1 and a clear message", code, stderr)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("output after a failed get: %v", err)
		}
	})
	t.Run("wrong use", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad")
		os.WriteFile(bad, data[:1000], 0o644)
		for _, tc := range []struct {
			args []string
			code int
			says string
		}{
			{[]string{"bt"}, 2, "Usage"},
			{[]string{"bt", "frob"}, 2, "unknown command"},
			{[]string{"bt", "create"}, 2, "missing FILE"},
			{[]string{"bt", "create", path, "--piece-length", "lots"}, 2, "--piece-length"},
			{[]string{"bt", "seed", tpath}, 2, "--data is required"},
			{[]string{"bt", "get", tpath, "--peer", addr}, 2, "-o OUT is required"},
			{[]string{"bt", "get", tpath, "x", "-o", bad}, 2, "unexpected argument"},
			{[]string{"bt", "seed", tpath, "--data", bad, "--listen", "127.0.0.1:0"}, 1, "does not match"},
			{[]string{"bt", "get", "magnet:?xt=urn:btih:zz", "-o", bad}, 1, "invalid magnet"},
			{[]string{"bt", "get", filepath.Join(dir, "nope.torrent"), "-o", bad}, 1, "no such file"},
		} {
			code, _, stderr := runBin(t, bin, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.says) {
				t.Errorf("delugefs %s: exit %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.says)
			}
		}
	})

	seed.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("bt seed after SIGTERM: %v: %s", err, seedErr.String())
		}
	case <-time.After(10 * time.Second):
		t.Error("bt seed still running 10 s after SIGTERM")
	}
}
