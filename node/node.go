package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/delugefs/delugefs/actors"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/piece"
)

// Node is one --root: its identity, namespace and blobs. Open it, Serve it
// under a supervisor, Close it after Serve has returned.
type Node struct {
	Root   string
	Config *Config
	Repo   *meta.Repo
	Store  *piece.Store
	Swarms *Swarms

	sup *actors.Supervisor // the node's supervisor: meta, swarms

	log  *slog.Logger
	lock *os.File // held for the node's life: one process per root
}

// Options tune Open.
type Options struct {
	// Create makes a new volume in an empty or missing root.
	Create bool
	// JoinKey, when set and root holds no node yet (missing or empty),
	// makes a new node of an existing volume there with this volume key
	// (base64, from another node's node.json). Its namespace starts empty
	// and is filled by the first sync with a peer.
	JoinKey string
	// Log receives the node's events; nil means slog.Default().
	Log *slog.Logger
	// Swarms configure the node's BitTorrent side.
	Swarms SwarmOptions
}

// Open checks root and opens the node of volume volumeID in it.
func Open(root, volumeID string, opts Options) (*Node, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := CheckVolumeID(volumeID); err != nil {
		return nil, err
	}
	var cfg *Config
	if opts.Create {
		cfg, err = CreateConfig(root, volumeID)
	} else if opts.JoinKey != "" && !HasConfig(root) {
		cfg, err = JoinConfig(root, volumeID, opts.JoinKey)
	} else {
		if fi, serr := os.Stat(root); serr != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%w: %s does not exist (use --create to make a new volume there)", ErrNotVolume, root)
		}
		cfg, err = LoadConfig(root, volumeID)
	}
	if err != nil {
		return nil, err
	}
	lock, err := lockRoot(root)
	if err != nil {
		return nil, err
	}
	n := &Node{Root: root, Config: cfg, lock: lock, log: opts.Log.With("node", cfg.NodeID)}
	if n.Store, err = piece.OpenStore(root); err != nil {
		n.Close()
		return nil, fmt.Errorf("node: open blob store: %w", err)
	}
	if n.Repo, err = meta.Open(filepath.Join(root, "meta.git"), meta.Options{Logger: n.log, Name: "delugefs node " + cfg.NodeID, NodeID: cfg.NodeID, RestoreBlob: n.Store.Restore, BeforeCheckpoint: n.Store.Flush}); err != nil {
		n.Close()
		return nil, fmt.Errorf("node: open namespace: %w", err)
	}
	n.sup = actors.NewSupervisor("node "+cfg.NodeID, n.log)
	n.sup.Add(actors.Critical(actors.Func("meta", n.Repo.Serve)))
	n.Swarms = newSwarms(n.Store, n.sup, opts.Swarms, n.log)
	return n, nil
}

// Serve runs the node's actors (the namespace, the swarms) until ctx ends.
// The namespace is critical: if its actor cannot run, the node stops with
// its error.
func (n *Node) Serve(ctx context.Context) error {
	return actors.Run(ctx, n.sup)
}

// Close releases the node's files. Call it after Serve has returned.
func (n *Node) Close() error {
	var errs []error
	if n.Repo != nil {
		errs = append(errs, n.Repo.Close())
	}
	if n.lock != nil {
		errs = append(errs, n.lock.Close())
	}
	return errors.Join(errs...)
}
