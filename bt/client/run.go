package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/swarm"
)

// serve runs sw and, when ln is not nil, a listener routing to reg on ln,
// after asking sw to dial peers. It returns when ctx ends (nil) or either
// fails.
func serve(ctx context.Context, sw *swarm.Swarm, reg *swarm.Registry, ln net.Listener, log *slog.Logger, peers []string) error {
	for _, p := range peers {
		if err := sw.AddPeer(p); err != nil {
			return fmt.Errorf("add peer %s: %w", p, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
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
