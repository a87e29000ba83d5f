// Package client is the standalone BitTorrent client of DelugeFS: the way
// anyone can check the BitTorrent core (bt/swarm) from outside, against
// stock clients, with ordinary .torrent files and magnet links.
//
//	delugefs bt create FILE -o FILE.torrent [--piece-length N]
//	delugefs bt seed FILE.torrent --data FILE [--listen 127.0.0.1:6881]
//	delugefs bt get FILE.torrent|MAGNET --peer HOST:PORT [--peer ...] -o OUT
//
// The command (cmd/delugefs) only parses flags; this package does the work:
//
//   - Create hashes a file (pieces in parallel) into a v1 single-file
//     torrent named by the file's base name. Unlike a DelugeFS blob, whose
//     name derives from its contents, it is a torrent like any other.
//   - Verify checks a file against a torrent, piece by piece.
//   - Seeder serves a file: it verifies it, links it into a private
//     piece.Store in a temporary directory (the data is not copied), runs a
//     swarm.Swarm for it and a swarm.Listener, and optionally dials peers
//     that cannot be told about it (aria2c takes no peer address).
//   - Get downloads a torrent or a magnet link (the info dictionary comes
//     from the peers, BEP 9) from the peers it is given into a store beside
//     the output, ".<name>.delugefs-part", which a second run resumes;
//     when every piece is verified the data is renamed to the output. It
//     fails with ErrNoData when nothing arrives for a bounded time.
//   - ProgressPrinter shows Get's progress as a bar on a terminal and as
//     plain lines otherwise.
//
// There is no DHT and no tracker: peers are given. An announce URL may be
// written into a torrent; nothing here ever contacts it.
//
// # Tests
//
// The tests trade with stock clients on loopback only: anacrolix/torrent
// (a test-only dependency) and aria2c, in both directions and by magnet
// link, and compare the data byte for byte.
package client
