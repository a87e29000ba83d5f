// Package fs is the DelugeFS file system: the POSIX operations of a FUSE
// mount (through github.com/winfsp/cgofuse) mapped onto the namespace
// (meta.Repo) and the blob store (piece.Store) of one node. It is the only
// package that imports cgofuse or speaks errno.
//
// # Use
//
//	fsys := fs.New(repo, store, fs.Options{})          // repo.Serve must be running
//	pt, err := fs.Mount(dir, fsys, fs.MountOptions{AllowOther: allow})
//	...
//	err = pt.Unmount()                                   // lazy; waits for libfuse's loop
//
// Mount recovers a stale mount at dir first (see package fs/mount); a live
// file system at dir is an error wrapping mount.ErrBusy. In a supervision
// tree use Service, whose Serve mounts until its context ends.
//
// On Linux the patched cgofuse in third_party/cgofuse always compiles
// against /usr/include/fuse3 (FUSE_USE_VERSION 39) and dlopens
// libfuse3.so.3: no build tags. CGO_ENABLED=0 builds for Windows (WinFsp)
// need nothing either.
//
// # Structure
//
// Namespace operations (getattr, readdir, readlink, access, getxattr) read
// the repo's current Snapshot and never wait on the writer. Operations that
// change the namespace (mkdir, create, unlink, rename, chmod, setxattr, ...)
// are one meta.Repo.UpdateLogged each (durable when it returns, through an
// operations record in meta's journal; meta commits many of them at once
// a few milliseconds later), with a deadline (Options.Timeout) so a dead
// actor becomes EIO, never a hung kernel request.
//
// Regular files that are open are files (file.go), shared by all handles of
// one path, like an inode: a write through one handle is seen by reads
// through another, and every flush of a writing handle commits the writes
// of all of them (so "last writer wins" holds between flushes: the latest
// flush commits everything written so far).
//
// Read path: a handle of an unchanged file reads its complete local blob
// with pread on an *os.File the file holds, without a lock (an atomic load
// of the current source). A blob that is not on this node is read through
// Options.Remote, bounded by Options.RemoteTimeout; with no Remote such a
// read fails with EIO at once.
//
// Write path: open for writing costs nothing; the first change makes a temp
// file (Store.TempFile), into which the committed contents are copied unless
// the change is O_TRUNC or a truncate to 0 (copy_file_range, which is a
// reflink on file systems that share extents, e.g. btrfs and XFS). While a
// file is written in order from byte 0, it is hashed on the way so sealing
// does not read it again: the hash ladder (ladder.go). The piece length
// depends on the final size (piece.Length grows past 512 MiB), so each time
// the size nears a threshold where it changes, a rung (a goroutine with a
// piece.Hasher of the next piece length, owned by the open file) starts,
// catches up by reading the temp file from 0 (page cache, second core) and
// then follows the writer; rungs of lengths the size has outgrown are
// dropped at once, so at most two are alive. Small files (up to 32 MiB) are
// hashed in the write path itself. The flush waits for the rung of
// piece.Length(final size) and passes its info to Seal as known; a write
// out of order, a truncate that is not to the ladder's size, or a close
// stops the rungs (and waits for them), and Seal hashes the file. The rungs
// also start the write-back of what they hashed (sync_file_range), so the
// seal's fsync has little left. Stats counts seals of either kind.
// Getattr shows the size and mtime of a changed file from the open file
// until it is committed.
//
// Flush (every close(2)) of a handle that is open for writing, and fsync of
// any handle, seal a changed file: Store.Seal (or SealSmall, below) makes the temp file a blob,
// then one logged meta update puts the new manifest, keeping mode, owner and
// xattrs of the entry at the path. Errors of either (ENOSPC, EIO) are the
// result of close(2) or fsync(2); when close returns 0 the data is durable.
// Any failure (a write, the seal or the commit) rolls the file back to its
// committed version: the changes since the last successful flush are gone,
// as the failed write, close or fsync said, and never show up later (a
// blob sealed for a commit that failed is garbage the store may collect),
// with one exception: when the journal's barrier itself fails (a dying
// disk), meta refuses every update until the node restarts, and the
// restart's replay keeps what the disk kept, which may include the
// failed close's data.
// Changes that arrive after the last flush (a shared mmap written back
// after close) are committed when the last handle is released, and only
// logged if that fails. truncate(2) by path seals and commits before it
// returns. After a seal, further writes through a handle still open start a
// new temp file (a new copy).
//
// Create publishes the new empty file at once, so it is visible to others
// while it is written, with a lazy update (meta.Repo.UpdateLazy): nothing
// waits for the disk. The file is marked changed, so the flush of its
// close commits it durably even when nothing was written; when something
// was, the create goes into the same commit as the contents. Fsyncdir
// commits a durable no-op, which makes every lazy create before it
// durable.
//
// Small files (at most meta.MaxAttachedBlob, 256 KiB) are written in
// memory, not into a temp file (file.inMem; a file that grows past that
// spills into one), and sealed with piece.Store.PutSmallAsync: the store
// counts the blob as complete at once and writes its file in the
// background (with no fsync, on a thread of the lowest CPU priority: in the
// time closes wait for the disk), and the open file reads the bytes from memory
// (a file whose temp file is already there is sealed with
// piece.Store.SealSmall, which renames it into the store without fsync);
// the node opens the repo with meta.Options.BeforeCheckpoint set to the
// store's Flush, so no journal record is retired while its blob is only in
// memory. The commit attaches the bytes
// (meta.Tx.AttachBlob) so they ride in its journal record, and after a
// crash meta's replay restores the blob (piece.Store.Restore) before the
// manifest counts. So close(2) of a new small file costs one barrier (the
// journal's barrier) for its data and its name, and no commit: the
// operations record holds the blob, and the commit of many closes follows
// within 10 flush delays of meta. This needs the node to
// open the repo with meta.Options.RestoreBlob set to the store's Restore
// (Repo.AttachesBlobs); without it small files take the path of big ones:
// Seal fsyncs the data and the directory, then the commit's barrier.
//
// # Errors
//
// meta's errors map to ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, EINVAL;
// a full disk to ENOSPC; anything else is logged and becomes EIO. Names
// longer than 255 bytes get ENAMETOOLONG. Hard links get ENOTSUP.
//
// # Caching
//
// DelugeFS mounts with entry and attribute timeouts of
// MountOptions.CacheTimeout (1 s) and no negative caching: the kernel
// learns of changes made through the mount from the FUSE calls
// themselves; a name a peer adds shows at once (a missing name is always
// looked up again), and a peer's change or removal of a name the kernel
// has seen, which arrives through the namespace sync, shows after at most
// CacheTimeout (as on NFS). This needs the patched cgofuse in third_party/cgofuse (v1.6.0
// zeroes libfuse's fuse_config, which made every timeout 0).
//
// Page cache: a blob never changes, so OpenEx sets keep_cache (the kernel
// keeps the file's pages from earlier opens) when a read-only handle reads
// an unchanged, complete local blob that is the same blob the last open
// for reading at that path saw (FS.cached, bounded). A new blob at the
// path (a peer's change, a rewrite), a write or truncate, a rename or an
// unlink forget the path, and the next open drops the pages. libfuse's own
// kernel_cache is not used: it keeps pages of every open, stale ones too.
//
// # libfuse3 through cgofuse
//
// libfuse (without hard_remove) does not unlink a file that is still open
// but renames it to .fuse_hiddenNNN and unlinks that at the last close. FS
// turns such a rename into the unlink it stands for (the removal is
// committed at once, the open file lives on under the hidden name in memory
// only), so hidden names never reach git. A user file whose name starts with
// .fuse_hidden is therefore not supported as a rename target.
//
// # Locking
//
// FS.nsMu orders commits at an open file's path against renames and
// unlinks (which move or detach open files); FS.mu guards the table of open
// files and their paths; file.mu guards a file's write state and serialises
// its seals. Lock order: file.mu, FS.nsMu, FS.mu. No lock is held inside a
// meta.Update function.
//
// # Not yet
//
// Directory mtimes do not change when entries are added or removed; atime
// and ctime are the mtime. O_DIRECT and mmap writes go through the page
// cache like any write.
package fs
