//go:build linux

package fs_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// getdents returns every name getdents(2) gives for dir, "." and ".."
// included (os.ReadDir and unix.ParseDirent hide them).
func getdents(t *testing.T, dir string) []string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return names
		}
		// struct linux_dirent64: ino 8, off 8, reclen 2, type 1, name.
		for b := buf[:n]; len(b) > 0; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			name := b[19:reclen]
			if i := slices.Index(name, 0); i >= 0 {
				name = name[:i]
			}
			names = append(names, string(name))
			b = b[reclen:]
		}
	}
}

// TestReaddirDots: `ls -a` shows "." and "..", in the root and below.
func TestReaddirDots(t *testing.T) {
	n := start(t)
	must(t, os.Mkdir(filepath.Join(n.Dir, "d"), 0o755))
	must(t, os.WriteFile(filepath.Join(n.Dir, "d", "f"), []byte("x"), 0o644))
	for dir, want := range map[string][]string{
		n.Dir:                     {".", "..", "d"},
		filepath.Join(n.Dir, "d"): {".", "..", "f"},
	} {
		got := getdents(t, dir)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("getdents %s = %q, want %q", dir, got, want)
		}
	}
}
