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
// On Linux cgofuse selects libfuse3 with the build tag fuse3
// (`go build -tags fuse3`, `go test -tags fuse3`); without it cgofuse looks
// for the libfuse2 headers in /usr/include/fuse. The host loads libfuse3.so.3
// with dlopen at the first mount.
//
// # cgofuse and libfuse3 behaviour worth knowing
//
// cgofuse v1.6.0 zeroes libfuse3's struct fuse_config in its init callback
// (it sets only direct_io and use_ino there). As a result the -o options that
// live in fuse_config (attr_timeout, entry_timeout, negative_timeout,
// hard_remove, kernel_cache, auto_cache, ...) have no effect: attribute and
// entry timeouts are always 0 (the kernel asks again each time, which is safe
// for any number of writers), and a file unlinked while open is renamed to
// .fuse_hiddenNNN until its last close (libfuse's default without
// hard_remove). Options are therefore limited to those the kernel and the
// session understand.
//
// cgofuse also registers for SIGINT and SIGTERM while mounted and unmounts
// when one arrives; the process sees the signal as well (signal.Notify
// delivers to every registered channel).
package mount
