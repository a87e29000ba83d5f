//go:build linux

package passthrough_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/delugefs/delugefs/bench/passthrough"
	"github.com/delugefs/delugefs/fs/mount"
)

func TestMirror(t *testing.T) {
	src, mnt := t.TempDir(), t.TempDir()
	m, err := mount.Mount(mnt, passthrough.New(src, true), mount.Options{Name: "passthrough", ReaddirPlus: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Error(err)
		}
	})
	data := bytes.Repeat([]byte("passthrough "), 100000)
	if err := os.WriteFile(filepath.Join(mnt, "a"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(src, "a"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("source copy: %d bytes, %v; want %d bytes", len(got), err, len(data))
	}
	got, err = os.ReadFile(filepath.Join(mnt, "a"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d bytes, %v; want %d bytes", len(got), err, len(data))
	}
	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "a"), filepath.Join(mnt, "d", "b")); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(mnt, "d"))
	if err != nil || len(ents) != 1 || ents[0].Name() != "b" {
		t.Fatalf("readdir d: %v, %v", ents, err)
	}
}
