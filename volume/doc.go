// Package volume runs one DelugeFS volume in a process: one node per disk
// (--root), the process's BitTorrent listener and HTTP API, discovery of
// the other nodes (mDNS and --peer), and the namespace sync between all of
// them, under one supervisor (DESIGN.md §4, the "volume supervisor").
//
// # Nodes of one process
//
// The first --root is the primary: the mount shows its namespace, writes
// land on its disk, the API serves its repository at /git/<volume>, and
// discovery announces it. Every other root is a node of its own (its disk
// can move to another machine and start alone) whose namespace follows the
// primary's through the same sync as a remote peer's, over the process's
// own API. One swarm registry serves the blobs of every disk: an inbound
// connection for a blob no swarm runs for is resolved to the disk that
// holds it complete, and a read of a blob another disk of the process holds
// is a pread on that disk.
//
// # Joining
//
// A root that holds no node yet is created with --create (the volume's
// first node: the volume id must not be in use by live nodes) or joins the
// volume: beside a running root of the same process it takes that root's
// key; alone it needs the key (--key, from node.json's volume_key of any
// node) and a peer to clone from, found by mDNS or given with --peer. Open
// fails with a clear error, touching nothing, when there is none; the
// joining node fetches the namespace before Open returns, so a mount shows
// the whole volume at once.
//
// # Peers
//
// Peers come from discovery (mDNS announcements, --peer addresses), and
// from notices: a node that tells us its head is a peer. For each peer the
// volume keeps its API client, the BitTorrent address of its nodes (every
// swarm tries every peer), its free space and its complete blobs (have
// lists, polled), which give user.delugefs.copies and `delugefs status`.
package volume
