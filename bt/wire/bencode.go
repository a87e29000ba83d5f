package wire

import "bytes"

// maxBencodeDepth bounds the nesting of lists and dictionaries in the
// extension messages this package decodes; they need two levels.
const maxBencodeDepth = 8

// scanBencode checks that b starts with one strictly canonical bencode
// value nested at most maxDepth deep, and returns its length. Canonical
// means: integers without leading zeros or "-0", string lengths without
// leading zeros and inside b, dictionary keys strictly increasing. Decoding
// with zeebo/bencode only after this check bounds its recursion and its
// allocations by len(b).
func scanBencode(b []byte, maxDepth int) (int, error) {
	s := scanner{b: b, maxDepth: maxDepth}
	if err := s.value(0); err != nil {
		return 0, err
	}
	return s.pos, nil
}

type scanner struct {
	b        []byte
	pos      int
	maxDepth int
}

func (s *scanner) fail(format string, args ...any) error {
	return protoErr(Extended, ErrBadBencode, "at byte %d: "+format, append([]any{s.pos}, args...)...)
}

func (s *scanner) value(depth int) error {
	if s.pos >= len(s.b) {
		return s.fail("unexpected end")
	}
	switch c := s.b[s.pos]; {
	case c == 'i':
		s.pos++
		if s.pos < len(s.b) && s.b[s.pos] == '-' {
			s.pos++
			if s.pos < len(s.b) && s.b[s.pos] == '0' {
				return s.fail("negative zero or leading zero")
			}
		}
		if _, err := s.digits(18); err != nil { // 18 digits fit an int64
			return err
		}
		if s.pos >= len(s.b) || s.b[s.pos] != 'e' {
			return s.fail("integer not ended by 'e'")
		}
		s.pos++
		return nil
	case c >= '0' && c <= '9':
		_, err := s.str()
		return err
	case c == 'l' || c == 'd':
		if depth >= s.maxDepth {
			return s.fail("nested deeper than %d", s.maxDepth)
		}
		s.pos++
		var last []byte
		for first := true; ; first = false {
			if s.pos >= len(s.b) {
				return s.fail("unterminated %c", c)
			}
			if s.b[s.pos] == 'e' {
				s.pos++
				return nil
			}
			if c == 'd' {
				key, err := s.str()
				if err != nil {
					return err
				}
				if !first && bytes.Compare(last, key) >= 0 {
					return s.fail("dictionary key %q after %q", key, last)
				}
				last = key
			}
			if err := s.value(depth + 1); err != nil {
				return err
			}
		}
	default:
		return s.fail("unexpected %q", c)
	}
}

// digits reads 1 to maxDigits decimal digits without a leading zero (a lone
// "0" is fine) and returns their value.
func (s *scanner) digits(maxDigits int) (int64, error) {
	start := s.pos
	var n int64
	for s.pos < len(s.b) && s.b[s.pos] >= '0' && s.b[s.pos] <= '9' {
		if s.pos-start == maxDigits {
			return 0, s.fail("number longer than %d digits", maxDigits)
		}
		n = n*10 + int64(s.b[s.pos]-'0')
		s.pos++
	}
	switch {
	case s.pos == start:
		return 0, s.fail("expected digits")
	case s.b[start] == '0' && s.pos-start > 1:
		return 0, s.fail("leading zero")
	}
	return n, nil
}

// str reads a byte string and returns it.
func (s *scanner) str() ([]byte, error) {
	if s.pos >= len(s.b) || s.b[s.pos] < '0' || s.b[s.pos] > '9' {
		return nil, s.fail("expected a string")
	}
	n, err := s.digits(10)
	if err != nil {
		return nil, err
	}
	if s.pos >= len(s.b) || s.b[s.pos] != ':' {
		return nil, s.fail("string length not ended by ':'")
	}
	s.pos++
	if n > int64(len(s.b)-s.pos) {
		return nil, s.fail("string of %d bytes past the end", n)
	}
	str := s.b[s.pos : s.pos+int(n)]
	s.pos += int(n)
	return str, nil
}
