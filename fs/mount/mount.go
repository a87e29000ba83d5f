package mount

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/winfsp/cgofuse/fuse"
)

// ErrBusy is returned when a live file system is mounted at the directory.
var ErrBusy = errors.New("mount: mount point busy")

// Options configure a mount.
type Options struct {
	// Name is the file system name shown by mount(8) and /proc/mounts
	// (default "delugefs").
	Name string
	// AllowOther lets other users than the one mounting use the mount
	// (-o allow_other); the kernel still checks mode bits.
	AllowOther bool
	// ReaddirPlus makes readdir carry each entry's attributes to the kernel
	// (FUSE_CAP_READDIRPLUS), so `ls -l` needs no lookup per entry. The file
	// system's Readdir must pass a stat to its fill function.
	ReaddirPlus bool
	// OpenTrunc lets open receive O_TRUNC (FUSE_CAP_ATOMIC_O_TRUNC) instead
	// of a truncate followed by an open.
	OpenTrunc bool
	// Debug logs every FUSE request to stderr (-o debug).
	Debug bool
	// ReadAheadKB sets the kernel's read-ahead of the mount (its bdi's
	// read_ahead_kb) once mounted; 0 leaves the default (128 KiB, which
	// makes sequential reads 128 KiB FUSE requests). libfuse3 caps a
	// request at 1 MiB (max_pages 256), so 1024 gives the biggest reads.
	// libfuse's own -o max_readahead is refused by its high-level API.
	ReadAheadKB int
	// EntryTimeout, AttrTimeout and NegativeTimeout are how long the kernel
	// may trust a name lookup, a file's attributes and a failed lookup
	// before it asks again (-o entry_timeout, attr_timeout,
	// negative_timeout). Zero leaves libfuse's defaults: 1 s, 1 s and 0
	// (never trusted); a negative value passes 0.
	EntryTimeout, AttrTimeout, NegativeTimeout time.Duration
	// MaxThreads bounds libfuse3's worker threads on Linux (-o
	// max_threads; default 16). Mount also passes it as max_idle_threads, which silences
	// libfuse 3.14's "Ignoring invalid max threads value 4294967295"
	// (its own default, UINT_MAX, fails its own check) and keeps idle
	// workers alive as that default does.
	MaxThreads int
	// Extra holds further -o options, passed as they are.
	Extra []string
	// Timeout bounds how long Mount waits for the kernel and Unmount for
	// the FUSE loop to end (default 10s).
	Timeout time.Duration
	// Logger receives the warnings of a mount that works with less than
	// was asked (slog.Default() when nil).
	Logger *slog.Logger
}

// Point is a mounted file system (a live mount point). Its methods are safe for concurrent use.
type Point struct {
	dir  string
	host *fuse.FileSystemHost
	done chan struct{} // closed when host.Mount returned
	ok   bool          // host.Mount's result; read after done is closed
	dev  uint64        // device number of the mounted file system

	timeout time.Duration
	once    sync.Once
	err     error // result of the first Unmount; written inside once
}

// minProcs is the least GOMAXPROCS a process that mounts runs with.
const minProcs = 8

// raiseProcs raises GOMAXPROCS to minProcs unless the environment sets
// it. Each FUSE request arrives as a cgo callback on one of libfuse's
// threads; when the callback returns, the runtime counts that thread (now
// blocked in C, reading the device) as in a system call that still holds
// its P until sysmon takes the P back, so with GOMAXPROCS = CPUs the
// next request, on another thread, often waits for that. With spare Ps it
// finds an idle one at once: four writers of small files went from about
// 1,950 to 2,450 files/s on 2 CPUs, CPU time per file unchanged.
func raiseProcs() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
}

// Dir returns the absolute mount point.
func (m *Point) Dir() string { return m.dir }

// Args returns the command line that Mount passes to libfuse for opts.
func Args(o Options) []string {
	name := o.Name
	if name == "" {
		name = "delugefs"
	}
	opts := "default_permissions,fsname=" + name + ",subtype=" + name + ""
	if o.AllowOther {
		opts += ",allow_other"
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"entry_timeout", o.EntryTimeout}, {"attr_timeout", o.AttrTimeout}, {"negative_timeout", o.NegativeTimeout}} {
		if t.d != 0 {
			opts += fmt.Sprintf(",%s=%g", t.name, max(t.d, 0).Seconds())
		}
	}
	opts += threadOpts(o.MaxThreads)
	for _, e := range o.Extra {
		opts += "," + e
	}
	args := []string{"-o", opts}
	if o.Debug {
		args = append(args, "-d")
	}
	return args
}

// Mount mounts fsys at dir and returns once the mount is usable. The
// directory must exist; a stale mount there should be recovered with Recover
// first. The file system runs until Unmount (or until the kernel tears the
// connection down, e.g. `umount -l dir`), on goroutines and threads of
// libfuse's multi-threaded loop.
func Mount(dir string, fsys fuse.FileSystemInterface, o Options) (*Point, error) {
	raiseProcs()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	before, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if !before.IsDir() {
		return nil, fmt.Errorf("mount %s: not a directory", dir)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	host := fuse.NewFileSystemHost(fsys)
	host.SetCapReaddirPlus(o.ReaddirPlus)
	host.SetCapOpenTrunc(o.OpenTrunc)
	host.SetUseIno(false)
	host.SetDirectIO(false)
	m := &Point{dir: abs, host: host, done: make(chan struct{}), timeout: o.Timeout}
	args := Args(o)
	// This goroutine runs libfuse's loop; it ends when the file system is
	// unmounted (Unmount waits for it) or when the mount fails.
	go func() {
		defer close(m.done)
		m.ok = host.Mount(abs, args)
	}()
	if m.dev, err = waitMounted(abs, before, m.done, o.Timeout); err != nil {
		m.Unmount()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if o.ReadAheadKB > 0 {
		if err := setReadAhead(m.dev, o.ReadAheadKB); err != nil {
			// Only root may write /sys: a user's mount keeps the
			// kernel's 128 KiB read-ahead (slower sequential reads).
			log := o.Logger
			if log == nil {
				log = slog.Default()
			}
			log.Warn("mount: the kernel's read-ahead stays at its default", "dir", dir, "want_kb", o.ReadAheadKB, "err", err)
		}
	}
	return m, nil
}

// Unmount unmounts lazily (MNT_DETACH, or fusermount -u -z when not root) and
// waits for the FUSE loop to end. Files still open keep the detached file
// system alive until they are closed; if that takes longer than the timeout
// Unmount aborts the connection. Later calls return the first call's result.
func (m *Point) Unmount() error {
	m.once.Do(func() {
		if err := unmount(m); err != nil {
			m.err = fmt.Errorf("unmount %s: %w", m.dir, err)
			return
		}
		select {
		case <-m.done:
			return
		case <-time.After(m.timeout):
		}
		// The loop did not end: a process holds files open on the detached
		// mount, or the file system is stuck. Cut the connection.
		if err := abort(m); err != nil {
			m.err = fmt.Errorf("unmount %s: loop still running: %w", m.dir, err)
			return
		}
		select {
		case <-m.done:
		case <-time.After(m.timeout):
			m.err = fmt.Errorf("unmount %s: loop still running after abort", m.dir)
		}
	})
	return m.err
}

// Done returns a channel closed when the file system is no longer mounted
// (its FUSE loop has ended).
func (m *Point) Done() <-chan struct{} { return m.done }
