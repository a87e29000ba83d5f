package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/swarm"
)

// redialEvery is how often serve asks the swarm to dial the given peers
// it is not connected to (the swarm ignores those it is connected to).
const redialEvery = time.Second

// serve runs sw and, when ln is not nil, a listener routing to reg on ln,
// and keeps asking sw to dial peers: a peer that drops us, or restarts, or
// starts a new download of the same torrent (aria2c does, after fetching a
// magnet's metadata) is found again. It returns when ctx ends (nil) or
// either fails.
func serve(ctx context.Context, sw *swarm.Swarm, reg *swarm.Registry, ln net.Listener, log *slog.Logger, peers []string) error {
	g, gctx := errgroup.WithContext(ctx)
	if len(peers) > 0 {
		g.Go(func() error { // the dialer; returns when gctx ends
			tick := time.NewTicker(redialEvery)
			defer tick.Stop()
			for {
				for _, p := range peers {
					sw.AddPeer(p) // fails only once the swarm stops, and then gctx ends too
				}
				select {
				case <-gctx.Done():
					return nil
				case <-tick.C:
				}
			}
		})
	}
	g.Go(func() error { // the swarm actor; returns when gctx ends
		if err := sw.Serve(gctx); err != nil {
			return fmt.Errorf("swarm %v: %w", sw.InfoHash(), err)
		}
		return nil
	})
	if ln != nil {
		l := swarm.NewListener(ln, reg, log)
		g.Go(func() error { return l.Serve(gctx) }) // returns when gctx ends
	}
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// tcpPort returns the port of a TCP address, or 0.
func tcpPort(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	return 0
}

// blobPath is where a store rooted at root keeps blob h (see piece.Store).
func blobPath(root string, h bt.InfoHash) string {
	hx := h.String()
	return filepath.Join(root, "blobs", hx[:2], hx)
}
