// Package passthrough is a minimal FUSE file system on cgofuse that mirrors a
// directory of the host: every operation is the matching system call on the
// mirrored path, and a file handle is the host's file descriptor. It is the
// reference FUSE ceiling of the benchmarks: whatever DelugeFS's own mount
// costs above it is ours, whatever both cost is FUSE's.
//
// Mount it with fs/mount like any cgofuse file system:
//
//	m, err := mount.Mount(dir, passthrough.New(src, true), mount.Options{ReaddirPlus: true})
//
// Linux only (libfuse3).
package passthrough
