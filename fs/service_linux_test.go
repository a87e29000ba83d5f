//go:build linux

package fs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/delugefs/delugefs/fs"
)

// TestService runs the mount as a service: it is usable while Serve runs,
// gone after ctx ends, and an unmount from outside ends Serve with
// ErrUnmounted.
func TestService(t *testing.T) {
	n := start(t) // its repo and store; the service mounts the same FS elsewhere
	dir := t.TempDir()
	mounted := make(chan struct{}, 1)
	svc := &fs.Service{FS: n.FS, Dir: dir, OnMount: func() { mounted <- struct{}{} }}
	run := func() (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Serve(ctx) }()
		return cancel, done
	}
	waitFile := func(p string) {
		t.Helper()
		select {
		case <-mounted:
		case <-time.After(10 * time.Second):
			t.Fatal("not mounted")
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.WriteFile(filepath.Join(n.Dir, "f"), []byte("x"), 0o644))
	cancel, done := run()
	waitFile(filepath.Join(dir, "f"))
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("serve after cancel: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); err == nil {
		t.Fatal("still mounted after the service stopped")
	}
	cancel, done = run()
	defer cancel()
	waitFile(filepath.Join(dir, "f"))
	must(t, unix.Unmount(dir, unix.MNT_DETACH))
	select {
	case err := <-done:
		if !errors.Is(err, fs.ErrUnmounted) {
			t.Fatalf("serve after umount: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not notice the umount")
	}
}
