// Command delugefs runs DelugeFS nodes and mounts the volume.
//
//	delugefs --create --id bigstore --root /mnt/disk1/.bigstoredb --mount ~/bigstore
//	delugefs --id bigstore --root /mnt/disk1/.bigstoredb --mount ~/bigstore
//
// main reads flags and builds the supervision tree; the logic lives in the
// packages it wires together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the command line args and returns the exit code: 0 on a
// clean stop, 1 on a runtime failure, 2 on wrong use.
func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintln(stdout, "delugefs", version)
			return 0
		case "bt":
			return btMain(args[1:], stdout, stderr)
		case "status":
			return statusMain(args[1:], stdout, stderr)
		case "key":
			return keyMain(args[1:], stdout, stderr)
		}
	}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "delugefs:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	if err := run(ctx, cfg, stdout, log); err != nil {
		fmt.Fprintln(stderr, "delugefs:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

const version = "0.1.0-dev"

// config is the parsed command line.
type config struct {
	create     bool
	id         string
	roots      []string
	mount      string
	allowOther bool
	listen     string
	api        string
	peers      []string
	key        string
	mdns       bool
	mdnsIfaces []string
	readWait   time.Duration
	noDHT      bool
	publicDHT  bool
	logLevel   slog.Level
	debugFUSE  bool
}

// listFlag is a flag that may be given several times.
type listFlag struct{ p *[]string }

func (l listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listFlag) Set(s string) error {
	*l.p = append(*l.p, s)
	return nil
}

// usageError marks an error caused by how the command was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	var c config
	fl := flag.NewFlagSet("delugefs", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.BoolVar(&c.create, "create", false, "make a new volume in --root, which must be empty or missing (only the first node of a volume, once)")
	fl.StringVar(&c.id, "id", "", "the volume id, e.g. bigstore: 1-63 letters, digits, '.', '_', '-' (required)")
	fl.Var(listFlag{&c.roots}, "root", "a node's directory on its disk, e.g. /mnt/disk1/.bigstoredb: node.json, meta.git, blobs (required; repeat it to run one node per disk in this process; the first one that already holds a node is the one mounted)")
	fl.StringVar(&c.mount, "mount", "", "mount the volume on this existing directory (optional; without it the node only stores and serves)")
	fl.BoolVar(&c.allowOther, "allow-other", false, "let other users of this machine use the mount (e.g. a media server's user); the kernel checks each file's mode bits")
	fl.StringVar(&c.listen, "listen", ":0", "BitTorrent listen address (host:port; port 0 picks a free one); peers fetch blobs here")
	fl.StringVar(&c.api, "api", ":0", "HTTP API listen address (host:port; port 0 picks a free one, printed at start): namespace sync between nodes, git clone, /status, /metrics")
	fl.Var(listFlag{&c.peers}, "peer", "API address HOST:PORT of another node of the volume, where multicast does not reach (repeatable)")
	fl.StringVar(&c.key, "key", os.Getenv("DELUGEFS_KEY"), "the volume key, needed to add a new disk to an existing volume from another machine: `delugefs key --root ROOT` prints it on any node (default $DELUGEFS_KEY)")
	fl.BoolVar(&c.mdns, "mdns", true, "find the volume's other nodes by multicast DNS (_delugefs._tcp) and announce this one")
	mdnsIfaces := fl.String("mdns-iface", "", "comma-separated interfaces for mDNS (default: every multicast-capable interface that is up)")
	dhtOn := fl.Bool("dht", true, "run a mainline DHT node (UDP, on the BitTorrent port) that finds peers of a file beyond the volume's nodes; it starts from the volume's peers only")
	fl.BoolVar(&c.publicDHT, "public-dht", false, "also join the public mainline DHT through its routers (opt-in: contacts hosts on the internet)")
	fl.DurationVar(&c.readWait, "read-wait", 10*time.Second, "how long a read of a file no live node can serve waits before it fails with EIO")
	level := fl.String("log-level", "info", "log detail: debug, info, warn or error")
	fl.BoolVar(&c.debugFUSE, "debug-fuse", false, "log every FUSE request (very verbose)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, `DelugeFS: a distributed filesystem over a random bunch of disks.

Usage:
  delugefs --create --id VOLUME --root DIR [--mount DIR]   first node of a new volume
  delugefs --id VOLUME --root DIR [--mount DIR]            start a node again, or add a disk to the volume
  delugefs --id VOLUME --root DIR --root DIR2 ...          one node per disk in one process
  delugefs status [--api ADDR] [--json]                    peers, disks, files of the running nodes
  delugefs key --root DIR                                  print the volume key (to add disks on other machines)
  delugefs bt create|seed|get ...                         the standalone BitTorrent client (delugefs bt --help)
  delugefs version

SIGINT or SIGTERM unmounts cleanly and exits 0.

Flags:
`)
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if fl.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected argument %q (see --help)", fl.Arg(0))}
	}
	if c.id == "" {
		return nil, usageError{errors.New("--id is required (see --help)")}
	}
	if len(c.roots) == 0 {
		return nil, usageError{errors.New("--root is required (see --help)")}
	}
	c.noDHT = !*dhtOn
	if c.noDHT && c.publicDHT {
		return nil, usageError{errors.New("--public-dht needs --dht")}
	}
	if *mdnsIfaces != "" {
		c.mdnsIfaces = strings.Split(*mdnsIfaces, ",")
	}
	if err := c.logLevel.UnmarshalText([]byte(strings.ToUpper(*level))); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)}
	}
	return &c, nil
}
