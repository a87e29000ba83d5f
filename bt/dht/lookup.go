package dht

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	anacdht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/int160"
	k_nearest_nodes "github.com/anacrolix/dht/v2/k-nearest-nodes"
	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
	"github.com/anacrolix/dht/v2/traversal"
	"github.com/anacrolix/dht/v2/types"
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
// address: first those announced to this node, then others as replies
// arrive. found runs on the caller's goroutine and must not block for long.
// GetPeers waits for Serve to be running and returns when the traversal
// ends (nil, even if no peer was found), ErrNoNodes or ErrNoResponse when
// nobody could be asked, ErrStopped when Serve stopped, or the context's
// error (the traversal itself is bounded by Config.LookupTimeout).
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

// traverse runs one get_peers traversal towards h, reports the peers found
// and, when port is not 0, announces port to the closest nodes that
// answered. It drives anacrolix's traversal package itself rather than
// Server.AnnounceTraversal, which queries our own node and every node twice
// (once per address form, IPv4 and IPv4-mapped IPv6) and cannot be cut short
// by a context.
func (s *Server) traverse(ctx context.Context, h bt.InfoHash, port int, found func(netip.AddrPort)) error {
	o, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer o.end()
	values := make(chan []krpc.NodeAddr) // from the query goroutines to this one
	op := traversal.Start(traversal.OperationInput{
		Target: krpc.ID(h),
		DoQuery: func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
			res := o.srv.GetPeers(qctx, anacdht.NewAddr(addr.UDP()), int160.FromByteArray(h), false, anacdht.QueryRateLimiting{})
			if r := res.Reply.R; r != nil && len(r.Values) > 0 {
				select {
				case values <- r.Values:
				case <-qctx.Done(): // the traversal is stopping
				}
			}
			ret := res.TraversalQueryResult(addr)
			ret.Nodes, ret.Nodes6 = canonNodes(ret.Nodes), canonNodes(ret.Nodes6)
			return ret
		},
		NodeFilter: func(n types.AddrMaybeId) bool {
			if (n.Id.Ok && n.Id.Value.AsByteArray() == s.id) || canon(n.Addr.AddrPort) == s.addr {
				return false // ourselves
			}
			return o.srv.TraversalNodeFilter(n)
		},
		DataFilter: func(data any) bool { _, ok := data.(string); return ok }, // the token
	})
	stop := func() {
		op.Stop()
		<-op.Stopped() // every query has returned
	}
	start, err := o.srv.TraversalStartingNodes()
	if err != nil {
		stop()
		return fmt.Errorf("%w (%v)", ErrNoNodes, err)
	}
	for i := range start {
		start[i].Addr.AddrPort = canon(start[i].Addr.AddrPort)
	}
	op.AddNodes(start)

	seen := make(map[netip.AddrPort]struct{})
	report := func(vs []krpc.NodeAddr) {
		for _, v := range vs {
			ap := canon(v.ToNodeAddrPort().AddrPort)
			if _, dup := seen[ap]; dup || !ap.IsValid() || ap.Port() == 0 {
				continue
			}
			seen[ap] = struct{}{}
			s.found.Add(1)
			if found != nil {
				found(ap)
			}
		}
	}
	report(s.peers.GetPeers(peer_store.InfoHash(h))) // peers announced to this node count too
walk:
	for {
		select {
		case vs := <-values:
			report(vs)
		case <-op.Stalled(): // nothing left to ask and no query outstanding
			break walk
		case <-o.ctx.Done():
			stop()
			return o.err(ctx)
		}
	}
	stop()
	if op.Stats().NumResponses == 0 {
		return ErrNoResponse
	}
	if port == 0 {
		return nil
	}

	var acks atomic.Int64
	var wg sync.WaitGroup
	op.Closest().Range(func(e k_nearest_nodes.Elem) {
		wg.Add(1)
		go func() { // ends with the query: an answer, QueryTimeout or o.ctx
			defer wg.Done()
			p := port
			res := o.srv.Query(o.ctx, anacdht.NewAddr(e.Key.Addr.UDP()), "announce_peer", anacdht.QueryInput{
				MsgArgs: krpc.MsgArgs{InfoHash: krpc.ID(h), Port: &p, Token: e.Data.(string)},
			})
			if res.ToError() == nil {
				acks.Add(1)
			}
		}()
	})
	wg.Wait()
	s.acks.Add(acks.Load())
	if acks.Load() == 0 {
		if o.ctx.Err() != nil {
			return o.err(ctx)
		}
		return ErrNoResponse
	}
	return nil
}

// err says why o.ctx ended: the caller's context, Serve stopping, or
// LookupTimeout.
func (o *op) err(callerCtx context.Context) error {
	if err := callerCtx.Err(); err != nil {
		return err
	}
	if o.srvCtx.Err() != nil {
		return ErrStopped
	}
	return o.ctx.Err()
}

// canon returns ap with an IPv4-mapped address turned into plain IPv4, the
// one form we use so that no node is counted (or queried) twice.
func canon(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// canonNodes applies canon to the addresses of nodes, in place.
func canonNodes(nodes []krpc.NodeInfo) []krpc.NodeInfo {
	for i := range nodes {
		nodes[i].Addr.FromAddrPort(canon(nodes[i].Addr.ToNodeAddrPort().AddrPort))
	}
	return nodes
}
