// Package meta is the namespace of a DelugeFS node: a bare git repository
// (ROOT/meta.git) holding one git path per filesystem path, and the
// in-memory index built from it that serves getattr and readdir.
//
// # Layout in git
//
// A regular file's git blob is its manifest, a bencoded dictionary with the
// torrent info dictionary under "info" (so `git show HEAD:path` is a
// .torrent a stock client accepts) and the attributes beside it: "mode",
// "mtime" (unix ns), "uid", "gid", "xattr" (a dictionary, absent when
// empty). An empty file has no info and "length" 0. Files with any execute
// bit get git mode 100755, others 100644. A symlink is a git symlink (mode
// 120000, blob = target); its mode, owner and mtime are not stored (0777,
// 0, 0). Every directory's tree holds a marker blob ".delugefs" with the
// directory's mode, mtime, uid, gid and xattrs, so empty directories survive
// and trees are never empty.
//
// Names are arbitrary bytes except '/' and NUL (at most 255 bytes, paths at
// most 4096). Names that match ^\.*\.delugefs$ or ^\.*\.git$ (ASCII case
// ignored) are stored with one extra leading '.': ".git" is stored as
// "..git", "..git" as "...git", ".DelugeFS" as "..DelugeFS". The mapping is
// a bijection between user names and the git names it produces; git names
// it never produces (".git", ".delugefs" in another case) are refused on
// load.
//
// # Commits
//
// All writes go through Repo.Update: fn runs inside the actor (Serve)
// against the latest state through a Tx. Updates queued while a commit is
// being written are applied one after another and written as one commit
// (group commit) whose message joins theirs; an fn that fails or panics
// leaves no trace. When no batch is running, the caller runs the batch
// itself (its update after any queued before it) under the same lock the
// actor takes: flat combining, which saves the two goroutine hand-offs of
// a round trip through the actor (about 40 µs each way on a FUSE
// thread, which is locked to its OS thread); the actor keeps the flush
// timer and takes what arrives while a batch runs. A commit encodes the changed manifests, the trees on the
// changed paths and the commit object. Each directory's tree id is cached,
// so unchanged subtrees are never visited. A changed directory of at least
// 64 entries whose tree was written since Open keeps that tree's bytes and
// entry offsets, and its copies list the children changed since (Put,
// Remove, Rename; a subdirectory whose tree changes counts as changed),
// so its next tree is made by splicing in only those entries, in git
// order (a binary search each), and its reference delta (below) is made
// from the same edits: the cost is in the number of changed entries, plus
// one copy and one SHA-1 of the tree's bytes, which git's format requires
// (a commit into a directory of 100,000 entries takes about 9 ms, most of
// it that SHA-1 and copy, instead of 29 ms). A directory encodes its tree
// whole when it keeps no bytes: after Open, when Integrate built it, when
// it is smaller, or when more than 1,024 changes accumulated. The bytes
// kept cost about as much memory as the trees themselves (some 45 bytes
// an entry) for the large directories written since Open; nodes shared
// with published snapshots are never modified (a splice makes new bytes).
//
// Durability takes at most one fdatasync per durable commit: the commit's
// objects (as pack entries) and the new branch value are appended as one
// record to ROOT/meta.git/delugefs.journal, a pre-filled file (in memory
// until the barrier on Linux, which then writes the new blocks with one
// O_DIRECT|O_DSYNC pwrite instead of a buffered write and an fdatasync:
// about 5% more small files a second), the new
// Snapshot is published, and the batch's lock is released; then the
// goroutine that ran the batch fdatasyncs the journal and answers the
// callers whose records it covered. The barrier runs outside the lock
// (pipelined group commit): the next batch is applied and written while
// it runs, and one barrier then covers every record written before it
// began. So readers of the Snapshot may see an update a moment before it
// is durable (as with lazy updates); its caller is answered only after.
// A failed barrier is fatal: what reached the disk is unknown, and a
// retried fdatasync can succeed over pages the kernel dropped, so every
// update fails from then on until the node restarts and replays its
// journal (which may hold the failed updates: a failed close's data can
// still be there after the restart). The objects and the branch ref are written
// later, without any fsync, once the actor has been idle for
// Options.FlushDelay (10ms) but at most 10 FlushDelays after the first
// batch that left them waiting, when 20,000 objects or 32 MiB wait, on
// Sync, and when Serve stops.
//
// Objects are written as packs, never as loose files: each flush writes
// one pack (objects/pack/pack-<checksum>.pack and its version-2 .idx;
// temp file, rename, then the index). Trees and objects under 2 KiB are
// stored uncompressed, and a directory's tree whose previous version was
// written since the last flush is stored as a reference delta against it
// (chains of at most 50), so a commit into a directory of thousands of
// entries puts a few dozen bytes into the journal record and the pack,
// not the whole tree (replay puts every live record's objects into one
// pack, which thus holds every base). When more than 16 packs exist the
// flush starts a merge of the smaller ones, which runs beside updates on a
// goroutine of the lowest CPU priority (a later flush, or Close, retires
// what it replaced) (geometric: the packs left keep doubling
// in size), oldest first, each object once: streamed, entry by entry,
// from the old packs (read by pread through their indexes and checked
// against the CRCs they record) into the new pack file, whose SHA-1 is
// computed as it is written. Entries are copied as they are, except that
// a whole tree of at least 1 KiB (each flush writes each changed
// directory's tree whole once) is stored as a reference delta against
// the latest version of the same directory's tree (matched by its marker
// entry) written earlier in the merge, when the delta is at most half the
// tree: the merge replays delta chains as they pass and keeps the latest
// tree of each directory in a cache of at most 32 MiB (bases that left it
// are read back from the packs); a tree whose chain would pass 50 is
// stored as a delta against the directory's last tree written whole
// when that is at most an eighth of it, otherwise whole. History thus
// holds a delta per directory per flush, not a tree (200 flushes of 4
// directories of 1,000 files: 40 MB of packs become 3.4 MB). A merge holds a few dozen bytes per object in
// memory plus that cache (merging 105 MB of packs: 6 MB of heap), never
// the packs. It fsyncs the merged pack and its index before it retires the
// old ones, which stay on disk for 30 seconds for readers that listed
// them. Packs that are not self-contained (git gc's offset deltas, or a
// reference delta before its base) are left alone, so every base in a
// merged pack precedes its deltas. A reader that loaded a pack's index just before a merge
// removed the pack may fail one read (as with git repack) and must retry.
// Stock git reads everything (git fsck --strict passes); git gc may
// repack at any time the node is stopped. After a crash, Open removes
// temp files and packs without an index and, when the journal has live
// records, checks every pack's checksums and drops the torn ones (only a
// pack of live records can be torn) before it rewrites the records'
// objects. When the journal is full, a checkpoint writes
// everything, syncfs(2)'s the repository's filesystem (per-file fsync off
// Linux) and starts a new journal epoch. Open replays the live records:
// rewrites their objects, points the branch at the last record's commit
// and checkpoints, so a kill -9 or a power cut at any moment leaves the
// branch at a complete commit that includes every acknowledged update. A
// torn record (crash during the append) fails its CRC; its commit was
// never acknowledged. A commit too large for the journal takes the slow
// path: objects and temp ref, syncfs, rename, directory fsync. With
// Options.JournalSize < 0 every commit takes that path. Close writes
// everything and checkpoints, so a cleanly closed repository has no live
// journal records.
//
// Each commit's author is Options.Name and Email; its committer is
// "Name <NODEID@delugefs>" (Options.NodeID), so that a merge can name a
// conflict copy after the node that wrote the losing version. The last
// line of every commit message is a trailer "DelugeFS-Generation: N": 1
// for a commit without parents, otherwise 1 + the greatest generation of
// its parents (see Sync).
//
// # Lazy updates and attached blobs
//
// Repo.UpdateLazy applies its fn in order with every other update and
// publishes the new snapshot at once, but returns before anything is
// durable: the change waits in the published snapshot (Repo.Head stays at
// the last commit) and goes into the next batch's commit, so a create and
// the write that follows it become one commit and one barrier. A durable
// Update (even one that changes nothing) makes every update before it
// durable; so do Sync, Close, and the next flush (see above),
// (which commits waiting lazy updates, writes their journal record without
// a barrier, then fdatasyncs the journal). Records are replayed in order
// and a replay stops at the first one that fails its check, so a crash
// loses a suffix of the lazy updates, each whole, never one without those
// before it. A batch of lazy updates only (past MaxBatch or the blob bound)
// is committed with its record written but not synced: the next barrier
// covers it.
//
// # Logged updates
//
// Repo.UpdateLogged is durable when it returns, like Update, but without a
// commit: its fn is applied as a lazy update's is, and the operations its
// Tx made (each Put with its manifest, marker or target; Remove; Rename;
// and the update's message), with those of the lazy updates before it and
// the blobs they attached, are appended to the journal as one operations
// record, made durable by the batch's barrier as a commit's record is
// (pipelined and grouped the same way). The commit that holds them is
// made with the lazy updates: at the next flush, on Sync or Close, or with
// the next Update's commit. So a commit's cost (encoding and hashing the
// trees on the changed paths: about 90 µs for a file in a directory of
// 1,000, most of it the SHA-1 of the directory's tree) is paid once for
// all the updates of a flush instead of once per close. A commit's record
// covers every operations record before it; Open applies the operations
// records after the last commit's record, in order, on the commit they
// were made on (recorded in each), and commits them (an operation that
// fails there is a Problem and is skipped; it succeeded on the same state
// before the crash), then checkpoints. A checkpoint would retire those
// records before the commit that holds them is durable, so a commit of
// logged updates never makes one: when the journal is full (or a commit
// failed before it) it takes the slow path, which writes the objects and
// the branch and syncfs's before the journal starts its next epoch.
// Layout of an operations record: oplog.go.
//
// Tx.AttachBlob puts the bytes of a small blob (at most MaxAttachedBlob;
// at most 4 MiB per commit, a batch ends there) into the commit's journal
// record, so the blob store may write the blob without fsync
// (piece.Store.SealSmall) and the close of a small file costs one
// fdatasync for data and name together. Open hands the blobs of every live
// record to Options.RestoreBlob (piece.Store.Restore, which verifies and
// rewrites) before it applies the record's commit, and fails if that fails
// or if there is no RestoreBlob; its checkpoint's syncfs then makes the
// restored blob files durable. A checkpoint (journal full, Close, replay)
// retires records only after a syncfs of the repository's file system,
// which makes the blob files written without fsync durable too: blobs must
// live on the repository's file system (ROOT/blobs beside ROOT/meta.git).
// Off Linux there is no syncfs, so AttachesBlobs is false there.
//
// So stock git and go-git readers of the repository (git log, git show,
// peers' fetches) may see the branch up to 10 FlushDelays behind the last
// acknowledged commit; Repo.Sync waits until they see it, and Watch fires
// after the flush, when a fetch can find the commit.
//
// Parent directories' mtimes are never changed by Put, Remove or Rename:
// a directory's attributes change only when the directory itself is Put.
// (Changing them on every create would make every pair of concurrent
// creates in one directory on two peers a merge conflict on the marker.)
// The fs layer may report its own times for directories.
//
// Snapshots, Stats (commits, updates, objects, time in barriers) and
// Problems are safe to read at any time.
//
// # Sync
//
// Repo.Integrate brings a peer's head into the namespace: the other half
// of namespace sync, whose fetching and announcing live in cluster/nsync.
// It runs inside the actor, in order with updates, after committing the
// lazy updates that wait, and follows the frontier protocol of package
// merge (which converges for any number of nodes, without merge storms):
//
//   - nothing happens when the head is ours or an ancestor of ours;
//   - otherwise every commit reachable from the head that we lack is read
//     from the source and checked, with its trees and blobs (see below);
//   - when our head is an ancestor of the peer's (or we have none), our
//     head moves to it: a fast-forward;
//   - otherwise the frontier of the two heads (the non-merge commits among
//     their ancestors that no other such commit descends from) decides: a
//     frontier of one commit becomes our head; a larger one is merged into
//     its canonical merge commit: parents the frontier sorted by id, tree
//     the fold of merge.Trees over the frontier in that order, each step
//     against the latest common ancestor (greatest generation, then
//     greatest id) of what is merged so far and the next commit (the
//     empty tree for unrelated histories), the sides' node ids and times
//     taken from the frontier commits, signed "delugefs merge
//     <merge@delugefs>" at the latest parent's commit time, with a message
//     made of the merge's events. Two repositories that merge the same
//     heads make byte-identical commits. IntegrateResult.Announce is set
//     only for a new merge commit: a fast-forward is never announced.
//
// The commit graph (parents, generation, time, node of each commit) is
// cached in memory, so repeated syncs read only new commits. Generations
// bound every ancestry walk (an ancestor has a smaller one): testing
// ancestry, computing a frontier or a common ancestor reads the commits
// since the point of divergence, not the history. A peer's generation
// trailers are checked against its commits' parents.
//
// A merge costs in the size of the difference, not of the namespace: the
// three trees are flattened only where all three differ; where two of
// them hold the same subtree (by tree id) the merge's outcome for it is
// one side's, and it enters the merge as one leaf. The merged tree's
// directories are built reusing our snapshot's nodes wherever they hold
// the same object (a fast-forward likewise edits our snapshot by tree id),
// and only the directories the merge changed are encoded again. Merging
// two heads that differ in 10,000 paths of a namespace of 100,000
// (BenchmarkIntegrate10k) takes about 0.3 s, most of it reading and
// checking the peer's 5,000 new manifests.
//
// Objects copied from the source go into the journal record of the
// integration (the merge commit's, or, for a fast-forward, a record whose
// commit is the peer's head), made durable by its fdatasync before the
// snapshot is published and before the branch moves; an integration too
// large for the journal writes them as an fsync'd pack first (the slow
// path of commits). A crash at any point leaves either the old head or the
// new one, with every object it needs.
//
// Everything read from the source is untrusted and checked before
// anything changes: objects must hash to their ids and have the type
// their use says; commits must have exactly the tree, parent, author and
// committer headers, bounded sizes and a correct generation; trees must
// be in the form this package writes them (canonical modes, git order,
// escaped names that unescape, no name twice, a marker that is a regular
// file, a file's git mode agreeing with its manifest's mode); manifests,
// markers and symlink targets are checked as Open checks them, and so are
// path lengths, depth and the number of entries of the resulting
// snapshot. Any failure fails the whole integration with ErrBadRemote and
// changes nothing: a peer's bad commit is refused, never half applied
// (unlike Open, which skips a bad entry of our own repository with a
// Problem). A missing object is ErrBadRemote too.
//
// Open and the actor read our own objects themselves (pack indexes read
// whole and searched in place, pack entries by pread, delta bases
// cached, loose objects from their files), not through go-git, whose
// storage opens the pack file for every object and reloads every index,
// with a read(2) per field, after each flush.
//
// # Reading
//
// Repo.Snapshot returns an immutable Snapshot through an atomic pointer;
// readers never wait for the writer. Snapshots share structure: each
// directory's children are a persistent sorted map, so publishing a commit
// copies only the directories on the changed paths, O(depth · log(width)),
// whatever the number of files.
//
// # Untrusted repositories
//
// Everything read from git is checked: names (no '/', NUL, ".", "..",
// reserved names), path length and depth, blob sizes, bencode (canonical,
// sorted keys, nesting at most 8), manifest types and ranges, the info
// dictionary (bt.ParseInfo), symlink targets. An entry that fails is
// skipped: it does not appear in the index, a Problem with its path is
// logged and returned by Repo.Problems, and Open goes on. The skipped entry
// stays in git until its directory is next rewritten by a commit, which
// drops it (history keeps it). Open fails only when HEAD, its commit or its
// root tree cannot be read.
//
// # Concurrency
//
// Repo's methods are safe for concurrent use. A Tx is valid only inside
// its fn. Entries returned by Get and ReadDir must not be modified.
package meta
