//go:build !linux

package mount

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// waitMounted waits for the host to be running. Without a device number to
// compare it waits until the directory answers stat.
func waitMounted(dir string, before os.FileInfo, done <-chan struct{}, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	for {
		if fi, err := os.Stat(dir); err == nil && !os.SameFile(fi, before) {
			return 0, nil
		}
		select {
		case <-done:
			return 0, errors.New("could not mount")
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("not mounted after %v", timeout)
		}
	}
}

// Recover makes dir usable as a mount point. Stale mounts are a Linux (and
// BSD) matter; elsewhere it only checks that dir exists.
func Recover(dir string) error {
	_, err := os.Stat(dir)
	return err
}

func unmount(m *Point) error {
	if !m.host.Unmount() {
		return errors.New("host refused to unmount")
	}
	return nil
}

func threadOpts(n int) string { return "" } // libfuse3's options only

func setReadAhead(dev uint64, kb int) error { return nil }

func abort(m *Point) error { return errors.New("abort: not supported on this platform") }
