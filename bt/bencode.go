package bt

import (
	"errors"
	"fmt"
)

// MaxDepth is the deepest nesting of lists and dictionaries CheckBencode
// accepts by default. Metainfo needs 3; extension messages fewer.
const MaxDepth = 32

// ErrBencode is wrapped by every error CheckBencode returns.
var ErrBencode = errors.New("bt: malformed bencode")

// CheckBencode verifies that data is exactly one well-formed bencoded value
// nested at most maxDepth deep, with every string length inside the input and
// every integer canonical (no leading zeros, no "-0") and within int64. It
// allocates nothing, so it is safe to run on hostile input of any size.
func CheckBencode(data []byte, maxDepth int) error {
	n, err := scanValue(data, 0, 0, maxDepth)
	if err != nil {
		return err
	}
	if n != len(data) {
		return fmt.Errorf("%w: %d trailing bytes after value", ErrBencode, len(data)-n)
	}
	return nil
}

// ScanBencode returns the length of the one bencoded value at the start of
// data, checked as CheckBencode checks it, leaving any bytes after it (an
// extension message's trailing payload, say).
func ScanBencode(data []byte, maxDepth int) (int, error) {
	return scanValue(data, 0, 0, maxDepth)
}

func bencodeErr(pos int, format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrBencode, pos, fmt.Sprintf(format, args...))
}

// frame is one open container while scanning: 'l' or 'd'; for
// dictionaries, expectKey says whether the next value is a key and lastKey
// holds the previous key, to check the order.
type frame struct {
	kind      byte
	expectKey bool
	lastKey   []byte
	hasKey    bool
}

// scanValue returns the offset just past the value starting at pos. It walks
// lists and dictionaries with an explicit stack of kinds so that depth costs
// no recursion.
func scanValue(data []byte, pos, depth, maxDepth int) (int, error) {
	var stack []frame
	for {
		if pos >= len(data) {
			return pos, bencodeErr(pos, "unexpected end of input")
		}
		c := data[pos]
		if c == 'e' {
			if len(stack) == 0 {
				return pos, bencodeErr(pos, "unexpected 'e'")
			}
			top := stack[len(stack)-1]
			if top.kind == 'd' && !top.expectKey {
				return pos, bencodeErr(pos, "dictionary key without value")
			}
			stack = stack[:len(stack)-1]
			pos++
			if len(stack) == 0 {
				return pos, nil
			}
			flipDict(stack)
			continue
		}
		var isKey bool
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			isKey = top.kind == 'd' && top.expectKey
		}
		switch {
		case c == 'l' || c == 'd':
			if isKey {
				return pos, bencodeErr(pos, "dictionary key is not a string")
			}
			if depth+len(stack)+1 > maxDepth {
				return pos, bencodeErr(pos, "nested deeper than %d", maxDepth)
			}
			stack = append(stack, frame{kind: c, expectKey: c == 'd'})
			pos++
			continue
		case c == 'i':
			if isKey {
				return pos, bencodeErr(pos, "dictionary key is not a string")
			}
			end, err := scanInt(data, pos)
			if err != nil {
				return pos, err
			}
			pos = end
		case c >= '0' && c <= '9':
			start, end, err := scanString(data, pos)
			if err != nil {
				return pos, err
			}
			if isKey {
				top := &stack[len(stack)-1]
				key := data[start:end]
				if top.hasKey && string(key) <= string(top.lastKey) {
					return pos, bencodeErr(pos, "dictionary key %q out of order or repeated", key)
				}
				top.lastKey, top.hasKey = key, true
			}
			pos = end
		default:
			return pos, bencodeErr(pos, "unexpected byte %q", c)
		}
		if len(stack) == 0 {
			return pos, nil
		}
		flipDict(stack)
	}
}

// flipDict records that a value (key or value) was read in the innermost
// container.
func flipDict(stack []frame) {
	top := &stack[len(stack)-1]
	if top.kind == 'd' {
		top.expectKey = !top.expectKey
	}
}

// scanInt checks "i<digits>e" at pos and returns the offset past it.
func scanInt(data []byte, pos int) (int, error) {
	i := pos + 1
	neg := false
	if i < len(data) && data[i] == '-' {
		neg = true
		i++
	}
	start := i
	var v uint64
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		if i-start >= 19 {
			return pos, bencodeErr(pos, "integer out of range")
		}
		v = v*10 + uint64(data[i]-'0')
		i++
	}
	if i == start {
		return pos, bencodeErr(pos, "integer without digits")
	}
	if i >= len(data) || data[i] != 'e' {
		return pos, bencodeErr(pos, "integer not terminated by 'e'")
	}
	if data[start] == '0' && (i-start > 1 || neg) {
		return pos, bencodeErr(pos, "integer not canonical")
	}
	if v > 1<<63-1+boolToUint(neg) {
		return pos, bencodeErr(pos, "integer out of range")
	}
	return i + 1, nil
}

func boolToUint(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// scanString checks "<len>:<bytes>" at pos and returns the bounds of the
// bytes.
func scanString(data []byte, pos int) (start, end int, err error) {
	i := pos
	n := 0
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		if i-pos >= 10 {
			return 0, 0, bencodeErr(pos, "string length too long")
		}
		n = n*10 + int(data[i]-'0')
		i++
	}
	if i >= len(data) || data[i] != ':' {
		return 0, 0, bencodeErr(pos, "string length not followed by ':'")
	}
	if data[pos] == '0' && i-pos > 1 {
		return 0, 0, bencodeErr(pos, "string length not canonical")
	}
	i++
	if n > len(data)-i {
		return 0, 0, bencodeErr(pos, "string of %d bytes runs past the end of the input", n)
	}
	return i, i + n, nil
}
