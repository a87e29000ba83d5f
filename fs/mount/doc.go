// Package mount runs a cgofuse file system at a directory: it mounts, waits
// until the kernel has initialised the connection, unmounts (lazily, so a
// busy mount never blocks shutdown), and recovers a stale mount point left
// behind by a process that died without unmounting.
//
// # Use
//
//	if err := mount.Recover(dir); err != nil { ... }   // stale mount → lazy unmount; live mount → ErrBusy
//	m, err := mount.Mount(dir, fsys, mount.Options{AllowOther: true})
//	...
//	err = m.Unmount()                                              // returns once the FUSE loop has ended
//
// Mount always passes "-o default_permissions" (the kernel checks mode bits),
// and the file system name; see Options for the rest. It passes no max_read:
// libfuse 3.14 refuses it because cgofuse leaves conn->max_read at 0 in init;
// reads and writes are up to 1 MiB anyway (libfuse3 negotiates max_pages 256).
//
// # Build
//
// On Linux the patched cgofuse (third_party/cgofuse) always builds against
// libfuse3, no build tags needed. The host loads libfuse3.so.3 with dlopen
// at the first mount.
//
// # cgofuse and libfuse3 behaviour worth knowing
//
// cgofuse v1.6.0 zeroes libfuse3's struct fuse_config in its init callback,
// so the -o options that live there (attr_timeout, entry_timeout,
// negative_timeout, hard_remove, kernel_cache, ...) had no effect. DelugeFS
// builds against the patched copy in third_party/cgofuse (a replace in
// go.mod; see its README), which keeps what libfuse parsed: Options'
// timeouts work, and without them libfuse's defaults apply (entry and
// attribute timeouts 1 s, negative 0). hard_remove is still not passed, so
// a file unlinked while open is renamed to .fuse_hiddenNNN until its last
// close.
//
// With an attribute timeout the kernel answers stat(2) of the root from its
// cache even when the file system process is gone, so Recover detects a
// stale mount with statfs(2), which always reaches the file system.
//
// libfuse 3.14 rejects its own default max_idle_threads (UINT_MAX) with
// "Ignoring invalid max threads value 4294967295"; Mount passes
// max_threads and max_idle_threads (Options.MaxThreads) instead.
//
// Mount raises GOMAXPROCS to 8 unless the GOMAXPROCS environment variable
// is set (see raiseProcs: a thread back in libfuse keeps its P for a
// while, and the next callback should not wait for it).
//
// cgofuse also registers for SIGINT and SIGTERM while mounted and unmounts
// when one arrives; the process sees the signal as well (signal.Notify
// delivers to every registered channel).
package mount
