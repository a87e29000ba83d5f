package piece

import (
	"errors"
	"fmt"
	"math/bits"
)

// ErrBitfield is wrapped by ParseBitfield's errors.
var ErrBitfield = errors.New("piece: invalid bitfield")

// Bitfield is a set of piece indices in [0, Len()), stored as BEP 3 sends it:
// piece 0 is the high bit of byte 0. The zero value is an empty set of length
// 0. A Bitfield is not safe for concurrent use.
type Bitfield struct {
	b     []byte
	n     int
	count int
}

// NewBitfield returns an empty set of n pieces.
func NewBitfield(n int) Bitfield {
	return Bitfield{b: make([]byte, (n+7)/8), n: n}
}

// FullBitfield returns a set holding all n pieces.
func FullBitfield(n int) Bitfield {
	bf := NewBitfield(n)
	for i := range bf.b {
		bf.b[i] = 0xff
	}
	if r := n % 8; r != 0 {
		bf.b[len(bf.b)-1] = byte(0xff << (8 - r))
	}
	bf.count = n
	return bf
}

// ParseBitfield checks a wire or on-disk bitfield for n pieces: exactly
// ceil(n/8) bytes with the spare bits clear. It copies b.
func ParseBitfield(b []byte, n int) (Bitfield, error) {
	if len(b) != (n+7)/8 {
		return Bitfield{}, fmt.Errorf("%w: %d bytes for %d pieces, want %d", ErrBitfield, len(b), n, (n+7)/8)
	}
	if r := n % 8; r != 0 && b[len(b)-1]&byte(0xff>>r) != 0 {
		return Bitfield{}, fmt.Errorf("%w: spare bits set", ErrBitfield)
	}
	bf := Bitfield{b: append([]byte(nil), b...), n: n}
	for _, x := range bf.b {
		bf.count += bits.OnesCount8(x)
	}
	return bf, nil
}

// Len returns the number of pieces the set ranges over.
func (bf *Bitfield) Len() int { return bf.n }

// Count returns the number of pieces in the set.
func (bf *Bitfield) Count() int { return bf.count }

// Full reports whether every piece is in the set.
func (bf *Bitfield) Full() bool { return bf.count == bf.n }

// Has reports whether piece i is in the set; out-of-range indices are not.
func (bf *Bitfield) Has(i int) bool {
	if i < 0 || i >= bf.n {
		return false
	}
	return bf.b[i>>3]&(0x80>>(i&7)) != 0
}

// Set adds piece i; it reports whether the set changed. It panics if i is out
// of range.
func (bf *Bitfield) Set(i int) bool {
	if i < 0 || i >= bf.n {
		panic(fmt.Sprintf("piece: Bitfield.Set(%d) outside [0, %d)", i, bf.n))
	}
	m := byte(0x80 >> (i & 7))
	if bf.b[i>>3]&m != 0 {
		return false
	}
	bf.b[i>>3] |= m
	bf.count++
	return true
}

// Clear removes piece i; it reports whether the set changed.
func (bf *Bitfield) Clear(i int) bool {
	if !bf.Has(i) {
		return false
	}
	bf.b[i>>3] &^= 0x80 >> (i & 7)
	bf.count--
	return true
}

// Bytes returns the wire encoding. The caller must not modify it.
func (bf *Bitfield) Bytes() []byte { return bf.b }

// Clone returns an independent copy.
func (bf *Bitfield) Clone() Bitfield {
	return Bitfield{b: append([]byte(nil), bf.b...), n: bf.n, count: bf.count}
}

// NextSet returns the first piece >= i in the set, or -1.
func (bf *Bitfield) NextSet(i int) int {
	if i < 0 {
		i = 0
	}
	for i < bf.n {
		byteIdx := i >> 3
		x := bf.b[byteIdx] << (i & 7)
		if x != 0 {
			j := i + bits.LeadingZeros8(x)
			if j < bf.n {
				return j
			}
			return -1
		}
		i = (byteIdx + 1) << 3
	}
	return -1
}

// NextClear returns the first piece >= i not in the set, or -1.
func (bf *Bitfield) NextClear(i int) int {
	if i < 0 {
		i = 0
	}
	for i < bf.n {
		byteIdx := i >> 3
		x := ^bf.b[byteIdx] << (i & 7)
		if x != 0 {
			j := i + bits.LeadingZeros8(x)
			if j < bf.n {
				return j
			}
			return -1
		}
		i = (byteIdx + 1) << 3
	}
	return -1
}
