package wire

import "github.com/delugefs/delugefs/bt"

// maxBencodeDepth bounds the nesting of lists and dictionaries in the
// extension messages this package decodes; they need two levels.
const maxBencodeDepth = 8

// scanBencode checks that b starts with one strictly canonical bencode
// value nested at most maxDepth deep (bt.ScanBencode) and returns its length,
// turning a failure into a protocol error. Decoding with zeebo/bencode only
// after this check bounds its recursion and its allocations by len(b).
func scanBencode(b []byte, maxDepth int) (int, error) {
	n, err := bt.ScanBencode(b, maxDepth)
	if err != nil {
		return 0, protoErr(Extended, ErrBadBencode, "%v", err)
	}
	return n, nil
}
