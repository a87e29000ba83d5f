//go:build linux

package fs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/fs/fstest"
)

func start(t *testing.T) *fstest.Node {
	t.Helper()
	return fstest.Start(t, t.TempDir(), fs.Options{})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

func TestFileBasics(t *testing.T) {
	n := start(t)
	p := filepath.Join(n.Dir, "hello.txt")
	data := []byte("hello, delugefs\n")
	must(t, os.WriteFile(p, data, 0o640))
	if got := readFile(t, p); !bytes.Equal(got, data) {
		t.Fatalf("read %q, want %q", got, data)
	}
	fi, err := os.Stat(p)
	must(t, err)
	if fi.Size() != int64(len(data)) || fi.Mode().Perm() != 0o640 || !fi.Mode().IsRegular() {
		t.Fatalf("stat: size %d mode %v", fi.Size(), fi.Mode())
	}
	// The manifest in the namespace.
	e, ok := n.Repo.Snapshot().Get("hello.txt")
	if !ok || e.Size != int64(len(data)) || e.Info == nil || e.Info.Length != int64(len(data)) || !n.Store.Has(e.Hash) {
		t.Fatalf("manifest: %+v %v", e, ok)
	}
	// Overwrite with O_TRUNC, append, partial overwrite.
	must(t, os.WriteFile(p, []byte("abc"), 0o600))
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString("def")
	must(t, err)
	must(t, f.Close())
	f, err = os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("XY"), 1)
	must(t, err)
	// Reads through another handle see the change before close.
	if got := readFile(t, p); string(got) != "aXYdef" {
		t.Fatalf("before close: %q", got)
	}
	fi, err = f.Stat()
	must(t, err)
	if fi.Size() != 6 {
		t.Fatalf("size while open: %d", fi.Size())
	}
	must(t, f.Close())
	if got := readFile(t, p); string(got) != "aXYdef" {
		t.Fatalf("after close: %q", got)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode after rewrite: %v (mode belongs to the file, not to O_CREAT)", fi.Mode())
	}
	// truncate by path and by handle.
	must(t, os.Truncate(p, 2))
	if got := readFile(t, p); string(got) != "aX" {
		t.Fatalf("after truncate: %q", got)
	}
	f, err = os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	must(t, f.Truncate(10))
	must(t, f.Sync())
	must(t, f.Close())
	if got := readFile(t, p); string(got) != "aX\x00\x00\x00\x00\x00\x00\x00\x00" {
		t.Fatalf("after ftruncate: %q", got)
	}
	// An empty file.
	must(t, os.WriteFile(filepath.Join(n.Dir, "empty"), nil, 0o644))
	if fi, err := os.Stat(filepath.Join(n.Dir, "empty")); err != nil || fi.Size() != 0 {
		t.Fatalf("empty: %v %v", fi, err)
	}
	// unlink
	must(t, os.Remove(p))
	_, err = os.Stat(p)
	wantErrno(t, "stat after unlink", err, syscall.ENOENT)
	wantErrno(t, "link", os.Link(filepath.Join(n.Dir, "empty"), filepath.Join(n.Dir, "l")), syscall.ENOTSUP)
}

func TestDirsAndSymlinks(t *testing.T) {
	n := start(t)
	d := filepath.Join(n.Dir, "a", "b")
	must(t, os.MkdirAll(d, 0o750))
	must(t, os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644))
	wantErrno(t, "mkdir existing", os.Mkdir(d, 0o755), syscall.EEXIST)
	wantErrno(t, "rmdir non-empty", syscall.Rmdir(d), syscall.ENOTEMPTY)
	wantErrno(t, "rmdir file", syscall.Rmdir(filepath.Join(d, "f")), syscall.ENOTDIR)
	wantErrno(t, "unlink dir", syscall.Unlink(d), syscall.EISDIR)
	if fi, err := os.Stat(d); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Fatalf("stat dir: %v %v", fi, err)
	}
	must(t, os.Symlink("b/f", filepath.Join(n.Dir, "a", "link")))
	if tgt, err := os.Readlink(filepath.Join(n.Dir, "a", "link")); err != nil || tgt != "b/f" {
		t.Fatalf("readlink: %q %v", tgt, err)
	}
	if got := readFile(t, filepath.Join(n.Dir, "a", "link")); string(got) != "x" {
		t.Fatalf("through symlink: %q", got)
	}
	ents, err := os.ReadDir(filepath.Join(n.Dir, "a"))
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name()+":"+e.Type().String())
	}
	if got := strings.Join(names, " "); got != "b:d--------- link:L---------" {
		t.Fatalf("readdir: %s", got)
	}
	must(t, os.Remove(filepath.Join(d, "f")))
	must(t, os.Remove(d))
	must(t, os.Remove(filepath.Join(n.Dir, "a", "link")))
	must(t, os.Remove(filepath.Join(n.Dir, "a")))
	ents, err = os.ReadDir(n.Dir)
	if err != nil || len(ents) != 0 {
		t.Fatalf("root after removing all: %v %v", ents, err)
	}
}

func TestAttrs(t *testing.T) {
	n := start(t)
	p := filepath.Join(n.Dir, "f")
	must(t, os.WriteFile(p, []byte("data"), 0o644))
	must(t, os.Chmod(p, 0o600))
	must(t, os.Chown(p, 1234, 5678))
	mt := unix.NsecToTimespec(1_500_000_000_123_456_789)
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{mt, mt}, 0))
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	if st.Mode&0o7777 != 0o600 || st.Uid != 1234 || st.Gid != 5678 || st.Mtim != mt {
		t.Fatalf("stat: mode %o uid %d gid %d mtime %v", st.Mode, st.Uid, st.Gid, st.Mtim)
	}
	e, _ := n.Repo.Snapshot().Get("f")
	if e.Mode != 0o600 || e.UID != 1234 || e.GID != 5678 || e.Mtime != 1_500_000_000_123_456_789 {
		t.Fatalf("manifest: %+v", e)
	}
	// Rewriting keeps mode and owner.
	must(t, os.WriteFile(p, []byte("new data"), 0o644))
	must(t, unix.Stat(p, &st))
	if st.Mode&0o7777 != 0o600 || st.Uid != 1234 || st.Size != 8 {
		t.Fatalf("after rewrite: mode %o uid %d size %d", st.Mode, st.Uid, st.Size)
	}
	var sfs unix.Statfs_t
	must(t, unix.Statfs(n.Dir, &sfs))
	var want unix.Statfs_t
	must(t, unix.Statfs(n.Root, &want))
	if sfs.Blocks*uint64(sfs.Bsize) != want.Blocks*uint64(want.Bsize) || sfs.Namelen != 255 {
		t.Fatalf("statfs: %d blocks of %d, namelen %d; disk %d of %d", sfs.Blocks, sfs.Bsize, sfs.Namelen, want.Blocks, want.Bsize)
	}
	must(t, unix.Access(p, unix.R_OK))
}
