// Package discovery finds the other nodes of a DelugeFS volume on the LAN
// by multicast DNS (RFC 6762) and DNS-SD (RFC 6763), and keeps the table
// of the live ones.
//
// # Use
//
// A node creates one Discovery per volume with New and runs its Serve
// under the volume supervisor. It announces the service ServiceType with
// the instance name InstanceName(volume, node) and a TXT record carrying
// the volume id, node id, BitTorrent port, API port and format version
// (keys vol, node, bt, api, fmt). The rest of the node reads the members
// with Snapshot (never blocks) or follows them with Subscribe (PeerUp,
// PeerDown, PeerChanged, starting with a PeerUp per current member). Nodes
// of other volumes are not members; Volumes lists them. Peers given by
// hand (Config.StaticPeers, --peer) are members from the start with
// NodeID StaticPrefix+"host:port"; the node confirms them by their API.
//
// Before --create, Probe listens for a second or two and says whether a
// volume id is in use; a node without a local volume clones from one of
// ProbeResult.Members.
//
// # How a node going away is noticed
//
//   - Clean stop: Serve sends a goodbye (its records with TTL 0); peers
//     report it down at once (CauseGoodbye).
//   - Silence: every node multicasts a PTR query about once per Interval
//     and every node answers each query to the group, so each live peer is
//     heard about once per Interval; one not heard for TTL is down
//     (CauseExpired). A node that sees someone else's query within half an
//     interval skips its own, so the LAN carries about one query per
//     interval, and N answers to it.
//   - Failed connections: the node calls PeerUnreachable(nodeID); the peer
//     is down at once (CauseUnreachable) and its announcements are ignored
//     for TTL so it does not flap back while still unreachable.
//
// # What comes from pion/mdns and what is ours
//
// The responder is github.com/pion/mdns/v2: it answers PTR, SRV, TXT and
// A questions for our instance, so stock browsers (avahi-browse,
// dns-sd) see the service, and SetPorts re-announces the TXT record with
// its UpdateTXT. Its browser is not used: it reports only
// additions and changes, never removals; it does not report an instance
// again after it vanished and came back unchanged; it has no notion of
// last-seen; and it queries from an ephemeral port, so answers come back
// by unicast and other nodes cannot learn from them. Nor does it send
// goodbyes. This package therefore has its own browse socket on port
// 5353 (shared by SO_REUSEADDR): it sends the PTR queries, parses every
// answer on the group with golang.org/x/net/dns/dnsmessage (parseMessage)
// and sends the goodbye (buildResponse with TTL 0) after the responder
// is closed, so no answer follows it.
//
// Only IPv4 (224.0.0.251) is spoken. The interface set is fixed when
// Serve starts; a supervisor restart picks up new interfaces.
//
// # Structure
//
// The peer table (table) is a pure state machine fed with sightings and
// the time; it is tested without sockets. The actor (Discovery.Serve, the
// loop in browser.run) owns it and all I/O; it publishes an immutable
// member list through an atomic pointer and queues events per subscriber
// under Discovery.mu. Subscriber pumps are goroutines that end with their
// context.
//
// The package netnstest builds network namespaces joined by a bridge for
// tests that need several real hosts.
package discovery
