package mount

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// waitMounted waits until dir is the root of a new file system (its device
// differs from before's). stat(2) of a FUSE mount blocks until the kernel
// has its INIT reply, so once the device changes the mount is usable.
func waitMounted(dir string, before os.FileInfo, done <-chan struct{}, timeout time.Duration) (uint64, error) {
	dev := before.Sys().(*syscall.Stat_t).Dev
	deadline := time.Now().Add(timeout)
	wait := 100 * time.Microsecond
	for {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err == nil && st.Dev != dev {
			return st.Dev, nil
		}
		select {
		case <-done:
			return 0, errors.New("libfuse could not mount (see its message on stderr)")
		case <-time.After(wait):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("not mounted after %v", timeout)
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// unmount detaches the mount lazily. It does not call host.Unmount: that
// reads the host's fuse pointer, which cgofuse writes from the init callback
// without synchronisation (a data race under -race); the system call is the
// same one cgofuse makes.
func unmount(m *Point) error {
	select {
	case <-m.done:
		return nil // never mounted, or torn down already
	default:
	}
	err := lazyUnmount(m.dir)
	if errors.Is(err, unix.EINVAL) {
		// Not mounted any more: cgofuse unmounted on SIGINT/SIGTERM, or
		// someone ran umount. The loop is ending; wait for it.
		return nil
	}
	return err
}

// threadOpts returns the -o options for libfuse3's worker threads (see
// Options.MaxThreads), with a leading comma.
func threadOpts(n int) string {
	if n <= 0 {
		n = 16
	}
	return fmt.Sprintf(",max_threads=%d,max_idle_threads=%d", n, n)
}

// setReadAhead sets read_ahead_kb of the mount's backing device info.
func setReadAhead(dev uint64, kb int) error {
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(dev), unix.Minor(dev))
	return os.WriteFile(p, []byte(fmt.Sprint(kb)), 0)
}

// Recover makes dir usable as a mount point. If a FUSE file system whose
// process died is still mounted there (statfs fails with ENOTCONN), Recover
// unmounts it lazily. If a live file system is mounted at dir, it returns
// ErrBusy. A plain directory is left alone.
func Recover(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("recover mount point %s: %w", dir, err)
	}
	// statfs, not stat: the kernel answers stat of a FUSE root from its
	// attribute cache (attr_timeout) even when the connection is dead,
	// while statfs always asks the file system.
	var st unix.Stat_t
	var sfs unix.Statfs_t
	err = unix.Statfs(abs, &sfs)
	switch {
	case errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED):
		if err := lazyUnmount(abs); err != nil {
			return fmt.Errorf("recover stale mount %s: %w", dir, err)
		}
		if err := unix.Stat(abs, &st); err != nil {
			return fmt.Errorf("recover stale mount %s: %w", dir, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("recover mount point %s: %w", dir, err)
	}
	mounted, err := isMountPoint(abs)
	if err != nil {
		return fmt.Errorf("recover mount point %s: %w", dir, err)
	}
	if mounted {
		return fmt.Errorf("%s: %w", dir, ErrBusy)
	}
	return nil
}

// lazyUnmount detaches the mount at dir: umount2(MNT_DETACH) as root,
// fusermount3 -u -z otherwise.
func lazyUnmount(dir string) error {
	err := unix.Unmount(dir, unix.MNT_DETACH)
	if err == nil || !errors.Is(err, unix.EPERM) {
		return err
	}
	for _, prog := range []string{"fusermount3", "fusermount"} {
		path, lerr := exec.LookPath(prog)
		if lerr != nil {
			continue
		}
		out, cerr := exec.Command(path, "-u", "-z", dir).CombinedOutput()
		if cerr != nil {
			return fmt.Errorf("%s -u -z: %v: %s", prog, cerr, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return err
}

// isMountPoint reports whether dir is listed in /proc/self/mountinfo.
func isMountPoint(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, ...) of a
// mountinfo field.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// abort cuts the FUSE connection of the mount (attached or detached)
// through the fusectl file system, mounting that if needed. Requests in
// flight and later ones fail with ENOTCONN; libfuse's loop then ends.
func abort(m *Point) error {
	const ctl = "/sys/fs/fuse/connections"
	p := filepath.Join(ctl, fmt.Sprint(unix.Minor(m.dev)), "abort")
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
			return fmt.Errorf("mount fusectl: %w", err)
		}
	}
	return os.WriteFile(p, []byte("1"), 0)
}
