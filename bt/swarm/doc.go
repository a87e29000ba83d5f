// Package swarm moves the blocks of one blob between peers: a Swarm actor
// per info-hash, its peer connections, the choking algorithm, and the
// Listener that routes inbound connections by info-hash.
//
// # How a node wires it
//
//	reg := swarm.NewRegistry()
//	ln, _ := swarm.Listen(":6881", reg, log)     // supervise ln.Serve(ctx)
//	s, _ := swarm.New(info, swarm.Config{Store: store, Logger: log, ListenPort: 6881})
//	reg.Add(s)                                    // inbound connections for info.Hash() reach s
//	// supervise s.Serve(ctx); on stop: reg.Remove(s), then s.Close()
//	s.AddPeer("10.0.0.7:6881")                    // from discovery, the DHT, a magnet's x.pe
//	n, err := s.ReadAt(ctx, p, off)               // the filesystem's read of a file it does not hold
//
// NewMagnet makes a swarm from an info-hash alone: it fetches the info
// dictionary from its peers with ut_metadata (BEP 9), checks its SHA-1,
// opens the blob and goes on like New (Ready is closed then).
//
// ReadAt registers the byte range with the picker, with the context's
// deadline as its urgency, and returns as soon as the pieces covering it
// are verified; a range already verified is read from the blob with no
// message hop. A Reader (NewReader) is a file handle: its sequential reads
// grow a read-ahead window, a seek moves it, and while it is open the
// first and last pieces are fetched early. A read no connected peer can
// serve fails with ErrNoPeers after Config.NoPeerWait. Unless
// Config.StreamOnly is set the swarm downloads the whole blob
// (rarest-first after what readers need); Done is closed when every piece
// is verified, and the swarm keeps seeding.
//
// # Structure
//
// Swarm.Serve is the actor: one goroutine, one select loop, owning the
// piece.Picker (a pure state machine), the peer set, the pending reads, the
// choke state and the blame counts. Each connection (conn) has a read loop
// and a write loop in one errgroup; they live and die together.
//
// The hot path avoids the actor where it can:
//   - A received block is read from the socket straight into its piece's
//     buffer, taken from a bounded pool (Config.PieceMemory) when the
//     piece's first block arrives; only then is the actor told, in one
//     batch per socket read (a mutex-guarded queue plus a coalesced
//     wake-up), so the picker advances. A per-block claim bit (atomic)
//     makes the first copy of a block the only one read; duplicates are
//     skipped unread. A piece whose first block finds the pool empty is
//     written to the blob as it comes (pwrite, contiguous blocks in one
//     call), as all pieces are with a negative PieceMemory.
//   - A complete piece is hashed in its buffer and written with one
//     pwrite (Blob.WritePiece, which hashes exactly the bytes it writes)
//     by Config.Verifiers goroutines; nothing is read back. A piece
//     written as it came is hashed back from disk (Blob.VerifyPiece).
//   - The marks of verified pieces are persisted by the persister
//     goroutine (Blob.Sync when Blob.Due: 64 MiB or a second of new
//     marks), never on the hot path; the store makes the data durable
//     before a mark. Done is closed when the last piece is verified and
//     the blob is complete in the store.
//   - The picker keeps at most the pool's buffers less two pieces in flight
//     for rarest-first (piece.Options.MaxActive), so the pool bounds the
//     leech's memory and the pieces in flight stay hot in the caches.
//   - A request from a peer is checked (choke, have) by the read loop and
//     queued straight on the write loop's outbox; the write loop sends
//     contiguous requested blocks from the blob's read-only map
//     (Blob.Map) with one vectored write, with no copy in user space (or
//     one pread into its slab where the blob cannot be mapped).
//   - Requests the picker decides are appended to each outbox under one
//     lock per peer per step.
//
// A swarm that still wants pieces and is left with no connection and no
// dial under way redials the addresses given to AddPeer (at most 256), each
// with a backoff from 0.5 s doubling to 2 min, reset when a dial succeeds;
// banned addresses are forgotten.
//
// A piece that fails its hash is dropped and its blocks fetched again;
// every peer that sent part of it gets a strike, and a peer with
// Config.BanStrikes strikes and fewer verified pieces than strikes is
// banned for Config.BanDuration by IP:port (BanList, shareable between
// swarms) and disconnected.
//
// Read-ahead: each Reader has its own setting (Reader.SetReadAhead: a
// growing window between bounds, a fixed one, or none), default
// Config.ReadAheadMin and ReadAheadMax.
//
// Pipelining: each connection starts with Config.PipelineStart requests
// outstanding; every 100 ms the depth follows the peer's rate times
// Config.PipelineTarget, at most doubling per step, within PipelineMin,
// PipelineMax and the peer's reqq. A block late on one peer is asked of
// another by the picker; a peer that delivers nothing for
// Config.RequestTimeout while it has requests is disconnected, and the
// requests of a closed connection go back to the picker for other peers.
//
// Choking: see choke.go. Regular unchokes by rate every 10 s, one
// optimistic unchoke rotating every 30 s, an interested peer unchoked at
// once while a slot is free, and Config.Trusted peers always unchoked.
//
// # Lifetime
//
// Serve may run again after it returned (a supervisor's restart): the
// picker is rebuilt from the blob's verified pieces, and calls made while
// no Serve runs (AddPeer, ReadAt, Progress) wait in the mailbox for the
// next run, bounded by their contexts. Reads pending when Serve returns
// fail with ErrStopped. Close ends it for good and releases the blob.
//
// # Concurrency
//
// Every goroutine has a waiter: connection loops, dials and verifiers are
// in the WaitGroup Serve waits for before it returns; handshakes of the
// Listener in the one Listener.Serve waits for. Every blocking wait selects
// on a context, or is a socket operation that the context's end unblocks by
// closing the socket. Posting to the actor never blocks; requests that want
// an answer carry a reply channel of capacity one.
//
// # Errors
//
// A peer's protocol violation (a *wire.ProtocolError), an I/O error or a
// timeout closes that connection and is logged with its reason; it never
// panics and never stops the swarm. Serve returns an error only when the
// swarm cannot go on (a fetched info dictionary this node refuses).
package swarm
