package wire

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"

	"github.com/delugefs/delugefs/bt"
)

// AllowedFastSet returns the canonical allowed fast set of BEP 6: the k
// pieces a peer at addr may request of a torrent of numPieces pieces even
// while choked. Both sides compute the same set, so it can be sent as
// allowed fast messages and checked on requests. BEP 6 defines it for IPv4
// only; for other addresses it returns nil.
func AllowedFastSet(addr netip.Addr, ih bt.InfoHash, numPieces, k int) []uint32 {
	addr = addr.Unmap()
	if !addr.Is4() || numPieces <= 0 || k <= 0 {
		return nil
	}
	k = min(k, numPieces)
	ip := addr.As4()
	x := make([]byte, 0, 24)
	x = append(x, ip[0], ip[1], ip[2], 0) // the /24 network
	x = append(x, ih[:]...)
	set := make([]uint32, 0, k)
	for len(set) < k {
		sum := sha1.Sum(x)
		x = sum[:]
		for i := 0; i < 5 && len(set) < k; i++ {
			index := binary.BigEndian.Uint32(x[i*4:]) % uint32(numPieces)
			if !contains(set, index) {
				set = append(set, index)
			}
		}
	}
	return set
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
