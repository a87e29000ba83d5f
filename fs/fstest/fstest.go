package fstest

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/winfsp/cgofuse/fuse"

	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/fs/mount"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/piece"
)

// Node is one mounted DelugeFS node.
type Node struct {
	Root  string // ROOT: meta.git, blobs/, tmp/
	Dir   string // the mount point
	Repo  *meta.Repo
	Store *piece.Store
	FS    *fs.FS
	Point *mount.Point

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	err    error
}

// Config configures a node.
type Config struct {
	FS    fs.Options
	Mount fs.MountOptions
	Meta  meta.Options
}

// Start opens (or creates) the node at root and mounts it at a new
// directory under t.TempDir().
func Start(t testing.TB, root string, opts fs.Options) *Node {
	t.Helper()
	return StartAt(t, root, t.TempDir(), Config{FS: opts})
}

// StartAt is Start with a chosen mount point and configuration.
func StartAt(t testing.TB, root, dir string, cfg Config) *Node {
	t.Helper()
	n, err := Open(root, dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("stop node: %v", err)
		}
	})
	return n
}

// Open opens the node at root and mounts it at dir. Stop undoes it.
func Open(root, dir string, cfg Config) (*Node, error) {
	store, err := piece.OpenStore(root)
	if err != nil {
		return nil, err
	}
	if cfg.Meta.Logger == nil {
		cfg.Meta.Logger = cfg.FS.Logger
	}
	if cfg.Meta.BeforeCheckpoint == nil {
		cfg.Meta.BeforeCheckpoint = store.Flush
	}
	if cfg.Meta.RestoreBlob == nil {
		cfg.Meta.RestoreBlob = store.Restore
	}
	repo, err := meta.Open(filepath.Join(root, "meta.git"), cfg.Meta)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{Root: root, Dir: dir, Repo: repo, Store: store, cancel: cancel, done: make(chan struct{})}
	// The Serve loop ends when Stop cancels ctx.
	go func() {
		defer close(n.done)
		if err := repo.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, meta.ErrClosed) {
			n.err = err
		}
	}()
	n.FS = fs.New(repo, store, cfg.FS)
	n.Point, err = fs.Mount(dir, n.FS, cfg.Mount)
	if err != nil {
		cancel()
		<-n.done
		repo.Close()
		return nil, err
	}
	return n, nil
}

// Stop unmounts the node, ends its Serve loop and closes the repo. Later
// calls return the first call's result.
func (n *Node) Stop() error {
	n.once.Do(func() {
		uerr := n.Point.Unmount()
		n.cancel()
		<-n.done
		n.err = errors.Join(uerr, n.err, n.Repo.Close())
	})
	return n.err
}

// Mount mounts any cgofuse file system under t.TempDir() and unmounts it
// when the test ends. It returns the mount point.
func Mount(t testing.TB, fsys fuse.FileSystemInterface, o mount.Options) string {
	t.Helper()
	dir := t.TempDir()
	pt, err := mount.Mount(dir, fsys, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pt.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return dir
}
