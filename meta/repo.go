package meta

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/delugefs/delugefs/bt"
)

// Options tune a Repo. The zero value is ready to use.
type Options struct {
	// Logger receives problems found while loading and commit failures;
	// nil means slog.Default().
	Logger *slog.Logger
	// Name and Email are the author of commits; empty means "delugefs"
	// and "delugefs@localhost" (NODEID@delugefs when NodeID is set).
	Name, Email string
	// NodeID is this node's id, 1 to 64 of [A-Za-z0-9_-] (a node uses 16
	// hex digits). Every commit this node makes records it as its
	// committer, "Name <NODEID@delugefs>", so that merges name conflict
	// copies after the node that wrote the losing version. Empty: the
	// committer is the author, and merges take such commits for node
	// "unknown".
	NodeID string
	// MaxBatch bounds the updates grouped into one commit; 0 means 1024.
	MaxBatch int
	// MaxEntries bounds the entries Open loads (a hostile repository can
	// reuse one subtree many times); 0 means 50,000,000.
	MaxEntries int
	// Now is the clock for commit times; nil means time.Now.
	Now func() time.Time
	// JournalSize is the size of the commit journal (see journal.go); 0
	// means 8 MiB; negative disables the journal, so that every commit
	// pays a syncfs and a directory fsync instead of one fdatasync.
	JournalSize int64
	// FlushDelay is how long the actor waits idle before it writes the
	// objects of journaled commits and moves the branch (what git
	// readers and Watch see), making lazy updates durable first; 0 means
	// 10ms. Under a steady stream of updates it writes them at least every
	// 10 FlushDelays.
	FlushDelay time.Duration
	// RestoreBlob writes a blob attached to a commit (Tx.AttachBlob) back
	// into the blob store when Open replays the journal after a crash; it
	// must verify data against info, be idempotent, and leave the blob on
	// the repository's file system (a checkpoint's syncfs makes it
	// durable). Open calls it for each blob of a record before that
	// record's commit is applied, and fails if it fails. nil disables
	// Tx.AttachBlob. piece.Store.Restore is the one a node passes.
	RestoreBlob func(info *bt.Info, data []byte) error
	// BeforeCheckpoint, when set, is called by every checkpoint just
	// before the barrier (syncfs) after which journal records are
	// retired: a blob store that writes attached blobs in the background
	// (piece.Store.PutSmallAsync) finishes them here (piece.Store.Flush),
	// so no record goes while its blob is only in memory. An error fails
	// the checkpoint; the records stay.
	BeforeCheckpoint func() error
}

// Problem is something wrong found in the repository: a path that could not
// be loaded and was skipped.
type Problem struct {
	Path string // filesystem path (unescaped where possible)
	Err  error
}

// String returns "path: error".
func (p Problem) String() string { return fmt.Sprintf("%q: %v", p.Path, p.Err) }

// Repo is the namespace of one node: a bare git repository at ROOT/meta.git
// and the in-memory index built from it. The actor loop (Serve) is the only
// writer; readers load the current Snapshot, which never blocks. The methods
// of Repo are safe for concurrent use.
type Repo struct {
	gitDir string
	opts   Options
	log    *slog.Logger
	store  *filesystem.Storage // reads objects (loose and packed)
	dirF   *os.File            // the repository directory: lock and syncfs handle
	branch string              // ref file HEAD points to, e.g. "refs/heads/main"

	snap atomic.Pointer[Snapshot]
	reqs chan *request

	closeOnce sync.Once
	closed    chan struct{}

	// serveMu guards serving: one batch at a time, run by the Serve loop
	// or inline by a caller (send).
	serveMu sync.Mutex
	// serving is set while a Serve loop runs; flushT is its flush timer,
	// armed while objects wait to be written (flushArmed), dirty is when
	// the first batch that left them waiting ran. All guarded by serveMu.
	serving    bool
	flushT     *time.Timer
	flushArmed bool
	dirty      time.Time

	// syncMu serializes the journal's barriers. Durable updates wait in
	// waiters (guarded by waitMu) until the journal is durable up to
	// their record: the goroutine that ran their batch syncs after it
	// released serveMu (drainDurable), so the next batch is applied and
	// written meanwhile and one barrier covers both (pipelined group
	// commit). fatal is set when a barrier failed: after a failed
	// fdatasync what reached the disk is unknown, so every later update
	// fails with it until the node is restarted and replays its journal.
	syncMu  sync.Mutex
	waitMu  sync.Mutex
	waiters []waiter
	fatal   atomic.Pointer[error]
	// w and j are owned by the Serve loop (and by Open before it returns).
	w *objWriter
	j *journal // nil when disabled
	// pendingRef is the commit the branch must move to once the pending
	// objects are written (zero when none).
	pendingRef plumbing.Hash
	// lazy holds lazy updates published but not yet committed.
	lazy lazyState
	// replayOps are the operations records Open found after the last
	// commit record.
	replayOps []journalRecord

	// packs reads our objects for the actor (Integrate); graph caches
	// commits. Both are owned by the actor.
	packs *packSet
	graph *graph

	stats struct {
		commits, updates, objects atomic.Uint64
		lazy, barriers, blobs     atomic.Uint64
		syncNanos                 atomic.Int64
		integrations, ffs, merges atomic.Uint64
		conflicts, copied         atomic.Uint64
	}

	// mu guards problems and watchers.
	mu       sync.Mutex
	problems []Problem
	watchers []chan struct{}
}

// lazyState is what lazy updates published but not yet committed add to
// the last commit: the published snapshot holds their tree.
type lazyState struct {
	objs      map[plumbing.Hash][]byte
	msgs      []string
	blobs     []journalBlob
	blobBytes int
	since     time.Time // when the oldest was published
	// ops holds their operations (with a journal), of which the first
	// opsLogged bytes, and the first blobsLogged blobs, are in operations
	// records already (UpdateLogged).
	ops                    []byte
	opsLogged, blobsLogged int
}

// waiter is a durable update whose answer waits for the journal to be
// durable up to lsn.
type waiter struct {
	q   *request
	lsn int64
}

type request struct {
	sync bool // Sync: answer after the repository shows every commit
	lazy bool // UpdateLazy: answer before the commit is durable
	// logged (UpdateLogged): answer once an operations record holds it,
	// commit later.
	logged bool
	// integ is set for Integrate: it runs alone, between batches.
	integ *integration
	ctx   context.Context
	msg   string
	fn    func(*Tx) error
	reply chan error // capacity 1
}

// Open opens the bare repository at gitDir, creating it (with a branch
// "main") if missing, and loads the namespace from HEAD. Entries that
// cannot be read are skipped and reported by Problems; Open fails only when
// the repository itself or HEAD's commit and root tree are unreadable.
func Open(gitDir string, opts Options) (*Repo, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Name == "" {
		opts.Name = "delugefs"
	}
	if opts.NodeID != "" {
		if err := checkNodeID(opts.NodeID); err != nil {
			return nil, fmt.Errorf("meta: Options.NodeID: %w", err)
		}
	}
	if opts.Email == "" {
		opts.Email = "delugefs@localhost"
		if opts.NodeID != "" {
			opts.Email = opts.NodeID + "@delugefs"
		}
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 50_000_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.JournalSize == 0 {
		opts.JournalSize = 8 << 20
	}
	if opts.FlushDelay <= 0 {
		opts.FlushDelay = 10 * time.Millisecond
	}
	if _, err := os.Stat(filepath.Join(gitDir, "HEAD")); errors.Is(err, os.ErrNotExist) {
		_, err := git.PlainInitWithOptions(gitDir, &git.PlainInitOptions{
			Bare:        true,
			InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
		})
		if err != nil {
			return nil, fmt.Errorf("meta: create repository %s: %w", gitDir, err)
		}
	}
	dirF, err := os.Open(gitDir)
	if err != nil {
		return nil, fmt.Errorf("meta: open repository: %w", err)
	}
	if err := lockRepo(dirF); err != nil {
		dirF.Close()
		return nil, err
	}
	r := &Repo{
		gitDir: gitDir,
		opts:   opts,
		log:    opts.Logger.With("repo", gitDir),
		// A small cache: loading reads each object once.
		store:  filesystem.NewStorage(osfs.New(gitDir), cache.NewObjectLRU(1<<20)),
		dirF:   dirF,
		reqs:   make(chan *request, 1024),
		closed: make(chan struct{}),
		w:      newObjWriter(gitDir),
		graph:  newGraph(),
	}
	r.w.background = true // pack merges run beside updates
	if opts.JournalSize > 0 {
		if r.j, err = openJournal(gitDir, max(opts.JournalSize, 64<<10)); err != nil {
			dirF.Close()
			return nil, fmt.Errorf("meta: %s: %w", gitDir, err)
		}
	}
	if err := cleanPacks(gitDir, false); err != nil {
		r.closeFiles()
		return nil, fmt.Errorf("meta: %s: %w", gitDir, err)
	}
	if names, err := packNames(gitDir); err == nil {
		r.w.packs = len(names)
	}
	if err := r.load(); err != nil {
		r.closeFiles()
		return nil, err
	}
	if len(r.replayOps) > 0 {
		if err := r.commitReplayed(); err != nil {
			r.closeFiles()
			return nil, fmt.Errorf("meta: replay journal of %s: %w", gitDir, err)
		}
	}
	if r.snap.Load().count > 10000 {
		// Loading made a lot of garbage (objects read through go-git);
		// hand it back to the OS instead of carrying it as RSS.
		debug.FreeOSMemory()
	}
	return r, nil
}

// load reads HEAD and the whole tree once.
func (r *Repo) load() error {
	head, err := r.store.Reference(plumbing.HEAD)
	if err != nil {
		return fmt.Errorf("meta: read HEAD of %s: %w", r.gitDir, err)
	}
	if head.Type() != plumbing.SymbolicReference {
		return fmt.Errorf("meta: HEAD of %s is detached; want a branch", r.gitDir)
	}
	r.branch = string(head.Target())
	if err := head.Target().Validate(); err != nil || !strings.HasPrefix(r.branch, "refs/heads/") {
		return fmt.Errorf("meta: HEAD of %s names %q; want a branch", r.gitDir, r.branch)
	}
	if err := r.replay(); err != nil {
		return fmt.Errorf("meta: replay journal of %s: %w", r.gitDir, err)
	}
	ref, err := r.store.Reference(head.Target())
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		root := &node{e: &Entry{Kind: KindDir, Mode: 0o755}, kids: emptyKids()}
		r.snap.Store(&Snapshot{root: root})
		return nil
	}
	if err != nil {
		return fmt.Errorf("meta: read %s: %w", r.branch, err)
	}
	// Objects are read through the actor's pack reader, not go-git's
	// storage (which opens the pack file for every object).
	typ, cdata, err := r.readOwn(ref.Hash())
	if err == nil && typ != plumbing.CommitObject {
		err = fmt.Errorf("a %v", typ)
	}
	c := &object.Commit{}
	if err == nil {
		o := &plumbing.MemoryObject{}
		o.SetType(plumbing.CommitObject)
		o.Write(cdata)
		err = c.Decode(o)
	}
	if err != nil {
		return fmt.Errorf("meta: read commit %s: %w", ref.Hash(), err)
	}
	l := loader{r: r, max: r.opts.MaxEntries}
	root, err := l.dir(c.TreeHash, "", 0)
	if err != nil {
		return fmt.Errorf("meta: load tree of %s: %w", ref.Hash(), err)
	}
	var gen uint64
	if ci, err := parseCommit(cdata); err == nil {
		gen = ci.gen // 0 (computed when needed) for a commit without the trailer
	}
	r.snap.Store(&Snapshot{root: root, count: l.count, head: ref.Hash(), gen: gen})
	return nil
}

// Problems returns what Open found wrong in the repository, with paths.
// Err returns the error that made the repository refuse updates (a
// failed journal barrier: see the package doc), or nil while it takes
// them.
func (r *Repo) Err() error {
	if perr := r.fatal.Load(); perr != nil {
		return *perr
	}
	return nil
}

func (r *Repo) Problems() []Problem {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Problem(nil), r.problems...)
}

func (r *Repo) problem(path string, err error) {
	r.log.Warn("meta: skipping unreadable entry", "path", path, "err", err)
	r.mu.Lock()
	r.problems = append(r.problems, Problem{Path: path, Err: err})
	r.mu.Unlock()
}

// loader builds the index from git, validating everything it reads.
type loader struct {
	r     *Repo
	count int
	max   int
}

var errTooMany = errors.New("meta: too many entries")

func (l *loader) dir(h plumbing.Hash, path string, depth int) (*node, error) {
	typ, data, err := l.r.readOwn(h)
	if err == nil && typ != plumbing.TreeObject {
		err = fmt.Errorf("%s is a %v", h, typ)
	}
	var ents []object.TreeEntry
	if err == nil {
		ents, err = treeEntries(data)
	}
	if err != nil {
		return nil, fmt.Errorf("read tree: %w", err)
	}
	n := &node{oid: h}
	b := newKidsBuilder()
	for _, te := range ents {
		if te.Name == markerName {
			if te.Mode != filemode.Regular {
				l.r.problem(path, fmt.Errorf("directory marker has mode %v", te.Mode))
				continue
			}
			data, err := l.blob(te.Hash, MaxManifestLen)
			if err == nil {
				n.e, err = decodeManifest(data, KindDir)
			}
			if err != nil {
				l.r.problem(path, fmt.Errorf("directory marker: %w", err))
				continue
			}
			n.marker = te.Hash
			continue
		}
		name, err := unescapeName(te.Name)
		p := join(path, name)
		if err != nil {
			l.r.problem(join(path, te.Name), err)
			continue
		}
		if len(p) > MaxPathLen {
			l.r.problem(p, fmt.Errorf("%w: path too long", ErrInvalid))
			continue
		}
		if _, dup := b.Get(name); dup {
			l.r.problem(p, errors.New("duplicate name in tree"))
			continue
		}
		if l.count >= l.max {
			return nil, errTooMany
		}
		var c *node
		switch te.Mode {
		case filemode.Dir:
			if depth+1 >= MaxDepth {
				l.r.problem(p, fmt.Errorf("%w: deeper than %d", ErrInvalid, MaxDepth))
				continue
			}
			c, err = l.dir(te.Hash, p, depth+1)
			if errors.Is(err, errTooMany) {
				return nil, err
			}
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			var data []byte
			data, err = l.blob(te.Hash, MaxManifestLen)
			if err == nil {
				var e *Entry
				if e, err = decodeManifest(data, KindFile); err == nil {
					c = &node{e: e, oid: te.Hash}
				}
			}
		case filemode.Symlink:
			var data []byte
			data, err = l.blob(te.Hash, MaxTargetLen)
			if err == nil {
				var e *Entry
				if e, err = checkEntry(&Entry{Kind: KindSymlink, Mode: 0o777, Target: string(data)}); err == nil {
					c = &node{e: e, oid: te.Hash}
				}
			}
		default:
			err = fmt.Errorf("unsupported git mode %v", te.Mode)
		}
		if err != nil {
			l.r.problem(p, err)
			continue
		}
		b.Set(name, c)
		n.desc += c.weight()
		l.count++
	}
	if n.e == nil {
		// No (readable) marker: defaults; the marker is rewritten with the
		// directory's tree.
		n.e = &Entry{Kind: KindDir, Mode: 0o755}
	}
	n.kids = b.Map()
	return n, nil
}

func (l *loader) blob(h plumbing.Hash, max int64) ([]byte, error) {
	typ, data, err := l.r.readOwn(h)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	if typ != plumbing.BlobObject {
		return nil, fmt.Errorf("read blob %s: a %v", h, typ)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("blob %s of %d bytes exceeds %d", h, len(data), max)
	}
	return data, nil
}

// treeEntries splits a git tree into its entries, as go-git decodes it.
func treeEntries(data []byte) ([]object.TreeEntry, error) {
	n := 0
	for i := 0; i < len(data); i++ {
		if data[i] == 0 {
			n++
		}
	}
	ents := make([]object.TreeEntry, 0, n)
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		if sp < 0 {
			return nil, errors.New("tree entry without a mode")
		}
		mode, err := filemode.New(string(data[:sp]))
		if err != nil {
			return nil, fmt.Errorf("tree entry mode: %w", err)
		}
		nul := bytes.IndexByte(data[sp+1:], 0)
		if nul < 0 || len(data) < sp+1+nul+1+20 {
			return nil, errors.New("truncated tree entry")
		}
		name := string(data[sp+1 : sp+1+nul])
		id := plumbing.Hash(data[sp+1+nul+1 : sp+1+nul+1+20])
		ents = append(ents, object.TreeEntry{Name: name, Mode: mode, Hash: id})
		data = data[sp+1+nul+1+20:]
	}
	return ents, nil
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Snapshot returns the latest published snapshot. It never blocks.
func (r *Repo) Snapshot() *Snapshot { return r.snap.Load() }

// Head returns the last commit (zero before the first commit): the
// latest snapshot minus lazy updates that wait for the next commit. It is
// durable unless it holds lazy updates (UpdateLazy) not yet synced; the
// branch file may show it up to FlushDelay later (see Sync).
func (r *Repo) Head() plumbing.Hash { return r.snap.Load().head }

// Storer returns the go-git storage of the repository, for serving fetches
// and reading history. Writers must go through Update.
func (r *Repo) Storer() *filesystem.Storage { return r.store }

// Stats are counters of a Repo's work since Open.
type Stats struct {
	Commits  uint64        // commits written
	Updates  uint64        // successful updates (several per grouped commit)
	Lazy     uint64        // successful lazy updates (UpdateLazy)
	Blobs    uint64        // blobs attached to commits (Tx.AttachBlob)
	Objects  uint64        // git objects written
	Barriers uint64        // durability barriers (journal fdatasyncs, syncfs) of commits
	SyncTime time.Duration // time spent in durability barriers

	// Namespace sync (Integrate).
	Integrations uint64 // Integrate calls that ran to the end (changing the head or not)
	FastForwards uint64 // integrations that moved the head to an existing commit
	Merges       uint64 // merge commits made (new canonical merges)
	Conflicts    uint64 // versions moved to a conflict name by merges (Conflict and FileDir events)
	Copied       uint64 // objects copied from peers' storages
}

// Stats returns the counters of the Repo's work since Open.
func (r *Repo) Stats() Stats {
	return Stats{
		Commits:  r.stats.commits.Load(),
		Updates:  r.stats.updates.Load(),
		Lazy:     r.stats.lazy.Load(),
		Blobs:    r.stats.blobs.Load(),
		Objects:  r.stats.objects.Load(),
		Barriers: r.stats.barriers.Load(),
		SyncTime: time.Duration(r.stats.syncNanos.Load()),

		Integrations: r.stats.integrations.Load(),
		FastForwards: r.stats.ffs.Load(),
		Merges:       r.stats.merges.Load(),
		Conflicts:    r.stats.conflicts.Load(),
		Copied:       r.stats.copied.Load(),
	}
}

// Watch returns a channel that receives a value after commits, once they
// are written to the repository (so a peer told to fetch finds them:
// within about FlushDelay of the commit). Sends are coalesced: the channel holds at most one pending notification, and a
// slow reader sees one value for many commits. The channel is never closed.
func (r *Repo) Watch() <-chan struct{} {
	c := make(chan struct{}, 1)
	r.mu.Lock()
	r.watchers = append(r.watchers, c)
	r.mu.Unlock()
	return c
}

func (r *Repo) notify() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.watchers {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Close stops accepting updates and releases the repository. Updates
// waiting for a commit fail with ErrClosed. Close does not wait for Serve;
// cancel its context first.
func (r *Repo) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.closed)
		r.serveMu.Lock() // wait for a running batch to finish
		defer r.serveMu.Unlock()
		// A clean close leaves git complete and the journal empty, and
		// removes the packs consolidations replaced (no reader is left).
		err = r.flush()
		if err == nil {
			err = r.checkpoint()
		}
		err = errors.Join(err, r.w.waitMerge())
		r.w.dropRetired(time.Now().Add(retireAfter))
		err = errors.Join(err, r.closeFiles())
	})
	return err
}

func (r *Repo) closeFiles() error {
	errs := []error{r.store.Close(), r.dirF.Close()}
	if r.packs != nil {
		r.packs.close()
	}
	if r.j != nil {
		errs = append(errs, r.j.close())
	}
	return errors.Join(errs...)
}

// replay restores what the journal's live records hold (the objects of
// commits acknowledged since the last checkpoint, and the branch), then
// checkpoints.
func (r *Repo) replay() error {
	if r.j == nil {
		return nil
	}
	recs, err := r.j.records()
	if err != nil || len(recs) == 0 {
		return err
	}
	for _, rec := range recs {
		if len(rec.blobs) > 0 && r.opts.RestoreBlob == nil {
			return fmt.Errorf("the journal holds attached blobs and Options.RestoreBlob is nil")
		}
		// A commit's blobs come back before the commit counts as applied.
		for _, b := range rec.blobs {
			if err := r.opts.RestoreBlob(b.info, b.data); err != nil {
				return fmt.Errorf("restore blob %s of commit %s: %w", b.info.Hash(), rec.head, err)
			}
		}
		if rec.isOps {
			r.replayOps = append(r.replayOps, rec)
			continue
		}
		// A commit record holds every update applied before it was
		// written: the operations records before it too.
		r.replayOps = nil
		for _, o := range rec.objs {
			if o.loose {
				e, err := looseToEntry(o.file, r.w.zw)
				if err != nil {
					return fmt.Errorf("replay object %s: %w", o.id, err)
				}
				o = journalObj{id: o.id, file: e}
			}
			r.w.add(o)
		}
	}
	// Packs written since the last checkpoint may be torn: drop them, the
	// records hold their objects.
	if err := cleanPacks(r.gitDir, true); err != nil {
		return err
	}
	// A pack holds the bases of its deltas; a delta whose base is in no
	// replayed record (never the case for records this version writes)
	// is stored whole.
	for i, o := range r.w.pending {
		t, _, n, ok := entryHeader(o.file)
		if !ok || t != objRefDelta || len(o.file) < n+20 || r.w.has(plumbing.Hash(o.file[n:n+20])) {
			continue
		}
		full, err := r.undelta(plumbing.Hash(o.file[n:n+20]), o.file[n+20:])
		if err != nil {
			return fmt.Errorf("replay object %s: %w", o.id, err)
		}
		r.w.pending[i].file = full
	}
	if err := r.w.flush(false); err != nil {
		return err
	}
	head := recs[len(recs)-1].head // an operations record's is the commit it applies to
	r.log.Info("meta: replayed commit journal", "records", len(recs), "head", head, "operations", len(r.replayOps))
	if len(r.replayOps) > 0 {
		// Open applies the operations on head and commits them; the
		// records stay live until that commit is durable.
		if head.IsZero() {
			return nil // the first updates of a new repository
		}
		return r.moveRef(head)
	}
	return r.durableRef(head)
}

// commitReplayed applies the operations records replay found on the
// loaded snapshot, as the logged updates they are (lazy state whose
// operations are all logged), commits them and checkpoints. An operation
// that fails (it succeeded on the same state before the crash, so only a
// damaged record or a bug) is reported by Problems and skipped.
func (r *Repo) commitReplayed() error {
	recs := r.replayOps
	r.replayOps = nil
	base := r.snap.Load()
	tx := &Tx{root: base.root, count: base.count}
	var msgs []string
	var ops []byte
	for _, rec := range recs {
		ops = append(ops, rec.ops...)
		if rec.head != base.head {
			r.problem("", fmt.Errorf("journal: operations made on commit %s replayed on %s", rec.head, base.head))
		}
		ups, err := parseOps(rec.ops)
		if err != nil {
			r.problem("", fmt.Errorf("journal: %w", err))
			continue
		}
		for _, u := range ups {
			msgs = append(msgs, u.msg)
			for _, o := range u.ops {
				if err := o.apply(tx); err != nil {
					r.problem(o.path, fmt.Errorf("journal: replay %q: %w", u.msg, err))
				}
			}
		}
	}
	tx.done = true
	if len(msgs) > 0 {
		r.snap.Store(&Snapshot{root: tx.root, count: tx.count, head: base.head, gen: base.gen})
		r.lazy = lazyState{objs: tx.objs, msgs: msgs, ops: ops, opsLogged: len(ops), since: time.Now()}
		if err := r.commitLazy(); err != nil {
			return err
		}
	}
	return r.checkpoint() // makes the commit's record durable, then retires every record
}

// undelta rebuilds the pack entry of a reference delta (zdelta, the
// compressed delta) against base, read from the repository.
func (r *Repo) undelta(base plumbing.Hash, zdelta []byte) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(zdelta))
	if err != nil {
		return nil, err
	}
	d, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	bo, err := r.store.EncodedObject(plumbing.AnyObject, base)
	if err != nil {
		return nil, fmt.Errorf("read delta base %s: %w", base, err)
	}
	rd, err := bo.Reader()
	if err != nil {
		return nil, err
	}
	src, err := io.ReadAll(rd)
	rd.Close()
	if err != nil {
		return nil, err
	}
	data, err := applyDelta(src, d)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	return encodeEntry(&buf, r.w.zwBig, byte(bo.Type()), data)
}

// AttachesBlobs reports whether Tx.AttachBlob works in this Repo's
// updates: Options.RestoreBlob is set, the journal is on and at least
// minAttachJournal bytes (in a smaller one, records that carry blobs would
// checkpoint, a syncfs, on nearly every commit), and a checkpoint (syncfs
// on Linux) makes blob files on the repository's file system durable.
func (r *Repo) AttachesBlobs() bool {
	return r.opts.RestoreBlob != nil && r.j != nil && r.j.size >= minAttachJournal && syncfsCoversBlobs
}

// minAttachJournal is the smallest journal that takes attached blobs.
const minAttachJournal = 4 << 20

// UpdateLazy is Update without the wait for durability: fn is applied and
// committed in order with every other update, the new snapshot is
// published, and UpdateLazy returns before the commit's journal record is
// made durable. The record becomes durable with the next durable batch
// (any Update that returns nil, even one that changes nothing, makes every
// update before it durable), after FlushDelay, on Sync, and on Close. A
// crash before that loses the lazy update whole, never in part, and never
// a lazy update without the ones before it. fs uses it for create, whose
// name the close after it makes durable.
func (r *Repo) UpdateLazy(ctx context.Context, msg string, fn func(tx *Tx) error) error {
	return r.send(ctx, &request{lazy: true, ctx: ctx, msg: msg, fn: fn, reply: make(chan error, 1)})
}

// Update runs fn inside the actor against the latest state, then commits.
// Concurrent updates are grouped into one git commit whose message joins
// their msgs. Update returns once that commit is durable and the new
// snapshot published. If fn returns an error (or panics) nothing of it is
// applied and Update returns that error. An fn that changes nothing makes
// no commit. The ctx bounds the wait: when it ends first Update returns
// ctx.Err(), and the update may or may not still be committed. fn must not
// call Update (the actor would wait for itself) and must not keep tx.
func (r *Repo) Update(ctx context.Context, msg string, fn func(tx *Tx) error) error {
	return r.send(ctx, &request{ctx: ctx, msg: msg, fn: fn, reply: make(chan error, 1)})
}

// UpdateLogged is Update made durable without its commit: fn is applied
// in order with every other update and the new snapshot published, then
// the operations fn made (and those of the lazy updates before it, and the
// blobs they attached) are appended to the journal as one operations
// record, and UpdateLogged returns once that record is durable. The git
// commit that holds the update is made later, with the lazy updates: after
// FlushDelay, on Sync, on Close, or with the next Update's commit (so Head
// and stock git readers see it up to 10 FlushDelays later). A replay after
// a crash applies the operations again on the commit they were made on
// and commits them. So a close of a small file costs the journal's
// barrier and no tree encoding or hashing: the trees of many updates are
// encoded once, in the flush's commit. Without a journal it is Update.
func (r *Repo) UpdateLogged(ctx context.Context, msg string, fn func(tx *Tx) error) error {
	return r.send(ctx, &request{logged: r.j != nil, ctx: ctx, msg: msg, fn: fn, reply: make(chan error, 1)})
}

func (r *Repo) send(ctx context.Context, q *request) error {
	if r.serveMu.TryLock() {
		// Nobody is committing: run the batch on this goroutine (flat
		// combining) instead of waking the actor and waiting to be woken:
		// on a FUSE thread those two hand-offs cost more than a small
		// commit's work.
		if r.serving {
			r.runInline(q)
			return <-q.reply
		}
		r.serveMu.Unlock()
	}
	select {
	case r.reqs <- q:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.closed:
		return ErrClosed
	}
	select {
	case err := <-q.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.closed:
		return ErrClosed
	}
}

// Sync returns once every commit acknowledged before it is durable (lazy
// ones too) and visible to git readers of the repository (stock git,
// fetches): the branch and objects of a commit are written just after its
// callers are answered, so a reader of the repository may briefly see the
// commit before.
func (r *Repo) Sync(ctx context.Context) error {
	return r.send(ctx, &request{sync: true, ctx: ctx, fn: func(*Tx) error { return nil }, reply: make(chan error, 1)})
}

// Serve is the actor loop (a suture.Service): it takes queued updates,
// applies them, commits each batch and answers the callers. It returns
// when ctx ends or the Repo is closed.
func (r *Repo) Serve(ctx context.Context) error {
	batch := make([]*request, 0, r.opts.MaxBatch)
	r.serveMu.Lock()
	if r.flushT == nil {
		r.flushT = time.NewTimer(time.Hour)
	}
	r.flushT.Stop()
	r.flushArmed = false
	r.serving = true
	flushC := r.flushT.C
	r.serveMu.Unlock()
	defer func() {
		r.serveMu.Lock()
		r.serving = false
		r.flushT.Stop()
		r.flushArmed = false
		r.serveMu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			r.serveMu.Lock()
			select {
			case <-r.closed: // Close wrote everything and closed the files
			default:
				if err := r.flush(); err != nil {
					r.log.Error("meta: write committed objects", "err", err)
				}
			}
			r.serveMu.Unlock()
			return ctx.Err()
		case <-r.closed:
			return ErrClosed
		case <-flushC:
			r.serveMu.Lock()
			r.flushArmed = false
			select {
			case <-r.closed:
			default:
				// Lazy updates younger than FlushDelay wait on: the
				// close after a create commits it with the contents.
				r.flushAndNotify(false)
				if r.unflushed() {
					r.armFlush()
				}
			}
			r.serveMu.Unlock()
			continue
		case q := <-r.reqs:
			batch = append(batch[:0], q)
		}
		r.serveMu.Lock()
		err := r.runQueued(batch)
		r.serveMu.Unlock()
		r.drainDurable()
		clear(batch[:cap(batch)])
		if err != nil {
			return err
		}
	}
}

// runInline runs q, after the requests queued before it, on the caller's
// goroutine (serveMu held; runInline releases it) and answers q.
func (r *Repo) runInline(q *request) {
	defer r.drainDurable() // after the unlock: the next batch may run meanwhile
	defer r.serveMu.Unlock()
	var buf [4]*request
	batch := buf[:0]
drain:
	for len(batch) < r.opts.MaxBatch-1 {
		select {
		case o := <-r.reqs:
			batch = append(batch, o)
		default:
			break drain
		}
	}
	if err := r.runQueued(append(batch, q)); err != nil && len(q.reply) == 0 {
		q.reply <- err
	}
}

// runQueued runs batch, and the requests queued after it while it fits
// MaxBatch, as batches; then arms or stops the flush timer. serveMu is
// held. It returns an error only when the repository is closed; the
// requests not run then are answered ErrClosed.
func (r *Repo) runQueued(batch []*request) error {
drain:
	for len(batch) < r.opts.MaxBatch {
		select {
		case q := <-r.reqs:
			batch = append(batch, q)
		default:
			break drain
		}
	}
	for len(batch) > 0 {
		rest, err := r.runBatchLocked(batch)
		if err != nil {
			for _, q := range batch {
				if len(q.reply) == 0 {
					q.reply <- err
				}
			}
			return err
		}
		// Requests the batch's bound on attached blobs left for the
		// next commit.
		batch = rest
	}
	if r.unflushed() {
		r.armFlush()
	} else if r.flushArmed {
		r.flushT.Stop()
		r.flushArmed = false
	}
	return nil
}

// armFlush arms the flush timer (serveMu held): it fires once no batch
// ran for FlushDelay, but at most flushLag·FlushDelay after the first
// batch that left something waiting (dirty), so that a steady stream of
// commits makes one pack per flushLag·FlushDelay rather than one per
// FlushDelay.
func (r *Repo) armFlush() {
	if r.flushT == nil {
		return // no Serve loop ran yet: Close writes everything
	}
	now := time.Now()
	if !r.flushArmed {
		r.dirty = now
	}
	d := min(r.opts.FlushDelay, r.dirty.Add(flushLag*r.opts.FlushDelay).Sub(now))
	r.flushT.Reset(d)
	r.flushArmed = true
}

// flushLag bounds, in FlushDelays, how long objects wait to be written
// while the actor is never idle for a FlushDelay.
const flushLag = 10

// runBatchLocked applies, commits and answers one batch, or the part of it
// that fits the bound on attached blobs, and returns the rest. It returns
// an error only when the repository is closed.
func (r *Repo) runBatchLocked(batch []*request) (rest []*request, _ error) {
	select {
	case <-r.closed:
		return nil, ErrClosed
	default:
	}
	if perr := r.fatal.Load(); perr != nil {
		for _, q := range batch {
			q.reply <- *perr
		}
		return nil, nil
	}
	// Integrate requests run alone, in order with the updates around them.
	full := batch
	for i, q := range batch {
		if q.integ == nil {
			continue
		}
		if i == 0 {
			r.runIntegrate(q)
			return full[1:], nil
		}
		batch = batch[:i]
		rest = full[i:]
		break
	}
	// The published snapshot may hold lazy updates not yet committed
	// (r.lazy): this batch's commit includes them.
	base := r.snap.Load()
	root, count := base.root, base.count
	// What the batch adds to the lazy state is appended past its ends
	// (the lazy state's lengths change only when it is replaced), and its
	// objects go into the lazy map: a failed commit leaves there only
	// blobs nothing refers to, written with the next one.
	if r.lazy.objs == nil {
		r.lazy.objs = make(map[plumbing.Hash][]byte)
	}
	objs := r.lazy.objs
	msgs := r.lazy.msgs
	blobs := r.lazy.blobs
	ops := r.lazy.ops
	blobBytes := r.lazy.blobBytes
	var syncs []*request
	lazy := true    // every applied update is lazy or logged
	logged := false // some applied update is logged
	applied := batch[:0:0]
	attach := r.AttachesBlobs()
	logOps := r.j != nil
	for i, q := range batch {
		if blobBytes >= r.maxBatchBlobBytes() {
			rest = full[i:]
			break
		}
		if err := q.ctx.Err(); err != nil {
			q.reply <- err
			continue
		}
		tx := &Tx{root: root, count: count, attach: attach, log: logOps}
		err := callFn(q.fn, tx)
		tx.done = true
		if err != nil {
			q.reply <- err
			continue
		}
		if q.sync {
			syncs = append(syncs, q)
			continue
		}
		applied = append(applied, q)
		lazy = lazy && (q.lazy || q.logged)
		logged = logged || q.logged
		if !tx.changed {
			continue
		}
		root, count = tx.root, tx.count
		msgs = append(msgs, q.msg)
		if logOps {
			ops = appendOp(ops, opMsg, q.msg)
			ops = append(ops, tx.ops...)
		}
		blobs = append(blobs, tx.blobs...)
		blobBytes += tx.blobBytes
		for h, d := range tx.objs {
			objs[h] = d
		}
	}
	// A logged update needs every update before it in a record, even
	// when it changed nothing itself (fsyncdir after lazy creates).
	needLog := logged && len(ops) > r.lazy.opsLogged
	keep := lazy && r.j != nil && len(msgs) < r.opts.MaxBatch && blobBytes < r.maxBatchBlobBytes()
	var opsRec []byte
	if keep && needLog {
		opsRec = r.j.encodeOps(base.head, ops[r.lazy.opsLogged:], blobs[r.lazy.blobsLogged:])
		// A record the journal has no room for: commit now instead
		// (writeCommit's slow path makes room).
		keep = r.j.fits(len(opsRec))
	}
	var err error
	switch {
	case lazy && len(msgs) == len(r.lazy.msgs) && !needLog:
		// Nothing new to commit or log (a logged update that changed
		// nothing waits for the records written before it).
	case keep:
		// Only lazy and logged updates: publish them now and commit them
		// with the next batch (a create and the write after it become
		// one commit), or when the actor flushes; an operations record
		// makes the logged ones durable meanwhile.
		since := r.lazy.since
		if since.IsZero() {
			since = time.Now()
		}
		l := lazyState{objs: objs, msgs: msgs, blobs: blobs, blobBytes: blobBytes, since: since,
			ops: ops, opsLogged: r.lazy.opsLogged, blobsLogged: r.lazy.blobsLogged}
		if opsRec != nil {
			if _, err = r.j.write(opsRec); err != nil {
				err = r.failJournal("writing the journal", err)
				break
			}
			l.opsLogged, l.blobsLogged = len(ops), len(blobs)
		}
		r.lazy = l
		r.snap.Store(&Snapshot{root: root, count: count, head: base.head, gen: base.gen})
	case len(msgs) > 0:
		// With a journal the record is written here and made durable
		// after serveMu is released (drainDurable). Blobs already in
		// operations records are not repeated.
		err = r.commit(base, root, count, objs, msgs, blobs[r.lazy.blobsLogged:], lazy || r.j != nil)
		if err != nil {
			r.log.Error("meta: commit failed", "err", err)
		} else {
			r.stats.updates.Add(uint64(len(msgs)))
			r.stats.blobs.Add(uint64(len(blobs)))
			r.lazy = lazyState{}
		}
	}
	// The durable and logged updates (and one that changed nothing makes
	// the lazy ones before it durable) are answered once the journal is
	// durable up to what is written now.
	wait := err == nil && (!lazy || logged) && r.j != nil && r.j.unsynced()
	lsn := int64(0)
	if wait {
		lsn = r.j.written.Load()
	}
	for _, q := range applied {
		if q.lazy && err == nil {
			r.stats.lazy.Add(1)
		}
		if wait && !q.lazy {
			r.waitMu.Lock()
			r.waiters = append(r.waiters, waiter{q, lsn})
			r.waitMu.Unlock()
			continue
		}
		q.reply <- err
	}
	if len(syncs) > 0 || r.w.pendingBytes > maxPendingBytes || len(r.w.pending) > maxPendingObjects {
		ferr := r.flushAndNotify(len(syncs) > 0)
		for _, q := range syncs {
			q.reply <- ferr
		}
	}
	return rest, nil
}

// maxBatchBlobBytes bounds the attached blob bytes of one commit (so of
// one journal record): 4 MiB, or a quarter of a smaller journal.
func (r *Repo) maxBatchBlobBytes() int {
	n := 4 << 20
	if r.j != nil {
		n = min(n, int(r.j.size/4))
	}
	return n
}

// drainDurable makes the journal durable up to the records of the
// waiting updates and answers them; the goroutine that ran a batch calls
// it after releasing serveMu. A barrier that fails makes the repository
// unusable (fatal).
func (r *Repo) drainDurable() {
	r.waitMu.Lock()
	none := len(r.waiters) == 0
	r.waitMu.Unlock()
	if none {
		return
	}
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.waitMu.Lock()
	ws := r.waiters
	r.waiters = nil
	r.waitMu.Unlock()
	if len(ws) == 0 {
		return // a barrier that covered them ran while this one waited
	}
	var err error
	if perr := r.fatal.Load(); perr != nil {
		err = *perr
	} else if r.j.durable.Load() < ws[len(ws)-1].lsn {
		err = r.barrier()
	}
	for _, w := range ws {
		w.q.reply <- err
	}
}

// syncJournal makes the records written so far durable (serveMu held).
func (r *Repo) syncJournal() error {
	if r.j == nil || !r.j.unsynced() {
		return nil
	}
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	if perr := r.fatal.Load(); perr != nil {
		return *perr
	}
	if !r.j.unsynced() {
		return nil // drainDurable's barrier covered them
	}
	return r.barrier()
}

// barrier makes the journal durable up to what is written (syncMu held)
// and counts it. Its failure is fatal (failJournal).
func (r *Repo) barrier() error {
	start := time.Now()
	if err := r.j.sync(); err != nil {
		return r.failJournal("the journal's barrier", err)
	}
	r.stats.barriers.Add(1)
	r.stats.syncNanos.Add(int64(time.Since(start)))
	return nil
}

// failJournal makes a failed journal write or barrier fatal: whether the
// records reached the disk is unknown, and a retried barrier could
// succeed over lost pages, so every update fails until a restart replays
// the journal. It returns the error updates get.
func (r *Repo) failJournal(what string, err error) error {
	err = fmt.Errorf("meta: %w", err)
	r.fatal.CompareAndSwap(nil, &err)
	r.log.Error("meta: "+what+" failed; updates fail until the node restarts", "err", err)
	return err
}

// Bounds on what waits in memory (and in the journal) to be written as
// loose objects.
const (
	maxPendingBytes   = 32 << 20
	maxPendingObjects = 20000
)

func (r *Repo) unflushed() bool {
	return len(r.w.pending) > 0 || !r.pendingRef.IsZero() || r.j != nil && r.j.unsynced() || len(r.lazy.msgs) > 0
}

// commitLazy commits the lazy updates that wait for a batch.
func (r *Repo) commitLazy() error {
	if len(r.lazy.msgs) == 0 {
		return nil
	}
	base := r.snap.Load()
	l := r.lazy
	if err := r.commit(base, base.root, base.count, l.objs, l.msgs, l.blobs[l.blobsLogged:], true); err != nil {
		return err
	}
	r.stats.updates.Add(uint64(len(l.msgs)))
	r.stats.blobs.Add(uint64(len(l.blobs)))
	r.lazy = lazyState{}
	return nil
}

func callFn(fn func(*Tx) error, tx *Tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("meta: update panicked: %v\n%s", v, debug.Stack())
		}
	}()
	return fn(tx)
}

// commit writes the batch's objects, trees and commit and the attached
// blobs, makes them durable with one barrier (none when lazy: the record
// is written, and a later barrier makes it durable), moves the branch
// atomically, and publishes.
func (r *Repo) commit(base *Snapshot, root *node, count int, objs map[plumbing.Hash][]byte, msgs []string,
	blobs []journalBlob, lazy bool) error {
	gen, err := r.snapGen(base)
	if err != nil {
		return fmt.Errorf("meta: commit: %w", err)
	}
	gen++
	msg := commitMessage(msgs)
	_, err = r.writeCommit(commitReq{
		root: root, count: count, objs: objs, blobs: blobs, lazy: lazy, gen: gen,
		logged: r.lazy.opsLogged > 0,
		encode: func(tree plumbing.Hash) []byte { return r.encodeCommit(tree, base.head, gen, msg) },
	})
	return err
}

// snapGen returns the generation of s's head (0 when it has none).
func (r *Repo) snapGen(s *Snapshot) (uint64, error) {
	if s.head.IsZero() || s.gen > 0 {
		return s.gen, nil
	}
	c, err := r.graph.get(r.ownGetter(), s.head) // a commit written before generations
	if err != nil {
		return 0, err
	}
	return c.gen, nil
}

// commitReq is what writeCommit writes.
type commitReq struct {
	root  *node
	count int
	objs  map[plumbing.Hash][]byte // blobs to write
	// copied holds objects of any type taken from a peer, written first.
	copied []rawObject
	blobs  []journalBlob
	lazy   bool
	// encode returns the commit object for the root tree, of generation
	// gen. When it is nil, the branch moves to the existing commit head
	// (a fast-forward), whose tree root must be.
	encode func(tree plumbing.Hash) []byte
	head   plumbing.Hash
	gen    uint64
	// tree, when set, is the tree id root must encode to (checked before
	// anything is journaled).
	tree plumbing.Hash
	// logged is set when the commit holds updates that operations
	// records made durable: it never retires those records (a
	// checkpoint) before it is durable itself.
	logged bool
}

// rawObject is a whole git object.
type rawObject struct {
	id   plumbing.Hash
	typ  plumbing.ObjectType
	data []byte
}

// writeCommit writes a commit (or moves to one, see commitReq): its
// objects, trees and commit object are journaled with one barrier (none
// when lazy), the branch moves (at the next flush), and the new snapshot
// is published. Nothing of it remains when it fails.
func (r *Repo) writeCommit(c commitReq) (*Snapshot, error) {
	w := r.w
	// A commit of logged updates takes the slow path where another would
	// checkpoint first: a checkpoint would retire the operations records
	// before this commit's record is durable.
	slow := r.j == nil || c.logged && r.j.broken
	if r.j != nil && r.j.broken && !slow {
		if err := r.checkpoint(); err != nil {
			return nil, fmt.Errorf("meta: commit: %w", err)
		}
	}
	ok := false
	first := len(w.pending) // objects of earlier commits wait there too
	defer func() {
		if !ok {
			// Only objects of journaled commits may be flushed (see
			// objWriter.flush): forget this commit's.
			w.drop(first)
			if r.j != nil {
				r.j.broken = true
			}
		}
	}()
	for _, o := range c.copied {
		if err := w.write(o.id, o.typ.String(), o.data); err != nil {
			return nil, fmt.Errorf("meta: commit: %w", err)
		}
	}
	for h, d := range c.objs {
		if err := w.write(h, "blob", d); err != nil {
			return nil, fmt.Errorf("meta: commit: %w", err)
		}
	}
	root, err := w.writeTrees(c.root)
	if err != nil {
		return nil, fmt.Errorf("meta: commit: %w", err)
	}
	if !c.tree.IsZero() && root.oid != c.tree {
		return nil, fmt.Errorf("meta: commit: tree encodes to %s, want %s", root.oid, c.tree)
	}
	head := c.head
	var info commitInfo
	if c.encode != nil {
		data := c.encode(root.oid)
		head = objectHash("commit", data)
		if err := w.write(head, "commit", data); err != nil {
			return nil, fmt.Errorf("meta: commit: %w", err)
		}
		if info, err = parseCommit(data); err != nil {
			return nil, fmt.Errorf("meta: commit: encoded a bad commit: %w", err)
		}
	}
	mine := w.pending[first:]
	r.stats.objects.Add(uint64(len(mine)))
	journaled := false
	if !slow {
		rec := r.j.encodeRecord(head, mine, c.blobs)
		if !r.j.fits(len(rec)) && !c.logged {
			// The checkpoint writes and syncs every pending object,
			// this commit's too (through temp files: they are in no
			// record), and the attached blobs' files (its syncfs covers
			// the blob store), so its record needs neither. (A commit
			// of logged updates takes the slow path below instead.)
			if err := r.checkpointFlush(false); err != nil {
				return nil, fmt.Errorf("meta: commit: %w", err)
			}
			rec = r.j.encodeRecord(head, nil, nil)
		}
		if r.j.fits(len(rec)) {
			if _, err := r.j.write(rec); err != nil {
				return nil, fmt.Errorf("meta: commit: %w", err)
			}
			if !c.lazy {
				if err := r.syncJournal(); err != nil {
					return nil, fmt.Errorf("meta: commit: %w", err)
				}
			}
			// The objects and the ref are written later (flushAndNotify),
			// without a barrier: replay restores them after a crash.
			r.pendingRef = head
			journaled = true
		}
	}
	if !journaled {
		// Every pending object (through temp files) and the branch are
		// made durable and the journal's records retired.
		if err := w.flush(false); err != nil {
			return nil, fmt.Errorf("meta: commit: %w", err)
		}
		syncStart := time.Now()
		if err := r.durableRef(head); err != nil {
			return nil, fmt.Errorf("meta: commit: %w", err)
		}
		r.stats.barriers.Add(1)
		r.stats.syncNanos.Add(int64(time.Since(syncStart)))
	}
	ok = true
	if c.encode != nil {
		r.stats.commits.Add(1)
		r.graph.add(head, info)
	}
	s := &Snapshot{root: root, count: c.count, head: head, gen: c.gen}
	r.snap.Store(s)
	return s, nil
}

// flushAndNotify writes the loose objects of journaled commits and moves
// the branch, then notifies watchers (who may fetch the new commits from
// the repository). It runs when the actor has been idle for FlushDelay,
// when too much waits, on Sync and on stop: off the commit latency path.
//
// With all false, lazy updates that have waited less than FlushDelay stay
// uncommitted (the next batch takes them).
func (r *Repo) flushAndNotify(all bool) error {
	if !r.unflushed() {
		return nil
	}
	flush := r.flush
	if !all && len(r.lazy.msgs) > 0 && time.Since(r.lazy.since) < r.opts.FlushDelay {
		flush = r.flushCommitted
	}
	if err := flush(); err != nil {
		// The commits are durable in the journal; the next flush retries,
		// Open replays.
		r.log.Error("meta: write committed objects", "err", err)
		return fmt.Errorf("meta: write committed objects: %w", err)
	}
	r.notify()
	return nil
}

// flush makes lazy commits durable, writes pending objects and then moves
// the branch to pendingRef. (Objects are written in place only once their
// records are durable: replay rewrites what a crash tears, but only for
// records it finds.)
func (r *Repo) flush() error {
	if err := r.commitLazy(); err != nil {
		return err
	}
	return r.flushCommitted()
}

// flushCommitted is flush without committing waiting lazy updates.
func (r *Repo) flushCommitted() error {
	if err := r.syncJournal(); err != nil {
		return err
	}
	if err := r.w.flush(r.j != nil); err != nil {
		return err
	}
	if !r.pendingRef.IsZero() {
		if err := r.moveRef(r.pendingRef); err != nil {
			return err
		}
		r.pendingRef = plumbing.ZeroHash
	}
	// Merging packs costs the actor time, but here it is idle or between
	// batches, off the commit latency path; objects stay readable
	// throughout.
	return r.w.consolidate()
}

// moveRef points the branch at head (temp file, then rename). It makes
// nothing durable.
func (r *Repo) moveRef(head plumbing.Hash) error {
	tmp, err := r.writeRefTemp(head)
	if err != nil {
		return err
	}
	return r.renameRef(tmp)
}

func (r *Repo) writeRefTemp(head plumbing.Hash) (string, error) {
	tmp := filepath.Join(r.gitDir, "delugefs-ref.tmp")
	if err := os.WriteFile(tmp, []byte(head.String()+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write ref: %w", err)
	}
	return tmp, nil
}

func (r *Repo) renameRef(tmp string) error {
	ref := filepath.Join(r.gitDir, filepath.FromSlash(r.branch))
	if err := os.Rename(tmp, ref); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("move %s: %w", r.branch, err)
		}
		// First commit on a repository whose refs/heads is missing.
		if err := os.MkdirAll(filepath.Dir(ref), 0o755); err != nil {
			return fmt.Errorf("move %s: %w", r.branch, err)
		}
		if err := os.Rename(tmp, ref); err != nil {
			return fmt.Errorf("move %s: %w", r.branch, err)
		}
	}
	r.w.written = append(r.w.written, ref, filepath.Dir(ref))
	return nil
}

// durableRef makes every object written so far and the temp ref durable,
// then renames the temp ref over the branch and fsyncs its directory, then
// (with a journal) starts a new epoch so that no older record can move the
// branch back on replay.
func (r *Repo) durableRef(head plumbing.Hash) error {
	tmp, err := r.writeRefTemp(head)
	if err != nil {
		return err
	}
	if err := r.syncAll(tmp); err != nil {
		return err
	}
	if err := r.renameRef(tmp); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(filepath.Join(r.gitDir, filepath.FromSlash(r.branch)))); err != nil {
		return err
	}
	r.w.written = r.w.written[:0]
	r.pendingRef = plumbing.ZeroHash // head descends from it
	return r.retireRecords()
}

// syncAll makes every file written so far on the repository's file
// system durable with one syncfs (path, written last, forces it): the
// objects, and the blob files of the records about to be retired, which
// Options.BeforeCheckpoint writes first.
func (r *Repo) syncAll(path string) error {
	if r.opts.BeforeCheckpoint != nil {
		if err := r.opts.BeforeCheckpoint(); err != nil {
			return fmt.Errorf("before checkpoint: %w", err)
		}
	}
	r.w.written = append(r.w.written, path)
	return r.w.syncObjects(r.dirF)
}

// retireRecords starts a new journal epoch (call it once what every
// record holds is durable by other means).
func (r *Repo) retireRecords() error {
	if r.j == nil {
		return nil
	}
	if err := r.j.newEpoch(); err != nil {
		return err
	}
	r.j.broken = false
	return nil
}

// checkpoint makes everything written so far durable (loose objects and the
// branch) with one barrier, and starts a new journal epoch.
func (r *Repo) checkpoint() error { return r.checkpointFlush(r.j != nil) }

// checkpointFlush is checkpoint with the flush mode given: direct only when
// every pending object is in a journal record.
func (r *Repo) checkpointFlush(direct bool) error {
	if direct {
		if err := r.syncJournal(); err != nil {
			return err
		}
	}
	if err := r.w.flush(direct); err != nil {
		return err
	}
	if !r.pendingRef.IsZero() {
		if err := r.moveRef(r.pendingRef); err != nil {
			return err
		}
		r.pendingRef = plumbing.ZeroHash
	}
	if err := r.syncAll(r.gitDir); err != nil {
		return err
	}
	return r.retireRecords()
}

// encodeCommit encodes a commit of this node: author Name <Email>,
// committer Name <NODEID@delugefs> (the author without a NodeID), the
// message msg (ending in a newline) and the generation trailer.
func (r *Repo) encodeCommit(tree, parent plumbing.Hash, gen uint64, msg string) []byte {
	var parents []plumbing.Hash
	if !parent.IsZero() {
		parents = []plumbing.Hash{parent}
	}
	when := strconv.FormatInt(max(0, min(r.opts.Now().Unix(), maxCommitSec)), 10) + " +0000"
	name := sanitizeSig(r.opts.Name)
	author := name + " <" + sanitizeSig(r.opts.Email) + "> " + when
	committer := author
	if r.opts.NodeID != "" {
		committer = name + " <" + r.opts.NodeID + "@delugefs> " + when
	}
	return encodeCommitObject(tree, parents, author, committer, msg, gen)
}

// encodeCommitObject encodes a commit: msg must end in a newline; the
// generation trailer is appended as the last paragraph.
func encodeCommitObject(tree plumbing.Hash, parents []plumbing.Hash, author, committer, msg string, gen uint64) []byte {
	var b strings.Builder
	b.WriteString("tree " + tree.String() + "\n")
	for _, p := range parents {
		b.WriteString("parent " + p.String() + "\n")
	}
	b.WriteString("author " + author + "\n")
	b.WriteString("committer " + committer + "\n")
	b.WriteString("\n")
	b.WriteString(msg)
	b.WriteString("\n" + genTrailer + strconv.FormatUint(gen, 10) + "\n")
	return []byte(b.String())
}

func sanitizeSig(s string) string {
	return strings.Map(func(c rune) rune {
		if c == '<' || c == '>' || c == '\n' || c == 0 {
			return -1
		}
		return c
	}, s)
}

// Bounds on commit messages.
const (
	maxMsgLen   = 200 // bytes of one update's message
	maxMsgLines = 50  // updates listed in a grouped commit's body
)

// commitMessage joins the batch's messages: one message is the whole
// commit message; several give a subject "first (+N more)" and a body
// listing up to maxMsgLines of them.
func commitMessage(msgs []string) string {
	clean := func(s string) string {
		s = strings.Map(func(c rune) rune {
			if c == '\n' || c == '\r' || c == 0 {
				return ' '
			}
			return c
		}, s)
		if len(s) > maxMsgLen {
			s = s[:maxMsgLen] + "..."
		}
		if s == "" {
			s = "update"
		}
		return s
	}
	if len(msgs) == 1 {
		return clean(msgs[0]) + "\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (+%d more)\n\n", clean(msgs[0]), len(msgs)-1)
	for i, m := range msgs {
		if i == maxMsgLines {
			fmt.Fprintf(&b, "... and %d more\n", len(msgs)-i)
			break
		}
		b.WriteString(clean(m) + "\n")
	}
	return b.String()
}
