package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/cluster/discovery/netnstest"
	"github.com/delugefs/delugefs/internal/testwait"
)

// clusterHost is one delugefs process with a mount, in a host of its own.
type clusterHost struct {
	name string
	h    *netnstest.Host
	root string
	mnt  string
	api  string // as printed: [::]:PORT
	p    *netnstest.Proc
}

// startOn starts delugefs on host h (extra flags after the common ones)
// and waits until it has mounted.
func startOn(t *testing.T, nw *netnstest.Net, ch *clusterHost, extra ...string) {
	t.Helper()
	args := append([]string{"--id", "bigstore", "--root", ch.root, "--mount", ch.mnt, "--read-wait", "3s", "--log-level", "debug"}, extra...)
	ch.p = nw.Start(ch.h.Command(context.Background(), bin, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	line, err := ch.p.WaitLine(ctx, func(l string) bool { return strings.Contains(l, "api on ") })
	if err != nil {
		t.Fatalf("%s: no API address: %v", ch.name, err)
	}
	ch.api = line[strings.LastIndex(line, " ")+1:]
	if _, err := ch.p.WaitLine(ctx, func(l string) bool { return strings.Contains(l, "mounted at") }); err != nil {
		t.Fatalf("%s: not mounted: %v", ch.name, err)
	}
}

// lazyUnmount detaches a mount left by a killed process.
func lazyUnmount(dir string) {
	exec.Command("fusermount3", "-u", "-z", dir).Run()
	exec.Command("umount", "-l", dir).Run()
}

// eventually polls cond until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	var last error
	if !testwait.UntilEvery(d, 20*time.Millisecond, func() bool { last = cond(); return last == nil }) {
		t.Fatalf("after %v: %s: %v", d, what, last)
	}
}

func sameFile(path string, want []byte) error {
	got, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New(path + ": contents differ")
	}
	return nil
}

func listing(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names, nil
}

// TestClusterThreeHosts runs three delugefs processes, each with a mount,
// in three network namespaces joined by a bridge, found by real multicast
// mDNS (no --peer), and checks with ordinary file operations on the
// mounts: a file written on A is listed and read byte-exact on B and C; a
// mv on B and an edit on C of one file merge (both kept); a stream on B
// goes on when A is killed mid-read because C holds a copy; a read with
// no copy left fails with EIO instead of hanging; a restarted node
// catches up.
func TestClusterThreeHosts(t *testing.T) {
	nw := netnstest.New(t, 3)
	hosts := make([]*clusterHost, 3)
	for i, name := range []string{"A", "B", "C"} {
		dir := t.TempDir()
		hosts[i] = &clusterHost{name: name, h: nw.Hosts[i], root: filepath.Join(dir, "root"), mnt: filepath.Join(dir, "mnt")}
		if err := os.Mkdir(hosts[i].mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lazyUnmount(hosts[i].mnt) }) // before TempDir's removal
	}
	a, b, c := hosts[0], hosts[1], hosts[2]
	startOn(t, nw, a, "--create")
	key, err := exec.Command(bin, "key", "--root", a.root).Output()
	if err != nil {
		t.Fatalf("delugefs key: %v", err)
	}
	k := strings.TrimSpace(string(key))
	startOn(t, nw, b, "--key", k)
	startOn(t, nw, c, "--key", k)

	// --create of a volume id live nodes use is refused.
	out, err := c.h.Run(context.Background(), bin, "--create", "--id", "bigstore", "--root", filepath.Join(t.TempDir(), "r"))
	if err == nil || !strings.Contains(string(out), "in use") || !strings.Contains(string(out), "bigstore") {
		t.Fatalf("--create of a used id: %v\n%s", err, out)
	}

	// A file written on A is listed and read byte-exact on B and C.
	film := make([]byte, 24<<20+4321)
	rand.Read(film)
	if err := os.WriteFile(filepath.Join(a.mnt, "film.mkv"), film, 0o644); err != nil {
		t.Fatal(err)
	}
	// (The create is in the namespace before the close, so a peer may
	// list the file empty for a moment: the contents arrive with the
	// close's commit.)
	for _, h := range []*clusterHost{b, c} {
		eventually(t, 15*time.Second, "film.mkv read byte-exact on "+h.name, func() error {
			return sameFile(filepath.Join(h.mnt, "film.mkv"), film)
		})
	}

	// The xattrs tell the truth: B and C read the film whole, so A counts
	// three complete copies (from the peers' have-lists) and B's copy is
	// complete.
	eventually(t, 30*time.Second, "three copies of film.mkv seen from A", func() error {
		buf := make([]byte, 16)
		k, err := unix.Getxattr(filepath.Join(a.mnt, "film.mkv"), "user.delugefs.copies", buf)
		if err != nil {
			return err
		}
		if string(buf[:k]) != "3" {
			return fmt.Errorf("copies %q", buf[:k])
		}
		return nil
	})
	pbuf := make([]byte, 16)
	pn, err := unix.Getxattr(filepath.Join(b.mnt, "film.mkv"), "user.delugefs.progress", pbuf)
	if err != nil || string(pbuf[:pn]) != "1" {
		t.Fatalf("B's progress of film.mkv: %q, %v", pbuf[:max(pn, 0)], err)
	}

	// delugefs status on B, as JSON: its two peers alive, the file.
	_, port, _ := strings.Cut(b.api[strings.LastIndex(b.api, ":"):], ":")
	eventually(t, 15*time.Second, "status on B", func() error {
		out, err := b.h.Run(context.Background(), bin, "status", "--api", "127.0.0.1:"+port, "--root", b.root, "--json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var rep api.StatusReport
		if err := json.Unmarshal(out, &rep); err != nil {
			return err
		}
		if len(rep.Volumes) != 1 {
			return fmt.Errorf("volumes: %s", out)
		}
		vs := rep.Volumes[0]
		alive := 0
		for _, p := range vs.Peers {
			if p.Alive {
				alive++
			}
		}
		if alive != 2 || vs.Files != 1 || len(vs.Nodes) != 1 || vs.Nodes[0].Free == 0 {
			return fmt.Errorf("status: %d peers alive, %d files: %s", alive, vs.Files, out)
		}
		return nil
	})
	out, err = b.h.Run(context.Background(), bin, "status", "--api", "127.0.0.1:"+port, "--root", b.root)
	if err != nil || !strings.Contains(string(out), "film.mkv") || !strings.Contains(string(out), "PEER") || !strings.Contains(string(out), "alive") {
		t.Fatalf("status as text: %v\n%s", err, out)
	}

	// A mv on B and an edit on C of the same file: both kept, on every host.
	old := []byte("the first version\n")
	edited := []byte("the version C edited\n")
	if err := os.WriteFile(filepath.Join(a.mnt, "doc.txt"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*clusterHost{b, c} {
		eventually(t, 15*time.Second, "doc.txt on "+h.name, func() error { return sameFile(filepath.Join(h.mnt, "doc.txt"), old) })
	}
	// Cut C off so that the two changes are concurrent, then bring it back.
	if err := c.h.Cut(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(b.mnt, "doc.txt"), filepath.Join(b.mnt, "renamed.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.mnt, "doc.txt"), edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.h.Restore(); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		eventually(t, 30*time.Second, "the merge on "+h.name, func() error {
			if err := sameFile(filepath.Join(h.mnt, "renamed.txt"), old); err != nil {
				return err
			}
			return sameFile(filepath.Join(h.mnt, "doc.txt"), edited)
		})
	}
	eventually(t, 15*time.Second, "the same listing everywhere", func() error {
		la, err := listing(a.mnt)
		if err != nil {
			return err
		}
		for _, h := range []*clusterHost{b, c} {
			l, err := listing(h.mnt)
			if err != nil {
				return err
			}
			if !slices.Equal(l, la) {
				return errors.New(h.name + ": " + strings.Join(l, ",") + " vs A: " + strings.Join(la, ","))
			}
		}
		return nil
	})

	// C already holds film.mkv (it read it whole). B streams it again from
	// the start; A is killed mid-read; the stream goes on from C.
	big := make([]byte, 48<<20+17)
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(a.mnt, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "big.bin on C", func() error { return sameFile(filepath.Join(c.mnt, "big.bin"), big) })
	eventually(t, 15*time.Second, "big.bin listed whole on B", func() error {
		fi, err := os.Stat(filepath.Join(b.mnt, "big.bin"))
		if err == nil && fi.Size() != int64(len(big)) {
			return errors.New("not its final size yet")
		}
		return err
	})
	f, err := os.Open(filepath.Join(b.mnt, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(f, got[:4<<20]); err != nil {
		t.Fatalf("B's first 4 MiB: %v", err)
	}
	a.p.Kill()
	if _, err := io.ReadFull(f, got[4<<20:]); err != nil {
		t.Fatalf("B's stream after A died: %v", err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("B's stream differs from what A wrote")
	}
	lazyUnmount(a.mnt)

	// A file only C holds; C is killed; B's read fails with EIO, in
	// bounded time, and the mount still answers.
	lonely := make([]byte, 2<<20)
	rand.Read(lonely)
	if err := os.WriteFile(filepath.Join(c.mnt, "lonely.bin"), lonely, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "lonely.bin listed whole on B", func() error {
		fi, err := os.Stat(filepath.Join(b.mnt, "lonely.bin"))
		if err == nil && fi.Size() != int64(len(lonely)) {
			return errors.New("not its final size yet")
		}
		return err
	})
	c.p.Kill()
	lazyUnmount(c.mnt)
	start := time.Now()
	_, err = os.ReadFile(filepath.Join(b.mnt, "lonely.bin"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read with no copy left: %v, want EIO", err)
	}
	if d := time.Since(start); d > 40*time.Second {
		t.Errorf("EIO took %v", d)
	}
	if _, err := listing(b.mnt); err != nil {
		t.Fatalf("B's mount after the EIO: %v", err)
	}

	// A restarts and catches up with what changed while it was down.
	startOn(t, nw, a)
	eventually(t, 20*time.Second, "A catches up", func() error {
		_, err := os.Stat(filepath.Join(a.mnt, "lonely.bin"))
		return err
	})
	if err := sameFile(filepath.Join(a.mnt, "doc.txt"), edited); err != nil {
		t.Fatal(err)
	}
}

// TestNoMulticastInterface: on a host with only a loopback (a container,
// a machine offline) a node still starts and mounts, with mDNS off and a
// warning, instead of failing.
func TestNoMulticastInterface(t *testing.T) {
	ns := fmt.Sprintf("%s%d-lo", netnstest.Prefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	t.Cleanup(func() { lazyUnmount(mnt) })
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "--create", "--id", "v", "--root", filepath.Join(dir, "root"), "--mount", mnt)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() { // ends when the process closes stdout
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	for mounted := false; !mounted; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("delugefs exited before mounting:\n%s", stderr.String())
			}
			mounted = strings.Contains(l, "mounted at")
		case <-deadline:
			t.Fatalf("not mounted after 30s:\n%s", stderr.String())
		}
	}
	must(t, os.WriteFile(filepath.Join(mnt, "x"), []byte("works"), 0o644))
	if err := sameFile(filepath.Join(mnt, "x"), []byte("works")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "mDNS discovery is off") {
		t.Errorf("no warning about mDNS:\n%s", stderr.String())
	}
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
