//go:build linux

package fs_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/fs/fstest"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/piece"
)

// TestMain doubles as the child process of TestStaleMount.
func TestMain(m *testing.M) {
	if root := os.Getenv("DELUGEFS_TEST_CHILD_ROOT"); root != "" {
		childMount(root, os.Getenv("DELUGEFS_TEST_CHILD_DIR"))
		return
	}
	os.Exit(m.Run())
}

// childMount mounts a node, says "ready" and waits to be killed.
func childMount(root, dir string) {
	n, err := fstest.Open(root, dir, fstest.Config{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	_ = n
	fmt.Println("ready")
	select {}
}

// consistent checks that every manifest's blob is complete in the store.
func consistent(t *testing.T, n *fstest.Node) {
	t.Helper()
	n.Repo.Snapshot().Walk(func(p string, e *meta.Entry) bool {
		if e.Kind == meta.KindFile && e.Size > 0 && !n.Store.Has(e.Hash) {
			t.Fatalf("manifest of %s names blob %s, not in the store", p, e.Hash)
		}
		return true
	})
}

func TestSparseBeyond4GiB(t *testing.T) {
	n := start(t)
	p := filepath.Join(n.Dir, "sparse")
	const off = 4<<30 + 12345
	tail := bytes.Repeat([]byte("tail of a big sparse file "), 40000) // ~1 MB
	f, err := os.Create(p)
	must(t, err)
	_, err = f.WriteAt(tail, off)
	must(t, err)
	must(t, f.Close())
	size := int64(off + len(tail))
	fi, err := os.Stat(p)
	must(t, err)
	if fi.Size() != size {
		t.Fatalf("size %d, want %d", fi.Size(), size)
	}
	e, ok := n.Repo.Snapshot().Get("sparse")
	if !ok || e.Size != size || e.Info == nil || e.Info.Length != size || e.Info.PieceLength != piece.Length(size) {
		t.Fatalf("manifest: %+v", e)
	}
	f, err = os.Open(p)
	must(t, err)
	defer f.Close()
	got := make([]byte, len(tail)+100)
	k, err := f.ReadAt(got, off-100)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if k != len(got) || !bytes.Equal(got[:100], make([]byte, 100)) || !bytes.Equal(got[100:], tail) {
		t.Fatalf("read back %d bytes around 4 GiB: wrong contents", k)
	}
	// A read in the middle of the hole.
	hole := make([]byte, 4096)
	if _, err := f.ReadAt(hole, 3<<30); err != nil || !bytes.Equal(hole, make([]byte, 4096)) {
		t.Fatalf("hole: %v", err)
	}
}

// smallDisk mounts a tmpfs of size bytes at a new directory.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	must(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size))
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount tmpfs: %v", err)
		}
	})
	return dir
}

func TestDiskFull(t *testing.T) {
	root := smallDisk(t, "4m")
	// meta's commit journal is 8 MiB by default: more than this disk.
	n := fstest.StartAt(t, root, t.TempDir(), fstest.Config{Meta: meta.Options{JournalSize: 256 << 10}})
	p := filepath.Join(n.Dir, "f")
	old := bytes.Repeat([]byte("old version "), 20000) // 240 KB
	must(t, os.WriteFile(p, old, 0o644))
	// Grow another file until the disk is full.
	big := bytes.Repeat([]byte("x"), 1<<20)
	q := filepath.Join(n.Dir, "big")
	f, err := os.Create(q)
	must(t, err)
	var werr error
	for i := 0; i < 10 && werr == nil; i++ {
		_, werr = f.Write(big)
	}
	wantErrno(t, "write on a full disk", werr, syscall.ENOSPC)
	wantErrno(t, "close after ENOSPC", f.Close(), syscall.ENOSPC)
	if fi, err := os.Stat(q); err != nil || fi.Size() != 0 {
		t.Fatalf("big after the failed write: %v %v (want the committed empty file)", fi, err)
	}
	// Overwriting f with more than fits fails the same way; the old version stays.
	f, err = os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	must(t, err)
	werr = nil
	for i := 0; i < 10 && werr == nil; i++ {
		_, werr = f.Write(big)
	}
	wantErrno(t, "overwrite on a full disk", werr, syscall.ENOSPC)
	wantErrno(t, "close", f.Close(), syscall.ENOSPC)
	if got := readFile(t, p); !bytes.Equal(got, old) {
		t.Fatalf("old version: %d bytes, want %d", len(got), len(old))
	}
	consistent(t, n)
	entries, err := os.ReadDir(filepath.Join(root, "tmp"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("tmp/ after failed writes: %v %v", entries, err)
	}
	// Many small files until something fails (a seal or a commit may be
	// what fails now): whatever fails, nothing is half-committed.
	var last []byte
	for i := 0; ; i++ {
		data := bytes.Repeat([]byte{byte(i)}, 64<<10+i)
		err := os.WriteFile(p, data, 0o644)
		if err != nil {
			wantErrno(t, fmt.Sprintf("rewrite %d", i), err, syscall.ENOSPC)
			break
		}
		last = data
		if i > 200 {
			t.Fatal("the disk never filled")
		}
	}
	if got := readFile(t, p); last != nil && !bytes.Equal(got, last) {
		t.Fatalf("after the failure %s holds %d bytes, want the last version (%d)", p, len(got), len(last))
	}
	consistent(t, n)
	// Space comes back: writing works again.
	must(t, os.Remove(q))
	for _, h := range mustComplete(t, n) {
		if !referenced(n, h) {
			must(t, n.Store.Remove(h))
		}
	}
	must(t, os.WriteFile(filepath.Join(n.Dir, "after"), []byte("works"), 0o644))
}

func mustComplete(t *testing.T, n *fstest.Node) []bt.InfoHash {
	t.Helper()
	hs, err := n.Store.Complete()
	must(t, err)
	return hs
}

func referenced(n *fstest.Node, h bt.InfoHash) bool {
	found := false
	n.Repo.Snapshot().Walk(func(p string, e *meta.Entry) bool {
		found = found || e.Hash == h
		return !found
	})
	return found
}

func TestCorruptManifest(t *testing.T) {
	root := t.TempDir()
	n := fstest.Start(t, root, fs.Options{})
	must(t, os.WriteFile(filepath.Join(n.Dir, "good"), []byte("good"), 0o644))
	must(t, os.Mkdir(filepath.Join(n.Dir, "d"), 0o755))
	must(t, os.WriteFile(filepath.Join(n.Dir, "d", "ok"), []byte("ok"), 0o644))
	must(t, n.Stop())

	// Commit a manifest that is not bencode at "bad", with git itself. An
	// Open first replays meta's commit journal into git (a replay later
	// would move the branch back to the journal's last commit).
	gitDir := filepath.Join(root, "meta.git")
	r, err := meta.Open(gitDir, meta.Options{})
	must(t, err)
	must(t, r.Close())
	index := filepath.Join(t.TempDir(), "index")
	git := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"--git-dir", gitDir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_INDEX_FILE="+index,
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	blob := git("this is not a manifest", "hash-object", "-w", "--stdin")
	git("", "read-tree", "HEAD")
	git("", "update-index", "--add", "--cacheinfo", "100644,"+blob+",bad")
	tree := git("", "write-tree")
	commit := git("corrupt\n", "commit-tree", tree, "-p", "HEAD")
	git("", "update-ref", "HEAD", commit)

	n2 := fstest.Start(t, root, fs.Options{})
	if got := readFile(t, filepath.Join(n2.Dir, "good")); string(got) != "good" {
		t.Fatalf("good: %q", got)
	}
	if got := readFile(t, filepath.Join(n2.Dir, "d", "ok")); string(got) != "ok" {
		t.Fatalf("d/ok: %q", got)
	}
	problems := fmt.Sprint(n2.Repo.Problems())
	if !strings.Contains(problems, "bad") {
		t.Fatalf("problems: %s", problems)
	}
	must(t, os.WriteFile(filepath.Join(n2.Dir, "new"), []byte("new"), 0o644))
}

func TestStaleMount(t *testing.T) {
	root, dir := t.TempDir(), t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DELUGEFS_TEST_CHILD_ROOT="+root, "DELUGEFS_TEST_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q %v", line, err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("before the crash"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "g"), []byte("old g"), 0o644))
	// A write in progress when the process dies.
	half, err := os.OpenFile(filepath.Join(dir, "g"), os.O_WRONLY|os.O_TRUNC, 0)
	must(t, err)
	_, err = half.Write(bytes.Repeat([]byte("new g "), 100000))
	must(t, err)
	must(t, cmd.Process.Kill())
	cmd.Wait()
	half.Close() // fails: the file system is gone
	// The mount point is stale now.
	// statfs: stat may be answered from the kernel's attribute cache.
	var st unix.Statfs_t
	err = unix.Statfs(dir, &st)
	if !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("statfs of the stale mount: %v, want ENOTCONN", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	n := fstest.StartAt(t, root, dir, fstest.Config{})
	if time.Now().After(deadline) {
		t.Fatal("recovery took too long")
	}
	if got := readFile(t, filepath.Join(n.Dir, "f")); string(got) != "before the crash" {
		t.Fatalf("after recovery: %q", got)
	}
	if got := readFile(t, filepath.Join(n.Dir, "g")); string(got) != "old g" {
		t.Fatalf("file being written at the crash: %q, want the last closed version", got)
	}
	consistent(t, n)
	if ents, err := os.ReadDir(filepath.Join(root, "tmp")); err != nil || len(ents) != 0 {
		t.Fatalf("tmp/ after restart: %v %v", ents, err)
	}
}

func TestMountBusy(t *testing.T) {
	n := start(t)
	_, err := fstest.Open(t.TempDir(), n.Dir, fstest.Config{})
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("second mount at a live mount point: %v", err)
	}
}
