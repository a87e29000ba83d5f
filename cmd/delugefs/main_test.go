package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/delugefs/delugefs/node"
)

// loopback keeps a node started by a test on this machine: no mDNS, ports
// on 127.0.0.1 only.
var loopback = []string{"--mdns=false", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"}

func withLoopback(args []string) []string { return append(append([]string(nil), loopback...), args...) }

// bin is the delugefs binary built once for the tests that run it as a
// user would.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "delugefs-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "delugefs")
	out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build delugefs: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, f := range []string{"--create", "--id", "--root", "--mount", "--allow-other", "--log-level"} {
		if !strings.Contains(errb.String(), strings.TrimPrefix(f, "-")) {
			t.Errorf("--help does not mention %s:\n%s", f, errb.String())
		}
	}
}

// TestWrongUse checks that each wrong use gets one clear line and a
// non-zero exit.
func TestWrongUse(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	n, err := node.Open(vol, "bigstore", node.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	full := filepath.Join(dir, "full")
	os.MkdirAll(full, 0o755)
	os.WriteFile(filepath.Join(full, "junk"), []byte("x"), 0o644)
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no id", []string{"--root", vol}, "--id is required"},
		{"no root", []string{"--id", "bigstore"}, "--root is required"},
		{"stray argument", []string{"--id", "bigstore", "--root", vol, "extra"}, "unexpected argument"},
		{"create on non-empty", []string{"--create", "--id", "bigstore", "--root", full}, "not empty"},
		{"wrong id", []string{"--id", "other", "--root", vol}, `holds volume "bigstore", not "other"`},
		{"not a volume", []string{"--id", "bigstore", "--root", full}, "use --create"},
		{"bad id", []string{"--create", "--id", "a/b", "--root", filepath.Join(dir, "n")}, "invalid volume id"},
		{"mount point missing", []string{"--id", "bigstore", "--root", vol, "--mount", filepath.Join(dir, "nope")}, "does not exist"},
		{"mount point not a dir", []string{"--id", "bigstore", "--root", vol, "--mount", notDir}, "not a directory"},
		{"bad log level", []string{"--id", "bigstore", "--root", vol, "--log-level", "loud"}, "--log-level"},
	}
	for _, tt := range tests {
		cmd := exec.Command(bin, withLoopback(tt.args)...)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() == 0 {
			t.Errorf("%s: err %v, want a non-zero exit\n%s", tt.name, err, out)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], tt.want) || !strings.HasPrefix(lines[0], "delugefs: ") {
			t.Errorf("%s: output %q, want one line containing %q", tt.name, out, tt.want)
		}
	}
}

// daemon is a delugefs process started by a test.
type daemon struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at exit
	stderr bytes.Buffer
	done   chan error
}

func start(t *testing.T, args ...string) *daemon {
	t.Helper()
	return startCmd(t, exec.Command(bin, withLoopback(args)...))
}

// startCmd starts cmd (a delugefs command line) as a daemon.
func startCmd(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	d := &daemon{cmd: cmd, done: make(chan error, 1), lines: make(chan string, 1000)}
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stderr = &d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // ends when the process closes stdout (exits)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
		close(d.lines)
		d.done <- d.cmd.Wait()
	}()
	t.Cleanup(func() { d.cmd.Process.Kill() })
	return d
}

// waitLine waits for a line of stdout containing s.
func (d *daemon) waitLine(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-d.lines:
			if !ok {
				t.Fatalf("delugefs exited before printing %q; stderr:\n%s", s, d.stderr.String())
			}
			if strings.Contains(line, s) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q from delugefs within 60s; stderr:\n%s", s, d.stderr.String())
		}
	}
}

func (d *daemon) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-d.done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("delugefs did not exit within 60s; stderr:\n%s", d.stderr.String())
		return nil
	}
}

func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// TestRunMountWriteSignal is the user's first session: create, mount, write,
// SIGTERM (clean unmount, exit 0), start again, read back.
func TestRunMountWriteSignal(t *testing.T) {
	dir := t.TempDir()
	root, mnt := filepath.Join(dir, "root"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	d := start(t, "--create", "--id", "bigstore", "--root", root, "--mount", mnt)
	d.waitLine(t, "mounted at")
	data := make([]byte, 3<<20+123)
	rand.Read(data)
	if err := os.MkdirAll(filepath.Join(mnt, "films"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "films", "a.mkv"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A second process on the same mount point is refused: busy.
	out, err := exec.Command(bin, withLoopback([]string{"--id", "bigstore", "--root", filepath.Join(dir, "other"), "--mount", mnt})...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "busy") && !strings.Contains(string(out), "not a DelugeFS volume") {
		t.Errorf("second mount on a live mount point: %v %s", err, out)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, d.stderr.String())
	}
	if isMounted(t, mnt) {
		t.Fatal("still mounted after SIGTERM")
	}
	d2 := start(t, "--id", "bigstore", "--root", root, "--mount", mnt)
	d2.waitLine(t, "mounted at")
	got, err := os.ReadFile(filepath.Join(mnt, "films", "a.mkv"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after restart: %d bytes, %v; want the %d written", len(got), err, len(data))
	}
	d2.cmd.Process.Signal(syscall.SIGINT)
	if err := d2.wait(t); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
}

// TestKill9Recovers kills the process in the middle of writes: the next
// start recovers the stale mount, cleans tmp/, and every file closed before
// the kill reads back exactly, with the renames, removes, symlink and
// modes made just before it (the whole run takes less than meta's first
// commit would wait, so the restart replays them from operations records).
func TestKill9Recovers(t *testing.T) {
	dir := t.TempDir()
	root, mnt := filepath.Join(dir, "root"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	d := start(t, "--create", "--id", "v", "--root", root, "--mount", mnt)
	d.waitLine(t, "mounted at")
	closed := map[string][]byte{}
	for i := range 20 {
		b := make([]byte, 1000*i+1)
		rand.Read(b)
		name := fmt.Sprintf("f%02d", i)
		if err := os.WriteFile(filepath.Join(mnt, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		closed[name] = b
	}
	// Namespace changes just before the kill (their operations records
	// are likely still live in the journal: the replay applies them).
	must(t, os.Mkdir(filepath.Join(mnt, "d"), 0o750))
	must(t, os.Rename(filepath.Join(mnt, "f01"), filepath.Join(mnt, "d", "moved")))
	closed["d/moved"] = closed["f01"]
	delete(closed, "f01")
	must(t, os.Remove(filepath.Join(mnt, "f02")))
	delete(closed, "f02")
	must(t, os.Symlink("moved", filepath.Join(mnt, "d", "link")))
	must(t, os.Chmod(filepath.Join(mnt, "f03"), 0o600))
	// A file open for writing when the process dies.
	f, err := os.Create(filepath.Join(mnt, "half"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 1<<20))
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.wait(t)
	f.Close() // fails: the file system is gone; that is the point

	d2 := start(t, "--id", "v", "--root", root, "--mount", mnt)
	d2.waitLine(t, "mounted at")
	for name, want := range closed {
		got, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after kill -9: %d bytes, %v; want %d", name, len(got), err, len(want))
		}
	}
	for _, gone := range []string{"f01", "f02"} {
		if _, err := os.Lstat(filepath.Join(mnt, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after kill -9: %v, want it gone", gone, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(mnt, "d", "link")); err != nil || target != "moved" {
		t.Errorf("d/link after kill -9: %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "f03")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("f03 after kill -9: %v, %v; want mode 0600", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "d")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("d after kill -9: %v, %v; want mode 0750", fi, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ not cleaned: %d entries", len(ents))
	}
	d2.cmd.Process.Signal(syscall.SIGTERM)
	if err := d2.wait(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
