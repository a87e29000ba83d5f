package dht

import (
	"context"
	"fmt"
	"net/netip"

	anacdht "github.com/anacrolix/dht/v2"
	"github.com/delugefs/delugefs/bt"
)

// Announce tells the DHT that this host serves h on the BitTorrent port
// port: a get_peers traversal towards h, then announce_peer to the closest
// nodes that answered. It waits for Serve to be running and returns when the
// announces are done, ErrNoNodes or ErrNoResponse when nobody could be told,
// or the context's error (bounded by Config.LookupTimeout).
func (s *Server) Announce(ctx context.Context, h bt.InfoHash, port int) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("dht: announce %s: port %d out of range", h, port)
	}
	s.announces.Add(1)
	if err := s.traverse(ctx, h, port, nil); err != nil {
		return fmt.Errorf("dht: announce %s: %w", h, err)
	}
	return nil
}

// GetPeers looks up the peers of h, calling found once for each distinct
// address as replies arrive (from this goroutine; found must not block for
// long). It waits for Serve to be running and returns when the traversal
// ends (nil, even if no peer was found), ErrNoNodes or ErrNoResponse when
// nobody could be asked, or the context's error (bounded by
// Config.LookupTimeout).
func (s *Server) GetPeers(ctx context.Context, h bt.InfoHash, found func(netip.AddrPort)) error {
	s.lookups.Add(1)
	if err := s.traverse(ctx, h, 0, found); err != nil {
		return fmt.Errorf("dht: get_peers %s: %w", h, err)
	}
	return nil
}

// begin waits until Serve runs and registers an operation on it (see
// tryBegin) whose context also ends with ctx.
func (s *Server) begin(ctx context.Context) (*op, error) {
	for {
		if o, ok := s.tryBegin(); ok {
			stop := context.AfterFunc(ctx, o.cancel)
			cancel := o.cancel
			o.cancel = func() { stop(); cancel() }
			return o, nil
		}
		s.mu.Lock()
		closed, up := s.closed, s.up
		s.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// traverse runs one get_peers traversal towards h, announcing port to the
// closest nodes when port is not 0, and reports the peers found.
func (s *Server) traverse(ctx context.Context, h bt.InfoHash, port int, found func(netip.AddrPort)) error {
	o, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer o.end()
	var opts []anacdht.AnnounceOpt
	if port != 0 {
		opts = append(opts, anacdht.AnnouncePeer(anacdht.AnnouncePeerOpts{Port: port}))
	}
	a, err := o.srv.AnnounceTraversal(h, opts...)
	if err != nil {
		return fmt.Errorf("%w (%v)", ErrNoNodes, err)
	}
	seen := make(map[netip.AddrPort]struct{})
	for {
		select {
		case pv, ok := <-a.Peers:
			if !ok {
				if a.TraversalStats().NumResponses == 0 {
					return ErrNoResponse
				}
				return nil
			}
			for _, p := range pv.Peers {
				ap := p.ToNodeAddrPort().AddrPort
				ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
				if _, dup := seen[ap]; dup || !ap.IsValid() || ap.Port() == 0 {
					continue
				}
				seen[ap] = struct{}{}
				s.found.Add(1)
				if found != nil {
					found(ap)
				}
			}
		case <-o.ctx.Done():
			a.Close()
			for range a.Peers {
				// Drain until anacrolix has stopped the traversal and its
				// announces: Peers is closed last.
			}
			if err := ctx.Err(); err != nil {
				return err // the caller's context
			}
			if o.srvCtx.Err() != nil {
				return ErrStopped
			}
			return o.ctx.Err() // LookupTimeout
		}
	}
}
