package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/delugefs/delugefs/actors"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/fs/mount"
	"github.com/delugefs/delugefs/node"
)

// run is the table of contents of a DelugeFS process: open the node, start
// its actors under the volume supervisor, mount, wait for a signal, unmount,
// stop.
func run(ctx context.Context, cfg *config, stdout io.Writer, log *slog.Logger) error {
	var mountDir string
	if cfg.mount != "" {
		var err error
		if mountDir, err = checkMountPoint(cfg.mount); err != nil {
			return err
		}
	}

	// One BitTorrent listener per process routes inbound connections to the
	// swarms of every node in it.
	swarms := swarm.NewRegistry()
	sock, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return usageError{fmt.Errorf("--listen %s: %w", cfg.listen, err)}
	}
	ln := swarm.NewListener(sock, swarms, log)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	btPort, _ := strconv.Atoi(port)

	n, err := node.Open(cfg.root, cfg.id, node.Options{
		Create: cfg.create,
		Log:    log,
		Swarms: node.SwarmOptions{Registry: swarms, ListenPort: btPort},
	})
	if err != nil {
		sock.Close()
		return usageOrRuntime(err)
	}
	defer n.Close()

	// The volume supervisor runs the node(s); the mount is started after the
	// node and stopped before it, so every flush the kernel sends at unmount
	// still finds the namespace actor alive.
	volume := actors.NewSupervisor("volume "+cfg.id, log)
	volume.Add(actors.Critical(actors.Func("node "+n.Config.NodeID, n.Serve)))
	volume.Add(actors.Func("bittorrent listener", ln.Serve))
	vctx, stopVolume := context.WithCancel(context.Background())
	defer stopVolume()
	volumeDone := make(chan error, 1)
	go func() { volumeDone <- actors.Run(vctx, volume) }() // waited for below

	fmt.Fprintf(stdout, "delugefs: volume %s, node %s, root %s\n", n.Config.VolumeID, n.Config.NodeID, n.Root)
	fmt.Fprintf(stdout, "delugefs: bittorrent on %s\n", ln.Addr())
	var mp *mount.Point
	if mountDir != "" {
		fsys := fs.New(n.Repo, n.Store, fs.Options{Logger: log, Remote: n.Swarms})
		mo := fs.MountConfig(fs.MountOptions{AllowOther: cfg.allowOther, Debug: cfg.debugFUSE})
		mo.Name = "delugefs:" + cfg.id
		mp, err = mount.Mount(mountDir, fsys, mo)
		if err != nil {
			stopVolume()
			<-volumeDone
			return fmt.Errorf("mount %s: %w", mountDir, err)
		}
		fmt.Fprintf(stdout, "delugefs: mounted at %s\n", mountDir)
	}

	var runErr error
	var unmounted <-chan struct{}
	if mp != nil {
		unmounted = mp.Done()
	}
	select {
	case <-ctx.Done():
		log.Info("stopping", "cause", context.Cause(ctx))
	case runErr = <-volumeDone:
		volumeDone <- runErr // let the wait below see it too
		if runErr == nil {
			runErr = errors.New("the node stopped")
		}
	case <-unmounted:
		log.Warn("the mount was unmounted from outside; stopping", "dir", mountDir)
	}
	if mp != nil {
		if err := mp.Unmount(); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("unmount %s: %w", mountDir, err))
		}
	}
	stopVolume()
	<-volumeDone
	return runErr
}

// checkMountPoint checks that dir is an existing directory with nothing live
// mounted on it, recovering a mount left behind by a crashed process.
func checkMountPoint(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", usageError{err}
	}
	if err := mount.Recover(abs); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", usageError{fmt.Errorf("mount point %s does not exist: create it first", abs)}
		}
		if errors.Is(err, mount.ErrBusy) {
			return "", usageError{fmt.Errorf("mount point %s is busy: something is mounted there already", abs)}
		}
		return "", fmt.Errorf("mount point %s: %w", abs, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("mount point %s: %w", abs, err)
	}
	if !fi.IsDir() {
		return "", usageError{fmt.Errorf("mount point %s is not a directory", abs)}
	}
	return abs, nil
}

// usageOrRuntime marks the errors of node.Open that come from how the
// command was called.
func usageOrRuntime(err error) error {
	for _, e := range []error{node.ErrNotVolume, node.ErrWrongID, node.ErrNotEmpty, node.ErrBadID, node.ErrLocked} {
		if errors.Is(err, e) {
			return usageError{err}
		}
	}
	return err
}
