package bt

import (
	"encoding/hex"
	"fmt"
)

// InfoHash is the SHA-1 of a torrent's bencoded info dictionary. It names a
// blob everywhere in DelugeFS.
type InfoHash [20]byte

// String returns the hash as 40 lower-case hex digits.
func (h InfoHash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash (no blob).
func (h InfoHash) IsZero() bool { return h == InfoHash{} }

// ParseInfoHash parses 40 hex digits.
func ParseInfoHash(s string) (InfoHash, error) {
	var h InfoHash
	if len(s) != 40 {
		return h, fmt.Errorf("bt: info-hash %q: want 40 hex digits", s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("bt: info-hash %q: %w", s, err)
	}
	return h, nil
}
