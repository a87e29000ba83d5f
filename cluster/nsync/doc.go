// Package nsync keeps the namespaces of a volume's nodes in sync: it
// fetches a peer's namespace commits over git's smart HTTP protocol (the
// api package serves it at /git/<volume>), hands them to meta.Repo to
// integrate, and tells the peers when our own head changes.
//
// # Fetch
//
// Fetch GETs the peer's ref advertisement and compares the advertised head
// with what we have: a head that is zero, one the caller lists as known
// (our head, heads already integrated) or a commit our repository holds
// ends the fetch there, so a periodic check between nodes in sync costs one
// small GET per peer (about 270 bytes on the wire). Otherwise one
// upload-pack POST wants the head and offers as "have" the caller's hints
// and our newest commits (by committer time, DefaultMaxHaves of them), so
// only the difference travels: a commit of one file into a directory
// brings 4 objects (commit, two trees, the manifest).
//
// Our repository belongs to meta.Repo, its only writer; Fetch never writes
// it. It speaks the protocol through go-git's transport (an upload-pack
// session over our own http.Client, so it can bound and count what
// arrives) and decodes the pack with go-git's parser into an overlay
// store: writes go to go-git's memory storage, reads fall back to a fresh
// read-only filesystem storage opened on our git dir for this fetch
// (go-git's filesystem storage is not safe for concurrent use and caches
// its pack index). The overlay does not implement storer.PackfileWriter,
// so the parser stores each object with SetEncodedObject and resolves the
// bases of thin deltas from the overlay, from the objects received or
// ours. Fetched.Store is that overlay: meta.Repo.Integrate reads the
// peer's history from it and copies what it keeps.
//
// # Untrusted peers
//
// A peer holding the volume's token can still be broken or hostile. The
// advertisement is bounded (1 MiB), the pack response by Limits.PackBytes
// (plus side-band framing); the whole pack is read, then checked before
// anything decodes it: signature, version, object count (Limits.Objects),
// its SHA-1 trailer (a truncated or altered pack fails here), and each
// object's declared size and, for deltas, the size of the result
// (Limits.ObjectSize, Limits.Inflated), by inflating each object once into
// a bounded sink. go-git's parser then decodes it, and every received
// object's references (a commit's tree and parents, a tree's entries) must
// be objects received or ours, so the history of the head is whole before
// Integrate sees it. Errors say which peer and head, and match the
// sentinels: ErrBadPack, ErrTooLarge, ErrIncomplete, ErrNoHead, and the api
// package's ErrUnauthorized (wrong volume key), ErrNotFound, ErrServer.
// A closed port fails at once; a silent peer fails at Options.Timeout.
// Unreachable tells the failures of reaching a peer (refused, reset,
// timed out) from those of a peer that answered wrongly.
//
// # Clone
//
// Clone makes a new bare repository from a peer's whole history, for a
// node that starts without a local volume. It builds the repository in a
// temporary directory beside the target (the pack spooled to disk, checked
// as above with CloneLimits, stored with its index by go-git's filesystem
// storage, every object's references checked), sets the peer's branch
// (refs/heads/main, HEAD pointing to it), fsyncs it and renames it into
// place, so a failed clone leaves nothing and meta.Open opens a finished
// one.
//
// # Syncer
//
// A Syncer is the actor that wires one node's meta.Repo (the Repo
// interface) to its peers; Serve runs it under a supervisor. Peers are
// added and removed with AddPeer and RemovePeer (from discovery); a notice
// from an unknown node that carries its address adds it, and one from a
// peer whose address fails moves the peer to the address the notice gives.
//
// Announce: when Repo.Watch fires (our head changed and git readers see
// it), the new head is POSTed as an api.Notice to every peer, each call in
// its own goroutine with NotifyTimeout, at most one in flight per peer (a
// newer head waits behind it and replaces older waiting ones), so a dead
// or silent peer delays no other. A head learned from a peer is not
// announced: the frontier protocol (meta/merge) has a node announce only
// what it made (a local commit or a canonical merge:
// IntegrateResult.Announce), never a fast-forward to a peer's head. The Syncer records the
// peer's head before it calls Integrate, so the Watch that the
// fast-forward causes finds it, whatever the order of the two events.
//
// Fetch: a notice from a peer (the node's api.Handler.Notify calls Notice)
// or the anti-entropy tick (every Interval, 5 s by default) fetches from
// that peer and calls Repo.Integrate with the head and Fetched.Store. One
// fetch per peer is in flight at a time; notices arriving meanwhile become
// one more fetch when it ends. A notice of a head we hold or already
// integrated does nothing. A failed fetch or integration is retried after
// a backoff per peer (MinBackoff doubling to MaxBackoff, with jitter;
// anti-entropy skips the peer until then) and reported to OnFailure (which
// passes those for which Unreachable is true to discovery's
// PeerUnreachable); a notice from the peer ends its backoff, since the
// peer has just shown it is alive. A notice can name a head the peer does
// not serve yet (meta.Repo.Head moves at the commit, the branch git
// readers see at the flush just after): when the fetch finds an older
// head and we lack the announced one, the peer is fetched from again
// MinBackoff later, up to three times. At start Serve announces our head
// to every peer (and again at the next Watch) and fetches from each, so a
// restarted node catches up without waiting for a change.
//
// Stats counts fetches (skipped ones too), bytes, objects, integrations,
// failures and notices, in all and per peer with the last sync time and
// last error, for /status.
//
// # Concurrency
//
// Fetch and Clone are safe for concurrent use, also on one repository.
// Syncer's methods are safe for concurrent use and never block; Serve owns
// the peer table and runs fetches and notices in goroutines it waits for
// before it returns. Integrate is called concurrently for different peers
// (meta.Repo serialises it).
package nsync
