package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/delugefs/delugefs/cluster/discovery"
	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/fs/mount"
	"github.com/delugefs/delugefs/node"
	"github.com/delugefs/delugefs/volume"
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

	v, err := volume.Open(ctx, volume.Options{
		ID:         cfg.id,
		Roots:      cfg.roots,
		Create:     cfg.create,
		Key:        cfg.key,
		Listen:     cfg.listen,
		API:        cfg.api,
		Peers:      cfg.peers,
		MDNS:       cfg.mdns,
		Network:    discovery.Network{Interfaces: cfg.mdnsIfaces},
		NoPeerWait: cfg.readWait,
		NoDHT:      cfg.noDHT,
		PublicDHT:  cfg.publicDHT,
		Log:        log,
	})
	if err != nil {
		return usageOrRuntime(err)
	}
	// Start runs the volume supervisor: the nodes, the listener, the API,
	// discovery and the sync; a joining node clones the namespace first.
	if err := v.Start(ctx); err != nil {
		return usageOrRuntime(err)
	}
	n := v.Primary()
	for _, n := range v.Nodes {
		fmt.Fprintf(stdout, "delugefs: volume %s, node %s, root %s\n", n.Config.VolumeID, n.Config.NodeID, n.Root)
	}
	fmt.Fprintf(stdout, "delugefs: bittorrent on %s\n", v.BTAddr())
	fmt.Fprintf(stdout, "delugefs: api on %s\n", v.APIAddr())
	rt, rterr := writeRuntime(v)
	if rterr != nil {
		log.Warn("runtime file (delugefs status finds the process by it)", "err", rterr)
	}
	defer removeRuntime(rt)

	var mp *mount.Point
	if mountDir != "" {
		fsys := fs.New(n.Repo, n.Store, fs.Options{Logger: log, Remote: n.Swarms, Cluster: v, RemoteTimeout: cfg.readWait + 20*time.Second})
		mo := fs.MountConfig(fs.MountOptions{AllowOther: cfg.allowOther, Debug: cfg.debugFUSE})
		mo.Logger = log
		mo.Name = "delugefs:" + cfg.id
		mp, err = mount.Mount(mountDir, fsys, mo)
		if err != nil {
			v.Stop()
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
		// cgofuse unmounts on SIGINT and SIGTERM too: let it finish
		// rather than race it (libfuse's own fusermount would then print
		// "failed to unmount" over our lazy unmount).
		select {
		case <-unmounted:
		case <-time.After(2 * time.Second):
		}
	case <-v.Done():
		runErr = v.Err()
		if runErr == nil {
			runErr = errors.New("the node stopped")
		}
	case <-unmounted:
		log.Warn("the mount was unmounted from outside; stopping", "dir", mountDir)
	}
	// The mount is stopped before the nodes, so every flush the kernel
	// sends at unmount still finds the namespace actor alive.
	if mp != nil {
		if err := mp.Unmount(); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("unmount %s: %w", mountDir, err))
		}
	}
	if err := v.Stop(); err != nil {
		runErr = errors.Join(runErr, err)
	}
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
	for _, e := range []error{volume.ErrUsage, node.ErrNotVolume, node.ErrWrongID, node.ErrNotEmpty, node.ErrBadID, node.ErrLocked} {
		if errors.Is(err, e) {
			return usageError{err}
		}
	}
	return err
}
