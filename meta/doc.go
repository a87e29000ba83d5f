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
// leaves no trace. A commit encodes the changed manifests, the trees on the
// changed paths (each directory's tree id is cached, so unchanged subtrees
// are never re-encoded; a changed directory's tree is re-encoded whole, as
// git's format requires, so a commit into a directory of 100,000 entries
// costs O(100,000)) and the commit object.
//
// Durability takes one fdatasync per durable commit: the commit's objects (as
// pack entries) and the new branch value are appended as one
// record to ROOT/meta.git/delugefs.journal, a pre-filled file, and the
// record is fdatasync'd. Then the new Snapshot is published and the callers
// are answered. The objects and the branch ref are written
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
// pack, which thus holds every base). When more than 16 packs exist the flush merges the
// smaller ones (geometric: the packs left keep doubling in size), copying
// entries as they are, fsyncing the merged pack before it removes the old
// ones; packs that are not self-contained (git gc's offset deltas) are
// left alone. A reader that loaded a pack's index just before a merge
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
