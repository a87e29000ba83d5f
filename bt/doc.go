// Package bt is the BitTorrent core of DelugeFS.
//
// The root package holds what every other package shares: the info-hash that
// names a blob, the v1 metainfo (the info dictionary and the .torrent file
// around it), magnet links, and a bounded bencode scanner that every decoder
// of untrusted input runs first.
//
// # Metainfo
//
// A blob's Info depends on its contents alone: the name is derived from the
// piece hashes, so identical contents have one info-hash on every node, and
// renaming a file never changes its hash. Lengths and offsets are int64
// everywhere (the 2013 prototype broke above 4 GiB).
//
// # Untrusted input
//
// ParseInfo, ParseMetaInfo and ParseMagnet refuse, with an error that says
// why, anything malformed or out of bounds: nesting deeper than MaxDepth,
// strings longer than the input, a piece length that is not a power of two
// within [MinPieceLength, MaxPieceLength], a pieces string whose size does not
// match ceil(length / piece length). Decoders call CheckBencode before handing
// bytes to github.com/zeebo/bencode, whose decoder would otherwise trust a
// declared string length and allocate it.
//
// Sub-packages hold the peer wire protocol (bt/wire) and the parts that move
// data between peers.
package bt
