package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/delugefs/delugefs/meta"
)

func TestCreateThenOpen(t *testing.T) {
	root := filepath.Join(t.TempDir(), "disk1")
	n, err := Open(root, "bigstore", Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	id := n.Config.NodeID
	if len(id) != 16 || n.Config.VolumeKey == "" {
		t.Fatalf("config %+v", n.Config)
	}
	for _, p := range []string{"node.json", "meta.git", "blobs", "tmp"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s missing after create: %v", p, err)
		}
	}
	// A second process (here: a second open) on the same root is refused.
	if _, err := Open(root, "bigstore", Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2, err := Open(root, "bigstore", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if n2.Config.NodeID != id {
		t.Fatalf("node id changed across opens: %s -> %s", id, n2.Config.NodeID)
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	n, err := Open(vol, "bigstore", Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	full := filepath.Join(dir, "full")
	os.MkdirAll(full, 0o755)
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)

	tests := []struct {
		name   string
		root   string
		id     string
		create bool
		want   error
	}{
		{"create on non-empty root", full, "bigstore", true, ErrNotEmpty},
		{"create on an existing volume", vol, "bigstore", true, ErrNotEmpty},
		{"wrong id", vol, "otherstore", false, ErrWrongID},
		{"not a volume", full, "bigstore", false, ErrNotVolume},
		{"missing root", filepath.Join(dir, "nope"), "bigstore", false, ErrNotVolume},
		{"bad id", filepath.Join(dir, "new"), "../etc", true, ErrBadID},
		{"empty id", filepath.Join(dir, "new"), "", true, ErrBadID},
	}
	for _, tt := range tests {
		_, err := Open(tt.root, tt.id, Options{Create: tt.create})
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestServeCommitsAndStops(t *testing.T) {
	n, err := Open(filepath.Join(t.TempDir(), "r"), "v", Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	uctx, ucancel := context.WithTimeout(ctx, 10*time.Second)
	defer ucancel()
	err = n.Repo.Update(uctx, "mkdir films", func(tx *meta.Tx) error {
		return tx.Put("films", &meta.Entry{Kind: meta.KindDir, Mode: 0o755})
	})
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := n.Repo.Snapshot().Get("films"); !ok || e.Kind != meta.KindDir {
		t.Fatal("films not in the snapshot after Update returned")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
}
