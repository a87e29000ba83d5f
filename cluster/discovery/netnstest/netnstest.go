//go:build linux

package netnstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Prefix starts the name of every namespace this package creates:
// Prefix + "<pid>-<n>-sw" for the switch, Prefix + "<pid>-<n>-h<i>" for
// host i. The pid lets Clean tell leftovers of dead runs from namespaces
// of runs still going.
const Prefix = "dfst-"

// Subnet is the private IPv4 network used inside the namespaces: host i
// has Subnet's address i+1. Nothing routes it anywhere: the namespaces
// have no default route and no link to the root namespace.
var Subnet = netip.MustParsePrefix("10.77.0.0/24")

// ChildEnv is the environment variable that makes a re-executed test
// binary run a child role instead of its tests (see Main).
const ChildEnv = "NETNSTEST_CHILD"

var seq atomic.Int64

// Net is a set of hosts (network namespaces) joined by one bridge, which
// lives in a namespace of its own.
type Net struct {
	Switch string  // namespace holding the bridge "br0"
	Hosts  []*Host // in index order

	t     testing.TB
	mu    sync.Mutex // guards procs
	procs []*Proc
}

// Host is one network namespace with one link, "eth0", on the bridge,
// and "lo" up.
type Host struct {
	Index int
	NS    string     // namespace name (ip netns)
	Addr  netip.Addr // its address on eth0
	Link  string     // "eth0"
	port  string     // the bridge port in the switch namespace, "p<i>"
	net   *Net
}

// New creates n hosts joined by a bridge and removes them all (after
// killing every process started through them) in t.Cleanup, also when the
// test fails. It first removes namespaces left by crashed runs (Clean).
// It needs root and the ip command; it fails the test otherwise.
func New(t testing.TB, n int) *Net {
	t.Helper()
	if n < 1 || n > 250 {
		t.Fatalf("netnstest: %d hosts", n)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("netnstest: network namespaces need root")
	}
	if err := Clean(); err != nil {
		t.Logf("netnstest: cleaning stale namespaces: %v", err)
	}
	base := fmt.Sprintf("%s%d-%d", Prefix, os.Getpid(), seq.Add(1))
	nw := &Net{Switch: base + "-sw", t: t}
	t.Cleanup(nw.destroy)

	must := func(args ...string) {
		t.Helper()
		if out, err := ip(args...); err != nil {
			t.Fatalf("netnstest: ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	must("netns", "add", nw.Switch)
	must("-n", nw.Switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	must("-n", nw.Switch, "link", "set", "br0", "up")
	for i := range n {
		h := &Host{
			Index: i,
			NS:    fmt.Sprintf("%s-h%d", base, i),
			Addr:  addrN(i + 1),
			Link:  "eth0",
			port:  "p" + strconv.Itoa(i),
			net:   nw,
		}
		nw.Hosts = append(nw.Hosts, h)
		must("netns", "add", h.NS)
		must("-n", h.NS, "link", "set", "lo", "up")
		must("-n", nw.Switch, "link", "add", h.port, "type", "veth", "peer", "name", h.Link, "netns", h.NS)
		must("-n", nw.Switch, "link", "set", h.port, "master", "br0", "multicast", "on", "up")
		must("-n", h.NS, "addr", "add", netip.PrefixFrom(h.Addr, Subnet.Bits()).String(), "dev", h.Link)
		must("-n", h.NS, "link", "set", h.Link, "multicast", "on", "up")
	}
	return nw
}

func addrN(n int) netip.Addr {
	a := Subnet.Addr().As4()
	a[3] = byte(n)
	return netip.AddrFrom4(a)
}

func ip(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ip", args...).CombinedOutput()
}

// destroy kills the processes and deletes the namespaces; the veths and
// the bridge go with them.
func (nw *Net) destroy() {
	nw.mu.Lock()
	procs := nw.procs
	nw.mu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
	names := []string{nw.Switch}
	for _, h := range nw.Hosts {
		names = append(names, h.NS)
	}
	for _, name := range names {
		// A namespace New did not get to create is no error.
		if out, err := ip("netns", "del", name); err != nil && !strings.Contains(string(out), "No such file") {
			nw.t.Errorf("netnstest: delete %s: %v\n%s", name, err, out)
		}
	}
}

// Clean deletes namespaces named with Prefix whose creating process is
// gone (left by crashed or killed runs), after killing what still runs
// in them. Namespaces of live runs are left alone.
func Clean() error {
	out, err := ip("netns", "list")
	if err != nil {
		return fmt.Errorf("ip netns list: %v: %s", err, out)
	}
	var errs []error
	for line := range strings.Lines(string(out)) {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, Prefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || processAlive(pid) {
			continue
		}
		if pids, err := ip("netns", "pids", name); err == nil {
			for _, f := range strings.Fields(string(pids)) {
				if p, err := strconv.Atoi(f); err == nil && p > 1 {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
		if out, err := ip("netns", "del", name); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %v: %s", name, err, out))
		}
	}
	return errors.Join(errs...)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Command returns a command that runs name inside the host's network
// namespace. Only the network namespace is entered (nsenter --net), so
// the file system, and FUSE mounts made by the child, are shared with
// the test.
func (h *Host) Command(ctx context.Context, name string, arg ...string) *exec.Cmd {
	args := append([]string{"--net=/run/netns/" + h.NS, "--", name}, arg...)
	return exec.CommandContext(ctx, "nsenter", args...)
}

// Run runs a command inside the host and returns its combined output.
func (h *Host) Run(ctx context.Context, name string, arg ...string) ([]byte, error) {
	return h.Command(ctx, name, arg...).CombinedOutput()
}

// Cut takes the host's bridge port down: the host is cut off the network
// while its processes keep running.
func (h *Host) Cut() error {
	if out, err := ip("-n", h.net.Switch, "link", "set", h.port, "down"); err != nil {
		return fmt.Errorf("cut %s: %v: %s", h.NS, err, out)
	}
	return nil
}

// Restore brings the host's bridge port back up.
func (h *Host) Restore() error {
	if out, err := ip("-n", h.net.Switch, "link", "set", h.port, "up"); err != nil {
		return fmt.Errorf("restore %s: %v: %s", h.NS, err, out)
	}
	return nil
}

// Start starts cmd (normally from Command or ChildCommand) as a process
// of this Net: its stdout is read line by line (Proc.Lines, WaitLine),
// its stderr goes to the test log, and it is killed in the cleanup.
func (nw *Net) Start(cmd *exec.Cmd) *Proc {
	nw.t.Helper()
	p, err := start(nw.t, cmd)
	if err != nil {
		nw.t.Fatalf("netnstest: %v", err)
	}
	nw.mu.Lock()
	nw.procs = append(nw.procs, p)
	nw.mu.Unlock()
	return p
}

// StartChild re-executes the test binary inside the host to run the child
// role registered with Main, with args, and starts it as with Start.
func (h *Host) StartChild(role string, args ...string) *Proc {
	h.net.t.Helper()
	return h.net.Start(ChildCommand(h, role, args...))
}

// ChildCommand returns the command that re-executes the test binary as
// child role (see Main), inside host h, or in the current namespace when
// h is nil.
func ChildCommand(h *Host, role string, args ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	var cmd *exec.Cmd
	if h == nil {
		cmd = exec.Command(self, args...)
	} else {
		cmd = h.Command(context.Background(), self, args...)
	}
	cmd.Env = append(os.Environ(), ChildEnv+"="+role)
	return cmd
}

// StartLocal starts cmd in the current namespace as a Proc that is killed
// in t.Cleanup.
func StartLocal(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p, err := start(t, cmd)
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	t.Cleanup(p.Kill)
	return p
}

// Main runs the child role named by ChildEnv when it is set, and the
// tests otherwise. Call it from TestMain:
//
//	func TestMain(m *testing.M) { netnstest.Main(m, map[string]func([]string) int{"node": runNode}) }
//
// A child gets the arguments given to StartChild and its exit code is
// the process's. Children read commands from stdin and write lines the
// test waits for on stdout.
func Main(m *testing.M, roles map[string]func(args []string) int) {
	if role := os.Getenv(ChildEnv); role != "" {
		f, ok := roles[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "netnstest: unknown child role %q\n", role)
			os.Exit(2)
		}
		os.Exit(f(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// Proc is a process started by a Net or StartLocal.
type Proc struct {
	Cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string   // stdout lines, closed at EOF
	done  chan struct{} // closed when the process was waited for
	err   error         // Wait's result, valid after done
	once  sync.Once
}

func start(t testing.TB, cmd *exec.Cmd) (*Proc, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	cmd.Stderr = logWriter{t}
	// Its own process group, so Kill reaches its children too; and
	// killed with us should the test binary die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &Proc{Cmd: cmd, stdin: stdin, lines: make(chan string, 1024), done: make(chan struct{})}
	// The reader ends at EOF of stdout, which the process's end brings;
	// the waiter follows it.
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// Lines returns the channel of the process's stdout lines; it is closed
// when the process closes its stdout. Use either Lines or WaitLine.
func (p *Proc) Lines() <-chan string { return p.lines }

// WaitLine returns the first line for which match is true, discarding
// the lines before it, or an error when ctx ends or the output does.
func (p *Proc) WaitLine(ctx context.Context, match func(string) bool) (string, error) {
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("netnstest: %s ended without the line", p.Cmd.Path)
			}
			if match(l) {
				return l, nil
			}
		case <-ctx.Done():
			return "", fmt.Errorf("netnstest: waiting for a line: %w", ctx.Err())
		}
	}
}

// Send writes one line to the process's stdin.
func (p *Proc) Send(line string) error {
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

// Stop closes the process's stdin (children take that as "stop
// cleanly") and waits for it until ctx ends, then kills it.
func (p *Proc) Stop(ctx context.Context) error {
	p.stdin.Close()
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.Kill()
		return fmt.Errorf("netnstest: %s did not stop: %w", p.Cmd.Path, ctx.Err())
	}
}

// Kill kills the process and its group with SIGKILL and waits for it.
// It may be called more than once.
func (p *Proc) Kill() {
	p.once.Do(func() {
		if p.Cmd.Process != nil {
			_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	// Drain stdout so the reader reaches EOF.
	go func() {
		for range p.lines {
		}
	}()
	<-p.done
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }
