package fs

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/winfsp/cgofuse/fuse"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/fs/mount"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/piece"
)

// Remote reads the bytes of a blob this node holds no complete copy of: the
// swarm side of a read. ReadAt reads len(p) bytes at off (fewer only at the
// end of the blob) and returns when they are verified, or fails when ctx
// ends first.
type Remote interface {
	ReadAt(ctx context.Context, info *bt.Info, p []byte, off int64) (int, error)
}

// RemoteOpener is a Remote that gives each open file handle a reader of
// its own, whose sequential reads grow a read-ahead window (a stream) and
// whose seeks move it.
type RemoteOpener interface {
	Remote
	OpenRemote(info *bt.Info) (RemoteReader, error)
}

// RemoteReader is one handle's reader of a blob from the swarm.
type RemoteReader interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	Close() error
}

// Options configure an FS. The zero value is ready to use.
type Options struct {
	// Remote serves reads of blobs that are not complete on this node; nil
	// (no swarm) makes such reads fail with EIO at once.
	Remote Remote
	// RemoteTimeout bounds one read from Remote (default 30s); the read
	// fails with EIO when it passes.
	RemoteTimeout time.Duration
	// Timeout bounds every call into the meta actor (default 15s): a dead
	// actor turns into EIO, never into a hung kernel request.
	Timeout time.Duration
	// Logger receives unexpected errors (those that become EIO); nil means
	// slog.Default().
	Logger *slog.Logger
	// Cluster, when set, answers user.delugefs.copies, .holders and
	// .progress from what the node knows of its peers; nil means this
	// node alone.
	Cluster Cluster
}

// Cluster is what the node knows of a blob's copies in the volume.
type Cluster interface {
	// Copies returns how many live nodes hold a complete copy of h, and
	// their node ids (sorted).
	Copies(h bt.InfoHash) (int, []string)
	// Progress returns the fraction (0..1) of h's pieces this node holds
	// verified.
	Progress(h bt.InfoHash) float64
}

// FS is the DelugeFS file system: a cgofuse FileSystemInterface over a
// namespace (meta.Repo) and a blob store (piece.Store). Create it with New
// and mount it with Mount. Its methods are called by libfuse's threads
// concurrently.
type FS struct {
	fuse.FileSystemBase

	repo  *meta.Repo
	store *piece.Store
	opts  Options
	log   *slog.Logger

	// nsMu orders commits at an open file's path (seal in flush, fsync and
	// truncate) against commits that move or remove paths (rename, unlink,
	// rmdir): held shared by the former, exclusively by the latter while
	// they commit and move the open files. Lock order: file.mu, nsMu, mu.
	nsMu sync.RWMutex
	// mu guards files, hidden, cached, and the path and refs of every file.
	mu    sync.Mutex
	files map[string]*file // open files by current path
	// hidden holds open files that libfuse renamed to .fuse_hidden* names
	// instead of unlinking them (see the package doc).
	hidden map[string]*file
	nopen  atomic.Int32 // len(files), read without mu by readdir
	// cached maps a path to the info-hash whose contents the kernel's page
	// cache of the file at that path may hold: the complete blob the last
	// open for reading was given keep_cache for (see OpenEx). A write,
	// truncate, rename or unlink at the path forgets it. At most
	// maxCached entries: cleared when full (forgetting costs a refill).
	cached map[string]bt.InfoHash

	handles sync.Map // uint64 → *handle; read without a lock by read
	nextFH  atomic.Uint64

	sealsKnown  atomic.Int64 // seals whose info the ladder had (see Stats)
	sealsHashed atomic.Int64 // seals that left the hashing to Store.Seal
	memOK       bool         // small files are written in memory (file.inMem)
}

// Stats counts work the file system has done since New.
type Stats struct {
	// SealsKnown counts seals of temp files hashed while they were written
	// (in order from byte 0), whose info Store.Seal trusted.
	SealsKnown int64
	// SealsHashed counts seals that left the hashing to Store.Seal (files
	// written out of order, or changed after a copy of the old contents).
	SealsHashed int64
}

// Stats returns the counters of the file system's work so far.
func (f *FS) Stats() Stats {
	return Stats{SealsKnown: f.sealsKnown.Load(), SealsHashed: f.sealsHashed.Load()}
}

// New returns a file system over repo and store. The repo's Serve loop must
// be running for anything that changes the namespace.
func New(repo *meta.Repo, store *piece.Store, opts Options) *FS {
	if opts.RemoteTimeout <= 0 {
		opts.RemoteTimeout = 30 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &FS{
		repo:   repo,
		store:  store,
		opts:   opts,
		log:    opts.Logger.With("component", "fs"),
		files:  make(map[string]*file),
		hidden: make(map[string]*file),
		cached: make(map[string]bt.InfoHash),
		// Small files are written in memory when their seal can attach
		// the bytes to the commit (the journal makes them durable).
		memOK: repo.AttachesBlobs() && memMax <= meta.MaxAttachedBlob,
	}
}

// MountOptions are the user-visible mount choices.
type MountOptions struct {
	// AllowOther lets other users use the mount (-o allow_other); the kernel
	// checks the mode bits stored in the manifests (default_permissions).
	AllowOther bool
	// Debug logs every FUSE request to stderr.
	Debug bool
	// CacheTimeout is how long the kernel trusts a name and a file's
	// attributes before it asks again (default 1s; a negative value:
	// never). Missing names are never cached, so a file a peer creates
	// shows at once. Changes made through the mount reach the kernel at
	// once; a peer's change or removal of a name the kernel has seen,
	// which arrives through the namespace sync, shows after at most this
	// long (as on NFS).
	CacheTimeout time.Duration
}

// Mount mounts fsys at dir, recovering a stale mount there first, and
// returns once the mount is usable. Unmount it with the returned Point's
// Unmount.
func Mount(dir string, fsys *FS, o MountOptions) (*mount.Point, error) {
	if err := mount.Recover(dir); err != nil {
		return nil, err
	}
	return mount.Mount(dir, fsys, MountConfig(o))
}

// MountConfig returns the mount.Options DelugeFS mounts with: readdirplus,
// atomic O_TRUNC, default_permissions, 1 MiB read-ahead, entry and
// attribute timeouts of o.CacheTimeout (default 1s) and no negative
// caching.
func MountConfig(o MountOptions) mount.Options {
	t := o.CacheTimeout
	if t == 0 {
		t = time.Second
	}
	return mount.Options{
		Name:         "delugefs",
		AllowOther:   o.AllowOther,
		ReaddirPlus:  true,
		OpenTrunc:    true,
		ReadAheadKB:  1024,
		Debug:        o.Debug,
		EntryTimeout: t,
		AttrTimeout:  t,
		// No negative caching: a name a peer creates must show at once
		// (cgofuse's high-level API cannot invalidate a negative dentry
		// on Linux), and a lookup that misses is one snapshot read.
	}
}

// rel turns a cgofuse path ("/a/b") into a meta path ("a/b"; "" is the root).
func rel(path string) string { return strings.Trim(path, "/") }

// base returns the last component of a meta path.
func base(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// nameTooLong reports whether the last component of p exceeds NAME_MAX.
func nameTooLong(p string) bool { return len(base(p)) > meta.MaxNameLen }

// ctx returns a context bounding one call into an actor.
func (f *FS) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), f.opts.Timeout)
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// update runs fn in the meta actor with the FS's deadline.
func (f *FS) update(msg string, fn func(tx *meta.Tx) error) error {
	ctx, cancel := f.ctx()
	defer cancel()
	return f.repo.UpdateLogged(ctx, msg, fn)
}

// errno maps an error to cgofuse's negative errno, logging the unexpected.
func (f *FS) errno(op, path string, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, meta.ErrNotExist), errors.Is(err, fs.ErrNotExist):
		return -fuse.ENOENT
	case errors.Is(err, meta.ErrExist), errors.Is(err, fs.ErrExist):
		return -fuse.EEXIST
	case errors.Is(err, meta.ErrNotDir):
		return -fuse.ENOTDIR
	case errors.Is(err, meta.ErrIsDir):
		return -fuse.EISDIR
	case errors.Is(err, meta.ErrNotEmpty):
		return -fuse.ENOTEMPTY
	case errors.Is(err, meta.ErrInvalid):
		return -fuse.EINVAL
	case errors.Is(err, syscall.ENOSPC):
		return -fuse.ENOSPC
	}
	var e errno
	if errors.As(err, &e) {
		return -int(e)
	}
	f.log.Error("fs: "+op, "path", path, "err", err)
	return -fuse.EIO
}

// errno is an error that is its own errno (positive).
type errno int

func (e errno) Error() string { return fuse.Error(-int(e)).Error() }

// now returns the current time in unix nanoseconds.
func now() int64 { return time.Now().UnixNano() }

// owner returns the uid and gid of the process making the current request.
func owner() (uint32, uint32) {
	uid, gid, _ := fuse.Getcontext()
	return uid, gid
}
