package bt

import (
	"errors"
	"strings"
	"testing"

	"github.com/zeebo/bencode"
)

func TestCheckBencode(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"i0e", true},
		{"i-5e", true},
		{"i9223372036854775807e", true},
		{"i-9223372036854775808e", true},
		{"i9223372036854775808e", false},
		{"i-0e", false},
		{"i03e", false},
		{"ie", false},
		{"i5", false},
		{"0:", true},
		{"4:spam", true},
		{"5:spam", false},
		{"04:spam", false},
		{"99999999999:x", false},
		{"le", true},
		{"li1e4:spame", true},
		{"de", true},
		{"d1:ai1e1:bi2ee", true},
		{"d1:bi1e1:ai2ee", false}, // out of order
		{"d1:ai1e1:ai2ee", false}, // repeated
		{"d1:ae", false},          // key without value
		{"di1ei2ee", false},       // non-string key
		{"dlei2ee", false},
		{"l", false},
		{"e", false},
		{"i1ei2e", false}, // trailing
		{"x", false},
		{"", false},
		{strings.Repeat("l", 32) + strings.Repeat("e", 32), true},
		{strings.Repeat("l", 33) + strings.Repeat("e", 33), false},
	}
	for _, tt := range tests {
		err := CheckBencode([]byte(tt.in), MaxDepth)
		if (err == nil) != tt.ok {
			t.Errorf("CheckBencode(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBencode) {
			t.Errorf("CheckBencode(%q) error %v does not wrap ErrBencode", tt.in, err)
		}
	}
}

func TestScanBencodeLeavesTrailer(t *testing.T) {
	in := []byte("d8:msg_typei1e5:piecei0eeRAWDATA")
	n, err := ScanBencode(in, MaxDepth)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(in[n:]); got != "RAWDATA" {
		t.Fatalf("trailer = %q, want RAWDATA", got)
	}
}

// FuzzCheckBencode checks that whatever CheckBencode accepts, zeebo/bencode
// decodes, and re-encoding the decoded value gives the same bytes (the
// scanner demands canonical input).
func FuzzCheckBencode(f *testing.F) {
	for _, s := range []string{"i0e", "4:spam", "li1e4:spame", "d1:ai1e1:bl1:cee", "d4:infod6:lengthi1eee"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if CheckBencode(data, MaxDepth) != nil {
			return
		}
		var v any
		if err := bencode.DecodeBytes(data, &v); err != nil {
			t.Fatalf("accepted %q but decode failed: %v", data, err)
		}
		out, err := bencode.EncodeBytes(v)
		if err != nil {
			t.Fatalf("re-encode %q: %v", data, err)
		}
		if string(out) != string(data) {
			t.Fatalf("round trip %q -> %q", data, out)
		}
	})
}
