package wire

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/delugefs/delugefs/bt"
)

// TestAllowedFastSet checks the example of BEP 6.
func TestAllowedFastSet(t *testing.T) {
	var ih bt.InfoHash
	for i := range ih {
		ih[i] = 0xaa
	}
	addr := netip.MustParseAddr("80.4.4.200")
	if got, want := AllowedFastSet(addr, ih, 1313, 7), []uint32{1059, 431, 808, 1217, 287, 376, 1188}; !slices.Equal(got, want) {
		t.Errorf("k=7: %v, want %v", got, want)
	}
	if got, want := AllowedFastSet(addr, ih, 1313, 9), []uint32{1059, 431, 808, 1217, 287, 376, 1188, 353, 508}; !slices.Equal(got, want) {
		t.Errorf("k=9: %v, want %v", got, want)
	}
	if got := AllowedFastSet(netip.MustParseAddr("::ffff:80.4.4.1"), ih, 1313, 7); !slices.Equal(got, AllowedFastSet(addr, ih, 1313, 7)) {
		t.Errorf("same /24 as a mapped address: %v", got)
	}
	if got := AllowedFastSet(addr, ih, 3, 10); len(got) != 3 {
		t.Errorf("k over the piece count: %v", got)
	}
	if got := AllowedFastSet(netip.MustParseAddr("::1"), ih, 1313, 7); got != nil {
		t.Errorf("IPv6: %v, want nil", got)
	}
}
