// Package dht is DelugeFS's glue over the mainline DHT (BEP 5) of
// github.com/anacrolix/dht/v2: it finds the peers of a blob beyond the LAN.
//
// # Use
//
//	d, err := dht.New(dht.Config{
//		Addr:      "0.0.0.0:6881",
//		NodeID:    dht.NodeIDFromString(nodeID), // stable across restarts
//		Bootstrap: clusterPeers,                 // UDP addresses of other DHT nodes
//	})
//	supervisor.Add(d)                // d.Serve(ctx) is the actor
//	d.AddNode(addr)                  // a cluster peer found later by discovery
//	d.Announce(ctx, hash, btPort)    // "I hold this blob on btPort"
//	d.GetPeers(ctx, hash, func(p netip.AddrPort) { ... })
//
// New binds the UDP socket, so Addr is known before Serve runs. Serve is the
// actor: it starts the anacrolix server on that socket, pings the given
// nodes, bootstraps the routing table, keeps it fresh (anacrolix's table
// maintainer) and, when its context ends, stops every lookup in flight, closes
// the socket and returns once no query of ours is outstanding. A supervisor
// may call Serve again after it returns: the same address is bound again.
// Close releases the socket of a Server whose Serve will never run.
//
// # Where packets go
//
// The DHT contacts only the nodes it is given (Config.Bootstrap, AddNode) and
// the nodes those report in their replies; this is the StartingNodes function
// handed to anacrolix, which otherwise falls back on the public routers
// (router.bittorrent.com and friends). The public bootstrap routers are added
// only when Config.PublicBootstrap is set, which is never a default and never
// done in tests. anacrolix/dht itself does no NAT-PMP, UPnP or public IP
// discovery; the package sets its own send limiter and logger so no global
// state of anacrolix is shared between servers.
//
// Like any mainline DHT node it also answers queries from anyone who reaches
// its port, adds those querying nodes to its routing table, and queries the
// nodes other nodes report; on a LAN-only volume bind Addr to a private
// address or firewall the port.
//
// # Lookups
//
// Announce and GetPeers drive anacrolix's traversal package directly rather
// than its Server.AnnounceTraversal, which queries the node itself and every
// node twice (once per address form, IPv4 and IPv4-mapped IPv6) and takes no
// context: here every address is brought to one form, our own node is
// skipped, each other node is told at most once, and every query ends with
// the lookup's context.
//
// # Peers of an info-hash
//
// Peers announced to this node are kept by a small in-memory store keyed by
// IP and port (so several DelugeFS nodes on one host each stay listed), for
// PeerTTL, at most MaxPeersPerHash per hash and MaxHashes hashes.
//
// # Stopping
//
// anacrolix runs some queries with no context of ours (bootstrap, bucket
// refresh, table pings); once the socket is closed they end within
// Config.QueryTimeout, and Serve waits that long at most for them, so that
// nothing of the Server is left running when Serve returns.
//
// # Concurrency
//
// All methods are safe for concurrent use. Announce and GetPeers wait for
// Serve to be running (bounded only by their context) and are cut short,
// with ErrStopped, when Serve stops. Once running, every lookup is bounded
// by Config.LookupTimeout. Stats reads counters; the routing-table figures
// and the anacrolix-side counters are zero when not serving and restart
// from zero with each Serve.
package dht
