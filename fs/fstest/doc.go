// Package fstest runs DelugeFS nodes mounted for real in tests: a node is a
// root directory holding the namespace (meta.git) and the blob store, a
// Serve loop, an fs.FS and its mount under t.TempDir(), unmounted and
// stopped when the test ends, even when it fails.
//
//	n := fstest.Start(t, t.TempDir(), fs.Options{})   // n.Dir is the mount point
//	os.WriteFile(filepath.Join(n.Dir, "f"), data, 0o644)
//	e, _ := n.Repo.Snapshot().Get("f")                 // look behind the mount
//	n.Stop()                                           // unmount early (e.g. to remount the root)
//
// Mount mounts any cgofuse file system (the passthrough reference, say).
// Linux (libfuse3).
package fstest
