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
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/delugefs/delugefs/bt/client"
)

// btUsage is the help of `delugefs bt`.
const btUsage = `delugefs bt: the standalone BitTorrent client of DelugeFS (no DHT, no trackers: peers are given).

Usage:
  delugefs bt create FILE [-o FILE.torrent] [--piece-length N] [--announce URL]
  delugefs bt seed FILE.torrent --data FILE [--listen 127.0.0.1:6881] [--peer HOST:PORT ...]
  delugefs bt get FILE.torrent|MAGNET --peer HOST:PORT [--peer ...] -o OUT [--timeout 30s]

create prints the info-hash and magnet link; seed verifies the data, prints
its listen address and a magnet link with x.pe, and serves until SIGINT or
SIGTERM; get exits 0 only when every piece is verified and OUT is complete.
Run a subcommand with --help for its flags.
`

// btMain runs `delugefs bt ...`, the standalone BitTorrent client. It only
// parses flags; package bt/client does the work. Exit codes: 0 success, 1
// failure, 2 wrong use.
func btMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, btUsage)
		return 2
	}
	var run func([]string, io.Writer, io.Writer) error
	switch args[0] {
	case "create":
		run = btCreate
	case "seed":
		run = btSeed
	case "get":
		run = btGet
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, btUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "delugefs bt: unknown command %q\n\n%s", args[0], btUsage)
		return 2
	}
	err := run(args[1:], stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "delugefs bt %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "delugefs bt %s: %v\n", args[0], err)
		return 1
	}
}

// btFlags returns a flag set for a bt subcommand whose usage line is use.
func btFlags(name, use string, stderr io.Writer) *flag.FlagSet {
	fl := flag.NewFlagSet("delugefs bt "+name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: delugefs bt %s %s\n\nFlags:\n", name, use)
		fl.PrintDefaults()
	}
	return fl
}

// parseArgs parses flags placed anywhere among the arguments and returns
// the positional ones ("--" ends the flags).
func parseArgs(fl *flag.FlagSet, args []string) ([]string, error) {
	var pos, rest []string
	for i, a := range args {
		if a == "--" {
			args, rest = args[:i], args[i+1:]
			break
		}
	}
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		args = fl.Args()
		if len(args) == 0 {
			return append(pos, rest...), nil
		}
		pos = append(pos, args[0]) // Parse stopped at a positional argument
		args = args[1:]
	}
}

// onePositional checks that exactly one positional argument was given.
func onePositional(pos []string, what string) (string, error) {
	switch len(pos) {
	case 1:
		return pos[0], nil
	case 0:
		return "", usageError{fmt.Errorf("missing %s (see --help)", what)}
	default:
		return "", usageError{fmt.Errorf("unexpected argument %q (see --help)", pos[1])}
	}
}

// btLogger logs the swarm's warnings (everything with --verbose) to stderr.
func btLogger(stderr io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func btCreate(args []string, stdout, stderr io.Writer) error {
	fl := btFlags("create", "FILE [-o FILE.torrent] [--piece-length N] [--announce URL]", stderr)
	out := fl.String("o", "", "the .torrent file to write (default FILE.torrent)")
	pl := fl.String("piece-length", "", "piece length in bytes, a power of two from 16KiB to 64MiB; suffixes K, KiB, M, MiB (default: 256 KiB, growing with the file up to 8 MiB)")
	announce := fl.String("announce", "", "tracker URL to write into the torrent (never contacted by delugefs)")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	file, err := onePositional(pos, "FILE")
	if err != nil {
		return err
	}
	var pieceLength int64
	if *pl != "" {
		if pieceLength, err = parseSize(*pl); err != nil {
			return usageError{fmt.Errorf("--piece-length: %w", err)}
		}
	}
	if *out == "" {
		*out = file + ".torrent"
	}
	ctx, stop := signalContext()
	defer stop()
	mi, err := client.Create(ctx, file, client.CreateOptions{PieceLength: pieceLength, Announce: *announce})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(*out, mi.Bencode()); err != nil {
		return err
	}
	info := mi.Info
	fmt.Fprintf(stdout, "torrent:   %s\ninfo-hash: %s\nlength:    %d bytes, %d pieces of %d\nmagnet:    %s\n",
		*out, info.Hash(), info.Length, info.NumPieces(), info.PieceLength, client.MagnetOf(mi, nil))
	return nil
}

func btSeed(args []string, stdout, stderr io.Writer) error {
	fl := btFlags("seed", "FILE.torrent --data FILE [--listen 127.0.0.1:6881] [--peer HOST:PORT ...]", stderr)
	data := fl.String("data", "", "the file the torrent describes (required)")
	listen := fl.String("listen", "127.0.0.1:6881", "address to accept peers on (port 0 picks a free one)")
	var peers stringList
	fl.Var(&peers, "peer", "also connect to this peer, HOST:PORT (repeatable)")
	noVerify := fl.Bool("no-verify", false, "skip the hash check of the data")
	verbose := fl.Bool("verbose", false, "log every connection event")
	cpuprofile := fl.String("cpuprofile", "", "write a CPU profile of the run to this file")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	tfile, err := onePositional(pos, "FILE.torrent")
	if err != nil {
		return err
	}
	if *data == "" {
		return usageError{errors.New("--data is required (see --help)")}
	}
	mi, err := client.ReadTorrent(tfile)
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx, stop := signalContext()
	defer stop()
	s, err := client.NewSeeder(ctx, client.SeedConfig{
		MetaInfo: mi, Data: *data, Listen: *listen, Peers: peers, NoVerify: *noVerify, Logger: btLogger(stderr, *verbose),
	})
	if err != nil {
		return err
	}
	checked := "verified"
	if *noVerify {
		checked = "not verified: --no-verify"
	}
	fmt.Fprintf(stdout, "seeding:   %s (%d bytes, %s)\nlistening: %s\ninfo-hash: %s\nmagnet:    %s\n",
		*data, mi.Info.Length, checked, s.Addr(), mi.Info.Hash(), s.Magnet())
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	err = s.Serve(ctx)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

func btGet(args []string, stdout, stderr io.Writer) error {
	fl := btFlags("get", "FILE.torrent|MAGNET --peer HOST:PORT [--peer ...] -o OUT [--timeout 30s]", stderr)
	out := fl.String("o", "", "the file to write (required)")
	var peers stringList
	fl.Var(&peers, "peer", "peer to download from, HOST:PORT (repeatable; a magnet link's x.pe peers are used too)")
	timeout := fl.Duration("timeout", 30*time.Second, "give up when no data arrives for this long")
	listen := fl.String("listen", "", "also accept peers on this address (default: none)")
	announce := fl.String("announce", "", "accepted for compatibility; delugefs contacts no tracker")
	verbose := fl.Bool("verbose", false, "log every connection event")
	cpuprofile := fl.String("cpuprofile", "", "write a CPU profile of the run to this file")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	arg, err := onePositional(pos, "FILE.torrent or MAGNET")
	if err != nil {
		return err
	}
	if *out == "" {
		return usageError{errors.New("-o OUT is required (see --help)")}
	}
	_ = announce
	src, err := client.ParseSource(arg)
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx, stop := signalContext()
	defer stop()
	pp := client.NewProgressPrinter(stderr, client.IsTerminal(stderr), 2*time.Second)
	var last client.Progress
	err = client.Get(ctx, client.GetConfig{
		Source: src, Out: *out, Peers: peers, Listen: *listen, Timeout: *timeout,
		Logger: btLogger(stderr, *verbose),
		Progress: func(p client.Progress) {
			last = p
			pp.Update(p)
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d bytes, every piece verified, %s\n", *out, last.Length, last.Elapsed.Round(time.Millisecond))
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// parseSize parses a byte count with an optional K, KiB, M or MiB suffix
// (binary units).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}, {"k", 1 << 10}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return v * mult, nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a reader never sees half a torrent.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// startCPUProfile starts a CPU profile into path (nothing when path is
// empty) and returns the function that stops it.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
