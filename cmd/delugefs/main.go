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
	root       string
	mount      string
	allowOther bool
	listen     string
	logLevel   slog.Level
	debugFUSE  bool
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
	fl.StringVar(&c.root, "root", "", "this node's directory on its disk, e.g. /mnt/disk1/.bigstoredb: node.json, meta.git, blobs (required)")
	fl.StringVar(&c.mount, "mount", "", "mount the volume on this existing directory (optional; without it the node only stores and serves)")
	fl.BoolVar(&c.allowOther, "allow-other", false, "let other users of this machine use the mount (e.g. a media server's user); the kernel checks each file's mode bits")
	fl.StringVar(&c.listen, "listen", ":0", "BitTorrent listen address (host:port; port 0 picks a free one); peers fetch blobs here")
	level := fl.String("log-level", "info", "log detail: debug, info, warn or error")
	fl.BoolVar(&c.debugFUSE, "debug-fuse", false, "log every FUSE request (very verbose)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, `DelugeFS: a distributed filesystem over a random bunch of disks.

Usage:
  delugefs --create --id VOLUME --root DIR [--mount DIR]   first node of a new volume
  delugefs --id VOLUME --root DIR [--mount DIR]            start a node again
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
	if c.root == "" {
		return nil, usageError{errors.New("--root is required (see --help)")}
	}
	if err := c.logLevel.UnmarshalText([]byte(strings.ToUpper(*level))); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)}
	}
	return &c, nil
}
