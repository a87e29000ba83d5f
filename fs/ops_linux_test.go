//go:build linux

package fs_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/fs/fstest"
)

func TestRename(t *testing.T) {
	n := start(t)
	at := func(p string) string { return filepath.Join(n.Dir, p) }
	write := func(p, s string) { t.Helper(); must(t, os.WriteFile(at(p), []byte(s), 0o644)) }
	check := func(p, s string) {
		t.Helper()
		if got := readFile(t, at(p)); string(got) != s {
			t.Fatalf("%s: %q, want %q", p, got, s)
		}
	}
	gone := func(p string) {
		t.Helper()
		_, err := os.Lstat(at(p))
		wantErrno(t, "lstat "+p, err, syscall.ENOENT)
	}
	write("a", "A")
	must(t, os.Rename(at("a"), at("b")))
	gone("a")
	check("b", "A")
	// over an existing file
	write("c", "C")
	must(t, os.Rename(at("b"), at("c")))
	gone("b")
	check("c", "A")
	// a directory with contents
	must(t, os.MkdirAll(at("d/e"), 0o755))
	write("d/e/f", "F")
	write("d/g", "G")
	must(t, os.Rename(at("d"), at("d2")))
	gone("d")
	check("d2/e/f", "F")
	check("d2/g", "G")
	// over an empty directory; not over a non-empty one
	must(t, os.Mkdir(at("empty"), 0o755))
	must(t, syscall.Rename(at("d2"), at("empty"))) // os.Rename refuses existing dirs itself
	check("empty/e/f", "F")
	must(t, os.Mkdir(at("x"), 0o755))
	wantErrno(t, "rename over non-empty dir", syscall.Rename(at("x"), at("empty")), syscall.ENOTEMPTY)
	wantErrno(t, "rename dir over file", os.Rename(at("x"), at("c")), syscall.ENOTDIR)
	wantErrno(t, "rename file over dir", syscall.Rename(at("c"), at("x")), syscall.EISDIR)
	wantErrno(t, "rename into itself", os.Rename(at("empty"), at("empty/e/inside")), syscall.EINVAL)
	wantErrno(t, "rename missing", os.Rename(at("nope"), at("x2")), syscall.ENOENT)
	// RENAME_NOREPLACE
	wantErrno(t, "noreplace", unix.Renameat2(unix.AT_FDCWD, at("c"), unix.AT_FDCWD, at("empty/g"), unix.RENAME_NOREPLACE), syscall.EEXIST)
	must(t, unix.Renameat2(unix.AT_FDCWD, at("c"), unix.AT_FDCWD, at("c2"), unix.RENAME_NOREPLACE))
	check("c2", "A")
	// a symlink
	must(t, os.Symlink("c2", at("sl")))
	must(t, os.Rename(at("sl"), at("sl2")))
	if tgt, _ := os.Readlink(at("sl2")); tgt != "c2" {
		t.Fatalf("renamed symlink: %q", tgt)
	}
	// a file open for writing, renamed before close: the data lands at the new name
	f, err := os.Create(at("open"))
	must(t, err)
	_, err = f.WriteString("written before and after rename")
	must(t, err)
	must(t, os.Rename(at("open"), at("empty/moved")))
	_, err = f.WriteString("!")
	must(t, err)
	must(t, f.Close())
	gone("open")
	check("empty/moved", "written before and after rename!")
	// a directory holding an open file
	f, err = os.Create(at("empty/e/held"))
	must(t, err)
	must(t, os.Rename(at("empty"), at("z")))
	_, err = f.WriteString("held")
	must(t, err)
	must(t, f.Close())
	check("z/e/held", "held")
}

func TestUnlinkOpen(t *testing.T) {
	n := start(t)
	p := filepath.Join(n.Dir, "f")
	must(t, os.WriteFile(p, []byte("old contents"), 0o644))
	r, err := os.Open(p)
	must(t, err)
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	must(t, os.Remove(p))
	// Both handles keep working; nothing comes back at the path.
	buf := make([]byte, 20)
	if k, err := r.ReadAt(buf, 0); string(buf[:k]) != "old contents" {
		t.Fatalf("read after unlink: %q %v", buf[:k], err)
	}
	// Opening it again through /proc (open by the hidden name) works too.
	if got, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", r.Fd())); err != nil || string(got) != "old contents" {
		t.Fatalf("reopen after unlink: %q %v", got, err)
	}
	_, err = w.WriteAt([]byte("NEW"), 0)
	must(t, err)
	must(t, w.Close())
	must(t, r.Close())
	ents, err := os.ReadDir(n.Dir)
	must(t, err)
	if len(ents) != 0 {
		t.Fatalf("directory after unlink of open file: %v", ents)
	}
	if l := n.Repo.Snapshot().Len(); l != 0 {
		t.Fatalf("namespace holds %d entries", l)
	}
	// rename over an open file
	must(t, os.WriteFile(p, []byte("target"), 0o644))
	must(t, os.WriteFile(p+"2", []byte("source"), 0o644))
	r, err = os.Open(p)
	must(t, err)
	must(t, os.Rename(p+"2", p))
	k, _ := r.ReadAt(buf, 0)
	if string(buf[:k]) != "target" {
		t.Fatalf("open target after rename over it: %q", buf[:k])
	}
	must(t, r.Close())
	if got := readFile(t, p); string(got) != "source" {
		t.Fatalf("after rename over open file: %q", got)
	}
	ents, _ = os.ReadDir(n.Dir)
	if len(ents) != 1 {
		t.Fatalf("entries: %v", ents)
	}
}

func TestXattrs(t *testing.T) {
	n := start(t)
	p := filepath.Join(n.Dir, "f")
	must(t, os.WriteFile(p, []byte("contents"), 0o644))
	must(t, unix.Setxattr(p, "user.color", []byte("blue"), 0))
	must(t, unix.Setxattr(p, "user.empty", nil, 0))
	wantErrno(t, "create existing", unix.Setxattr(p, "user.color", []byte("x"), unix.XATTR_CREATE), syscall.EEXIST)
	wantErrno(t, "replace missing", unix.Setxattr(p, "user.none", []byte("x"), unix.XATTR_REPLACE), syscall.ENODATA)
	wantErrno(t, "own xattr", unix.Setxattr(p, fs.XattrCopies, []byte("3"), 0), syscall.EPERM)
	wantErrno(t, "trusted", unix.Setxattr(p, "trusted.x", []byte("3"), 0), syscall.ENOTSUP)
	get := func(name string) string {
		t.Helper()
		buf := make([]byte, 256)
		k, err := unix.Getxattr(p, name, buf)
		must(t, err)
		return string(buf[:k])
	}
	if v := get("user.color"); v != "blue" {
		t.Fatalf("user.color = %q", v)
	}
	e, _ := n.Repo.Snapshot().Get("f")
	if v := get(fs.XattrInfoHash); v != e.Hash.String() {
		t.Fatalf("infohash %q, manifest %s", v, e.Hash)
	}
	if v := get(fs.XattrCopies); v != "1" {
		t.Fatalf("copies %q", v)
	}
	if v := get(fs.XattrProgress); v != "1" {
		t.Fatalf("progress %q", v)
	}
	_, err := unix.Getxattr(p, "user.none", make([]byte, 10))
	wantErrno(t, "get missing", err, syscall.ENODATA)
	buf := make([]byte, 1024)
	k, err := unix.Listxattr(p, buf)
	must(t, err)
	names := strings.Split(strings.TrimSuffix(string(buf[:k]), "\x00"), "\x00")
	slices.Sort(names)
	if want := []string{"user.color", "user.delugefs.copies", "user.delugefs.infohash", "user.delugefs.progress", "user.empty"}; !slices.Equal(names, want) {
		t.Fatalf("list: %q, want %q", names, want)
	}
	// xattrs survive a rewrite and live in the manifest
	must(t, os.WriteFile(p, []byte("other contents"), 0o644))
	if v := get("user.color"); v != "blue" {
		t.Fatalf("after rewrite user.color = %q", v)
	}
	e, _ = n.Repo.Snapshot().Get("f")
	if string(e.Xattrs["user.color"]) != "blue" {
		t.Fatalf("manifest xattrs: %q", e.Xattrs)
	}
	must(t, unix.Removexattr(p, "user.color"))
	wantErrno(t, "remove missing", unix.Removexattr(p, "user.color"), syscall.ENODATA)
	// on a directory
	d := filepath.Join(n.Dir, "d")
	must(t, os.Mkdir(d, 0o755))
	must(t, unix.Setxattr(d, "user.d", []byte("dir"), 0))
	k, err = unix.Getxattr(d, "user.d", buf)
	if err != nil || string(buf[:k]) != "dir" {
		t.Fatalf("dir xattr: %q %v", buf[:k], err)
	}
}

func TestNames(t *testing.T) {
	n := start(t)
	long := strings.Repeat("n", 255)
	names := []string{long, "with space", "new\nline", "bad\xff\xfeutf8", ".git", "..git", ".delugefs", "x.git", ".GIT", "-dash", "ümlaut"}
	for i, name := range names {
		p := filepath.Join(n.Dir, name)
		if err := os.WriteFile(p, []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatalf("create %q: %v", name, err)
		}
	}
	must(t, os.Mkdir(filepath.Join(n.Dir, ".git2"), 0o755))
	too := strings.Repeat("n", 256)
	_, err := os.Create(filepath.Join(n.Dir, too))
	wantErrno(t, "create 256", err, syscall.ENAMETOOLONG)
	wantErrno(t, "mkdir 256", os.Mkdir(filepath.Join(n.Dir, too), 0o755), syscall.ENAMETOOLONG)
	wantErrno(t, "rename to 256", os.Rename(filepath.Join(n.Dir, long), filepath.Join(n.Dir, too)), syscall.ENAMETOOLONG)
	wantErrno(t, "symlink 256", os.Symlink("x", filepath.Join(n.Dir, too)), syscall.ENAMETOOLONG)
	check := func(dir string) {
		t.Helper()
		ents, err := os.ReadDir(dir)
		must(t, err)
		got := map[string]bool{}
		for _, e := range ents {
			got[e.Name()] = true
		}
		for i, name := range names {
			if !got[name] {
				t.Fatalf("readdir lacks %q (has %v)", name, got)
			}
			if b := readFile(t, filepath.Join(dir, name)); string(b) != fmt.Sprint(i) {
				t.Fatalf("%q holds %q", name, b)
			}
		}
		if len(ents) != len(names)+1 {
			t.Fatalf("readdir: %d entries, want %d", len(ents), len(names)+1)
		}
	}
	check(n.Dir)
	// and after a remount
	root := n.Root
	must(t, n.Stop())
	n2 := fstest.Start(t, root, fs.Options{})
	check(n2.Dir)
}

func TestPersistence(t *testing.T) {
	root := t.TempDir()
	n := fstest.Start(t, root, fs.Options{})
	at := func(n *fstest.Node, p string) string { return filepath.Join(n.Dir, p) }
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB, several pieces
	must(t, os.MkdirAll(at(n, "a/b"), 0o700))
	must(t, os.WriteFile(at(n, "a/b/big"), big, 0o600))
	must(t, os.WriteFile(at(n, "a/small"), []byte("small"), 0o644))
	must(t, os.WriteFile(at(n, "empty"), nil, 0o644))
	must(t, os.Symlink("a/small", at(n, "link")))
	must(t, unix.Setxattr(at(n, "a/small"), "user.k", []byte("v"), 0))
	must(t, os.Chmod(at(n, "a"), 0o711))
	must(t, n.Stop())

	n2 := fstest.Start(t, root, fs.Options{})
	if got := readFile(t, at(n2, "a/b/big")); !bytes.Equal(got, big) {
		t.Fatalf("big: %d bytes after remount", len(got))
	}
	if got := readFile(t, at(n2, "a/small")); string(got) != "small" {
		t.Fatalf("small: %q", got)
	}
	if fi, err := os.Stat(at(n2, "empty")); err != nil || fi.Size() != 0 {
		t.Fatalf("empty: %v %v", fi, err)
	}
	if tgt, err := os.Readlink(at(n2, "link")); err != nil || tgt != "a/small" {
		t.Fatalf("link: %q %v", tgt, err)
	}
	buf := make([]byte, 10)
	if k, err := unix.Getxattr(at(n2, "a/small"), "user.k", buf); err != nil || string(buf[:k]) != "v" {
		t.Fatalf("xattr: %q %v", buf[:k], err)
	}
	if fi, err := os.Stat(at(n2, "a")); err != nil || fi.Mode().Perm() != 0o711 {
		t.Fatalf("dir mode: %v %v", fi.Mode(), err)
	}
	if fi, _ := os.Stat(at(n2, "a/b/big")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v", fi.Mode())
	}
}

// TestRootAttrs: the root of a fresh volume (no entry of its own) is a
// directory of the mounting user with the mount's time, not 1970.
func TestRootAttrs(t *testing.T) {
	before := time.Now().Add(-time.Second)
	n := start(t)
	st, err := os.Stat(n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if !st.IsDir() || st.ModTime().Before(before) || st.ModTime().After(time.Now().Add(time.Second)) {
		t.Errorf("root: dir %v, mtime %v (mounted after %v)", st.IsDir(), st.ModTime(), before)
	}
	if sys := st.Sys().(*syscall.Stat_t); int(sys.Uid) != os.Getuid() {
		t.Errorf("root owned by uid %d, want %d", sys.Uid, os.Getuid())
	}
}
