// Package piece keeps the books of a blob's pieces: which pieces a node has
// (Bitfield), how long they are (Length), how their hashes are made while a
// file is written (Hasher), which blocks to ask which peer for next (Picker),
// and where blobs live on a disk (Store, Blob).
//
// A blob is cut into pieces of Length(size) bytes, each verified by its SHA-1
// in the blob's bt.Info; pieces travel in 16 KiB blocks. The Picker is a pure
// state machine: it owns no goroutine, reads no clock and opens no socket, so
// the swarm actor that drives it, and the tests, decide time and I/O.
package piece
