package bt

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"strings"
	"testing"
)

func testInfo(length, pieceLength int64) *Info {
	n := (length + pieceLength - 1) / pieceLength
	pieces := make([]byte, 20*n)
	for i := range pieces {
		pieces[i] = byte(i)
	}
	return NewInfo(length, pieceLength, pieces)
}

func TestInfoRoundTrip(t *testing.T) {
	for _, length := range []int64{1, 16 << 10, 5<<30 + 3, 1 << 40} {
		in := testInfo(length, 1<<20)
		out, err := ParseInfo(in.Bencode())
		if err != nil {
			t.Fatalf("length %d: %v", length, err)
		}
		if out.Hash() != in.Hash() || out.Length != length || out.Name != in.Name || !bytes.Equal(out.Pieces, in.Pieces) {
			t.Fatalf("length %d: round trip changed the info: %+v", length, out)
		}
		if got, want := out.Hash(), InfoHash(sha1.Sum(in.Bencode())); got != want {
			t.Fatalf("hash %v, want %v", got, want)
		}
		last := out.NumPieces() - 1
		if got := out.PieceOffset(last) + out.PieceSize(last); got != length {
			t.Fatalf("pieces end at %d, want %d", got, length)
		}
	}
}

func TestInfoNameDependsOnContentsOnly(t *testing.T) {
	a, b := testInfo(100, 16<<10), testInfo(100, 16<<10)
	if a.Hash() != b.Hash() {
		t.Fatal("same contents, different info-hash")
	}
	c := NewInfo(100, 16<<10, bytes.Repeat([]byte{9}, 20))
	if c.Hash() == a.Hash() || c.Name == a.Name {
		t.Fatal("different contents, same name or hash")
	}
}

func TestParseInfoKeepsUnknownKeys(t *testing.T) {
	raw := []byte("d6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:" + strings.Repeat("a", 20) + "7:privatei1ee")
	i, err := ParseInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	if i.Hash() != sha1.Sum(raw) || !bytes.Equal(i.Bencode(), raw) {
		t.Fatal("unknown keys lost from the info-hash")
	}
}

func TestParseInfoRefuses(t *testing.T) {
	p20 := strings.Repeat("a", 20)
	tests := map[string]string{
		"not a dict":        "i1e",
		"no pieces":         "d6:lengthi1e4:name1:x12:piece lengthi16384ee",
		"zero length":       "d6:lengthi0e4:name1:x12:piece lengthi16384e6:pieces0:e",
		"negative length":   "d6:lengthi-1e4:name1:x12:piece lengthi16384e6:pieces20:" + p20 + "e",
		"piece not pow2":    "d6:lengthi1e4:name1:x12:piece lengthi16385e6:pieces20:" + p20 + "e",
		"piece too small":   "d6:lengthi1e4:name1:x12:piece lengthi8192e6:pieces20:" + p20 + "e",
		"too many hashes":   "d6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces40:" + p20 + p20 + "e",
		"too few hashes":    "d6:lengthi16385e4:name1:x12:piece lengthi16384e6:pieces20:" + p20 + "e",
		"ragged pieces":     "d6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces19:" + p20[:19] + "e",
		"slash in name":     "d6:lengthi1e4:name3:a/b12:piece lengthi16384e6:pieces20:" + p20 + "e",
		"dotdot name":       "d6:lengthi1e4:name2:..12:piece lengthi16384e6:pieces20:" + p20 + "e",
		"multi-file":        "d5:filesle6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:" + p20 + "e",
		"wrong type":        "d6:length1:x4:name1:x12:piece lengthi16384e6:pieces20:" + p20 + "e",
		"huge length":       "d6:lengthi9223372036854775807e4:name1:x12:piece lengthi16384e6:pieces20:" + p20 + "e",
		"truncated":         "d6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:" + p20,
		"string past input": "d6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces2000000000:e",
	}
	for name, in := range tests {
		_, err := ParseInfo([]byte(in))
		if err == nil {
			t.Errorf("%s: accepted %q", name, in)
			continue
		}
		if !errors.Is(err, ErrInfo) && !errors.Is(err, ErrBencode) {
			t.Errorf("%s: error %v wraps neither ErrInfo nor ErrBencode", name, err)
		}
	}
}

func TestMetaInfoRoundTrip(t *testing.T) {
	m := &MetaInfo{Info: testInfo(3<<30, 1<<20), Announce: "http://127.0.0.1:1/announce", CreationDate: 1700000000}
	m2, err := ParseMetaInfo(m.Bencode())
	if err != nil {
		t.Fatal(err)
	}
	if m2.Info.Hash() != m.Info.Hash() || m2.Announce != m.Announce || m2.CreationDate != m.CreationDate {
		t.Fatalf("round trip: %+v", m2)
	}
	if !bytes.Equal(m2.Bencode(), m.Bencode()) {
		t.Fatal("re-encoding changed the bytes")
	}
}

func FuzzParseMetaInfo(f *testing.F) {
	f.Add((&MetaInfo{Info: testInfo(40000, 16<<10), Comment: "c"}).Bencode())
	f.Add([]byte("d4:infod6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMetaInfo(data)
		if err != nil {
			return
		}
		m2, err := ParseMetaInfo(m.Bencode())
		if err != nil {
			t.Fatalf("re-parse of accepted metainfo: %v", err)
		}
		if m2.Info.Hash() != m.Info.Hash() || !bytes.Equal(m2.Bencode(), m.Bencode()) {
			t.Fatal("round trip changed the metainfo")
		}
	})
}

func TestMagnet(t *testing.T) {
	h := testInfo(1, 16<<10).Hash()
	m := Magnet{InfoHash: h, Name: "a film.mkv", Peers: []string{"127.0.0.1:6881"}}
	got, err := ParseMagnet(m.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.InfoHash != h || got.Name != m.Name || len(got.Peers) != 1 || got.Peers[0] != "127.0.0.1:6881" {
		t.Fatalf("round trip: %+v", got)
	}
	b32, err := ParseMagnet("magnet:?xt=urn:btih:MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U")
	if err != nil {
		t.Fatal(err)
	}
	if string(b32.InfoHash[:]) != "abcdefghijklmnopqrst" {
		t.Fatalf("base32: %q", b32.InfoHash[:])
	}
	for _, bad := range []string{"http://x", "magnet:?dn=x", "magnet:?xt=urn:btih:zz", "magnet:?xt=urn:btih:" + strings.Repeat("g", 40)} {
		if _, err := ParseMagnet(bad); !errors.Is(err, ErrMagnet) {
			t.Errorf("ParseMagnet(%q) = %v, want ErrMagnet", bad, err)
		}
	}
}
