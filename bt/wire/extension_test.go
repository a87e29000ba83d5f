package wire

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestScanBencode(t *testing.T) {
	for _, tc := range []struct {
		in string
		n  int // -1: refused
	}{
		{"i0e", 3}, {"i-1e", 4}, {"i42e", 4}, {"i123456789012345678e", 20},
		{"i12345678901234567890e", -1}, {"i-0e", -1}, {"i03e", -1}, {"i-03e", -1},
		{"ie", -1}, {"i1", -1}, {"i+1e", -1}, {"i1.0e", -1},
		{"0:", 2}, {"3:abc", 5}, {"3:abcde", 5}, {"03:abc", -1}, {"4:abc", -1},
		{"99999999999:x", -1}, {"3abc", -1}, {"-1:x", -1},
		{"le", 2}, {"li1ei2ee", 8}, {"l", -1}, {"d1:ai1ee", 8},
		{"d1:ai1e1:bi2ee", 14}, {"d1:bi1e1:ai2ee", -1}, {"d1:ai1e1:ai2ee", -1},
		{"di1ei2ee", -1}, {"d1:ae", -1}, {"", -1}, {"x", -1}, {"e", -1},
		{strings.Repeat("l", 8) + strings.Repeat("e", 8), 16},
		{strings.Repeat("l", 9) + strings.Repeat("e", 9), -1},
		{strings.Repeat("l", 100000), -1},
	} {
		n, err := scanBencode([]byte(tc.in), maxBencodeDepth)
		if tc.n < 0 {
			if err == nil || !errors.Is(err, ErrBadBencode) {
				t.Errorf("scan %.40q = %d, %v; want ErrBadBencode", tc.in, n, err)
			}
			continue
		}
		if err != nil || n != tc.n {
			t.Errorf("scan %.40q = %d, %v; want %d", tc.in, n, err, tc.n)
		}
	}
}

func TestExtHandshakeRoundTrip(t *testing.T) {
	h := &ExtHandshake{
		M:            map[string]int{ExtMetadata: 3, "ut_pex": 0},
		V:            "DelugeFS 0.1",
		P:            6881,
		Reqq:         250,
		MetadataSize: 31235,
		YourIP:       []byte{127, 0, 0, 1},
	}
	b, err := h.Bencode()
	if err != nil {
		t.Fatal(err)
	}
	want := "d1:md11:ut_metadatai3e6:ut_pexi0ee13:metadata_sizei31235e1:pi6881e4:reqqi250e1:v12:DelugeFS 0.16:yourip4:\x7f\x00\x00\x01e"
	if string(b) != want {
		t.Errorf("Bencode = %q\nwant       %q", b, want)
	}
	got, err := ParseExtHandshake(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Errorf("ParseExtHandshake = %+v, want %+v", got, h)
	}
	if id, ok := got.Ext(ExtMetadata); !ok || id != 3 {
		t.Errorf("Ext(ut_metadata) = %d, %v", id, ok)
	}
	if _, ok := got.Ext("ut_pex"); ok {
		t.Error("Ext(ut_pex) enabled with id 0")
	}
}

func TestExtHandshakeStock(t *testing.T) {
	// What libtorrent and anacrolix send, unknown keys included.
	in := "d12:complete_agoi1e1:ei0e4:ipv616:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x011:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei4587e4:reqqi500e11:upload_onlyi0e1:v17:qBittorrent/4.6.26:yourip4:\x0a\x00\x00\x02e"
	h, err := ParseExtHandshake([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := h.Ext(ExtMetadata); id != 2 || h.MetadataSize != 4587 || h.Reqq != 500 || h.V != "qBittorrent/4.6.2" {
		t.Errorf("parsed %+v", h)
	}
}

func TestExtHandshakeBad(t *testing.T) {
	for _, in := range []string{
		"",
		"le",
		"d1:md11:ut_metadatai2ee",         // unterminated
		"d1:md11:ut_metadatai256eee",      // id over 255
		"d1:md11:ut_metadatai-1eee",       // negative id
		"d1:md0:i1eee",                    // empty name
		"d1:m3:abce",                      // m not a dict
		"d1:pi70000ee",                    // port
		"d1:pi-1ee",                       // port
		"d4:reqqi-5ee",                    // reqq
		"d13:metadata_sizei-1ee",          // negative size
		"d13:metadata_sizei99999999999ee", // over MaxMetadataSize
		"d6:yourip3:abce",                 // 3-byte IP
		"d1:v" + "300:" + strings.Repeat("x", 300) + "e",
		"d1:pi1e1:ai1ee", // unsorted keys
		"d1:md11:ut_metadatai2eee" + "x",
		"d1:x" + strings.Repeat("l", 20) + strings.Repeat("e", 20) + "e", // too deep
	} {
		if h, err := ParseExtHandshake([]byte(in)); err == nil {
			t.Errorf("ParseExtHandshake(%.60q) = %+v, want an error", in, h)
		} else if !errors.Is(err, ErrBadExtension) && !errors.Is(err, ErrBadBencode) {
			t.Errorf("ParseExtHandshake(%.60q) = %v, want ErrBadExtension or ErrBadBencode", in, err)
		}
	}
}
