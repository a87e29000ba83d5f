//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bench/passthrough"
	"github.com/delugefs/delugefs/fs/mount"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// delugefsBin builds the delugefs binary once per run.
func delugefsBin(tb testing.TB) string {
	if p := os.Getenv("DELUGEFS_BENCH_BIN"); p != "" {
		return p // a binary built elsewhere (another commit, to compare)
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "delugefs-bench")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "delugefs")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/delugefs").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build delugefs: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// node is a delugefs process with its volume mounted.
type node struct {
	cmd    *exec.Cmd
	root   string
	mnt    string
	api    string // its API address, from its output
	stderr bytes.Buffer
}

// startNode creates a volume in a fresh directory and mounts it.
func startNode(tb testing.TB) *node {
	return startNodeArgs(tb, "--create")
}

// startNodeArgs starts a node of volume "bench" in a fresh directory with
// its mount, on loopback only (no mDNS), with extra flags.
func startNodeArgs(tb testing.TB, extra ...string) *node {
	tb.Helper()
	dir := tb.TempDir()
	n := &node{root: filepath.Join(dir, "root"), mnt: filepath.Join(dir, "mnt")}
	if err := os.Mkdir(n.mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	args := append([]string{"--mdns=false", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
		"--id", "bench", "--root", n.root, "--mount", n.mnt, "--log-level", "warn"}, extra...)
	n.cmd = exec.Command(delugefsBin(tb), args...)
	n.cmd.Stderr = &n.stderr
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	mounted := make(chan bool, 1)
	go func() { // ends when the process closes stdout
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if a, found := strings.CutPrefix(sc.Text(), "delugefs: api on "); found {
				n.api = a
			}
			if !ok && strings.Contains(sc.Text(), "mounted at") {
				ok = true
				mounted <- true
			}
		}
		if !ok {
			mounted <- false
		}
	}()
	select {
	case ok := <-mounted:
		if !ok {
			tb.Fatalf("delugefs exited before mounting:\n%s", n.stderr.String())
		}
	case <-time.After(60 * time.Second):
		tb.Fatalf("delugefs did not mount within 60s:\n%s", n.stderr.String())
	}
	tb.Cleanup(func() {
		n.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { n.cmd.Wait(); close(done) }() // ends when the process exits
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			n.cmd.Process.Kill()
			<-done
		}
	})
	return n
}

// rssMiB returns the resident set (now and peak) of the node's process.
func (n *node) rssMiB(tb testing.TB) (cur, peak float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			cur = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return cur, peak
}

// passMount mounts the passthrough reference over a fresh directory; plus
// selects readdirplus.
func passMount(tb testing.TB, plus bool) (src, mnt string) {
	tb.Helper()
	src, mnt = tb.TempDir(), tb.TempDir()
	// The same kernel read-ahead as DelugeFS's mount (fs.MountConfig).
	m, err := mount.Mount(mnt, passthrough.New(src, plus), mount.Options{Name: "passthrough", ReaddirPlus: plus, ReadAheadKB: 1024})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Unmount() })
	return src, mnt
}
