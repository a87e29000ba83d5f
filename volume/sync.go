package volume

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/cluster/nsync"
	"github.com/delugefs/delugefs/node"
)

// clone fills a joining primary's empty namespace from the first peer that
// serves it, before the volume is mounted. On failure the new node's files
// are removed, so the next start is a clean join again.
func (v *Volume) clone(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, v.opts.JoinTimeout)
	defer cancel()
	n := v.Nodes[0]
	var errs []error
	for _, p := range v.candidates() {
		c, err := v.client(p)
		if err != nil {
			return err
		}
		head, err := v.fetchInto(ctx, c, n)
		if err == nil {
			v.log.Info("joined the volume", "from", p, "head", head)
			v.peers.add(p, "", false)
			return nil
		}
		if errors.Is(err, api.ErrUnauthorized) {
			err = usagef("the peer refuses the volume key given with --key")
		}
		errs = append(errs, fmt.Errorf("clone from %s: %w", p, err))
	}
	v.forgetNewNode(n.Root)
	if len(errs) == 0 {
		return fmt.Errorf("%w %q: no peer answered", ErrNoPeer, v.opts.ID)
	}
	return errors.Join(errs...)
}

// candidates returns the API addresses of the peers known now: given by
// hand first, then found.
func (v *Volume) candidates() []string {
	out := slices.Clone(v.joinFrom)
	seen := map[string]bool{}
	for _, p := range out {
		seen[p] = true
	}
	if v.disc != nil {
		for _, p := range v.disc.Snapshot() {
			if a := p.APIAddr(); a != "" && !seen[a] && p.NodeID != v.Nodes[0].Config.NodeID && (p.VolumeID == "" || p.VolumeID == v.opts.ID) {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	for _, p := range v.peers.list() {
		if !seen[p.api] {
			seen[p.api] = true
			out = append(out, p.api)
		}
	}
	return out
}

// forgetNewNode removes what joining made in root (node.json, the
// repository, the store's directories), leaving anything else alone.
func (v *Volume) forgetNewNode(root string) {
	for _, name := range []string{"node.json", "meta.git", "blobs", "tmp", "lock"} {
		os.RemoveAll(filepath.Join(root, name))
	}
	removeIfEmpty(root)
}

// newSyncers makes each node's namespace sync. The primary syncs with the
// peers; every other disk's node follows the primary through the
// process's own API (and the primary hears of nothing from them: they
// take no writes of their own).
func (v *Volume) newSyncers() error {
	_, port, _ := net.SplitHostPort(v.apiAddr.String())
	advertised := ""
	if host, _, _ := net.SplitHostPort(v.opts.API); host != "" && host != "0.0.0.0" && host != "::" {
		advertised = v.apiAddr.String()
	} else {
		advertised = ":" + port // the server fills in the host the notice came from
	}
	v.advertised = advertised
	for i, n := range v.Nodes {
		s, err := nsync.New(nsync.Config{
			Node:     n.Config.NodeID,
			Addr:     advertised,
			Volume:   v.opts.ID,
			Key:      n.Config.VolumeKey,
			GitDir:   filepath.Join(n.Root, "meta.git"),
			Repo:     n.Repo,
			Interval: v.opts.AntiEntropy,
			OnFailure: func(node string, err error) {
				v.log.Debug("sync", "peer", node, "err", err)
				if v.disc != nil && nsync.Unreachable(err) {
					v.disc.PeerUnreachable(node) // a dead peer is noticed in seconds
				}
			},
			Logger: v.log.With("node", n.Config.NodeID),
		})
		if err != nil {
			return fmt.Errorf("volume: sync of node %s: %w", n.Config.NodeID, err)
		}
		if i > 0 {
			if err := s.AddPeer(v.Nodes[0].Config.NodeID, v.localAPI()); err != nil {
				return fmt.Errorf("volume: sync of node %s: %w", n.Config.NodeID, err)
			}
		}
		v.syncers = append(v.syncers, s)
	}
	return nil
}

// followPrimary tells the other disks' syncers at once when the primary's
// head moves, instead of leaving it to their anti-entropy.
func (v *Volume) followPrimary(ctx context.Context) error {
	if len(v.Nodes) < 2 {
		<-ctx.Done()
		return nil
	}
	w := v.Nodes[0].Repo.Watch()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w:
			n := api.Notice{Node: v.Nodes[0].Config.NodeID, Head: v.Nodes[0].Repo.Head(), Addr: strings.TrimPrefix(v.localAPI(), "http://")}
			for _, s := range v.syncers[1:] {
				s.Notice(n)
			}
		}
	}
}

// fetchInto fetches the peer's namespace and integrates it into n.
func (v *Volume) fetchInto(ctx context.Context, c *api.Client, n *node.Node) (plumbing.Hash, error) {
	f, err := nsync.Fetch(ctx, c, filepath.Join(n.Root, "meta.git"), nsync.Options{})
	if err != nil {
		return plumbing.ZeroHash, err
	}
	defer f.Close()
	if f.Head.IsZero() || f.Skipped {
		return f.Head, nil
	}
	res, err := n.Repo.Integrate(ctx, f.Head, f.Store)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("integrate %s: %w", f.Head, err)
	}
	return res.Head, nil
}
