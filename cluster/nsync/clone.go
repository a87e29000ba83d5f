package nsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/delugefs/delugefs/api"
)

// DefaultCloneTimeout bounds a Clone when ctx has no deadline.
const DefaultCloneTimeout = 30 * time.Minute

// Clone makes gitDir a copy of the peer's namespace repository, for a
// node's first start without a local volume: a bare repository whose
// branch (the peer's, normally refs/heads/main, with HEAD pointing to it)
// is the peer's head, which meta.Open then opens. gitDir must not exist or
// be an empty directory. The clone is built in a temporary directory
// beside gitDir, checked (pack limits and checksum, every object's
// references present), synced to disk and renamed into place, so a failed
// or interrupted clone leaves no gitDir behind (an empty directory that
// existed stays). The pack is spooled to disk, bounded by CloneLimits.
func Clone(ctx context.Context, c *api.Client, gitDir string) error {
	return CloneWithLimits(ctx, c, gitDir, CloneLimits)
}

// CloneWithLimits is Clone with other limits; zero fields take
// CloneLimits.
func CloneWithLimits(ctx context.Context, c *api.Client, gitDir string, lim Limits) error {
	lim = lim.orDefault(CloneLimits)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCloneTimeout)
		defer cancel()
	}
	gitDir = filepath.Clean(gitDir)
	if err := cloneTarget(gitDir); err != nil {
		return err
	}
	parent := filepath.Dir(gitDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("nsync: clone: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(gitDir)+".clone-*")
	if err != nil {
		return fmt.Errorf("nsync: clone: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := cloneInto(ctx, c, tmp, lim); err != nil {
		return err
	}
	if err := syncTree(tmp); err != nil {
		return fmt.Errorf("nsync: clone: sync %s: %w", tmp, err)
	}
	if err := cloneTarget(gitDir); err != nil {
		return err // someone made it meanwhile
	}
	// os.Rename refuses to replace a directory, even an empty one.
	if err := os.Remove(gitDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("nsync: clone: %w", err)
	}
	if err := os.Rename(tmp, gitDir); err != nil {
		return fmt.Errorf("nsync: clone: %w", err)
	}
	done = true
	if err := syncDir(parent); err != nil {
		return fmt.Errorf("nsync: clone: sync %s: %w", parent, err)
	}
	return nil
}

// cloneTarget checks that dir does not exist or is an empty directory.
func cloneTarget(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nsync: clone: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrNotEmpty, dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("nsync: clone: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("%w: %s", ErrNotEmpty, dir)
	}
	return nil
}

// cloneInto fetches the peer's whole history into the new bare repository
// dir.
func cloneInto(ctx context.Context, c *api.Client, dir string, lim Limits) error {
	m := newMeter(c, lim)
	sess, ar, err := advertisement(ctx, c, m)
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return fmt.Errorf("nsync: clone from %s: %w: the peer has no commit yet", c.GitURL(), ErrNoHead)
	}
	if err != nil {
		return fmt.Errorf("nsync: clone: %w", err)
	}
	head, branch, err := advertisedHead(ar)
	if err != nil {
		return fmt.Errorf("nsync: clone from %s: %w", c.GitURL(), err)
	}
	_, err = git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		Bare:        true,
		InitOptions: git.InitOptions{DefaultBranch: branch},
	})
	if err != nil {
		return fmt.Errorf("nsync: clone: init %s: %w", dir, err)
	}

	spool, err := os.CreateTemp(dir, "clone-*.pack")
	if err != nil {
		return fmt.Errorf("nsync: clone: %w", err)
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	n, err := receivePack(ctx, sess, ar, head, nil, lim, spool)
	if err != nil {
		return fmt.Errorf("nsync: clone %s from %s: %w", head, c.GitURL(), err)
	}
	sto := filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRU(4<<20))
	defer sto.Close()
	err = safely(func() error {
		if _, err := checkPack(spool, n, lim); err != nil {
			return err
		}
		if err := writePack(sto, io.NewSectionReader(spool, 0, n)); err != nil {
			return err
		}
		return checkStore(sto, head)
	})
	if err != nil {
		return fmt.Errorf("nsync: clone %s from %s: %w", head, c.GitURL(), err)
	}
	if err := sto.SetReference(plumbing.NewHashReference(branch, head)); err != nil {
		return fmt.Errorf("nsync: clone: set %s: %w", branch, err)
	}
	if err := sto.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, branch)); err != nil {
		return fmt.Errorf("nsync: clone: set HEAD: %w", err)
	}
	return nil
}

// writePack stores a checked pack in sto with its index.
func writePack(sto *filesystem.Storage, r io.Reader) error {
	w, err := sto.PackfileWriter()
	if err != nil {
		return fmt.Errorf("write pack: %w", err)
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return fmt.Errorf("write pack: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("%w: index pack: %w", ErrBadPack, err)
	}
	return nil
}

// checkStore checks that head is a commit of sto and that every object of
// sto refers only to objects sto holds.
func checkStore(sto *filesystem.Storage, head plumbing.Hash) error {
	c, err := sto.EncodedObject(plumbing.AnyObject, head)
	if err != nil {
		return fmt.Errorf("%w: the head %s was not sent", ErrIncomplete, head)
	}
	if c.Type() != plumbing.CommitObject {
		return fmt.Errorf("%w: the head %s is a %s, not a commit", ErrBadPack, head, c.Type())
	}
	iter, err := sto.IterEncodedObjects(plumbing.AnyObject)
	if err != nil {
		return fmt.Errorf("list objects: %w", err)
	}
	defer iter.Close()
	has := func(h plumbing.Hash) bool { return sto.HasEncodedObject(h) == nil }
	return iter.ForEach(func(obj plumbing.EncodedObject) error {
		return references(obj, has)
	})
}

// syncTree fsyncs every file and directory under root.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		return syncPath(p)
	})
}

func syncDir(dir string) error { return syncPath(dir) }

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
