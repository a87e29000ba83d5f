package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// messageTable holds every message with its exact wire bytes.
var messageTable = []struct {
	name string
	msg  Message
	wire string
}{
	{"keep-alive", Message{ID: KeepAlive}, "00000000"},
	{"choke", Message{ID: Choke}, "00000001 00"},
	{"unchoke", Message{ID: Unchoke}, "00000001 01"},
	{"interested", Message{ID: Interested}, "00000001 02"},
	{"not interested", Message{ID: NotInterested}, "00000001 03"},
	{"have", Message{ID: Have, Index: 0x01020304}, "00000005 04 01020304"},
	{"bitfield", Message{ID: Bitfield, Bitfield: []byte{0xff, 0x80}}, "00000003 05 ff80"},
	{"request", NewRequest(1, 0x4000, 0x4000), "0000000d 06 00000001 00004000 00004000"},
	{"piece", NewPiece(2, 0x8000, []byte("abc")), "0000000c 07 00000002 00008000 616263"},
	{"cancel", Message{ID: Cancel, Index: 3, Begin: 0, Length: 0x4000}, "0000000d 08 00000003 00000000 00004000"},
	{"port", Message{ID: Port, Port: 6881}, "00000003 09 1ae1"},
	{"suggest", Message{ID: Suggest, Index: 7}, "00000005 0d 00000007"},
	{"have all", Message{ID: HaveAll}, "00000001 0e"},
	{"have none", Message{ID: HaveNone}, "00000001 0f"},
	{"reject", Message{ID: Reject, Index: 4, Begin: 0x4000, Length: 0x100}, "0000000d 10 00000004 00004000 00000100"},
	{"allowed fast", Message{ID: AllowedFast, Index: 9}, "00000005 11 00000009"},
	{"extended", NewExtended(0, []byte("de")), "00000004 14 00 6465"},
	{"extended empty payload", NewExtended(3, nil), "00000002 14 03"},
}

func TestMessageEncode(t *testing.T) {
	for _, tc := range messageTable {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.wire)
			got, err := tc.msg.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("MarshalBinary = %x, want %x", got, want)
			}
			if n := tc.msg.WireLen(); n != len(want) {
				t.Errorf("WireLen = %d, want %d", n, len(want))
			}
			var buf bytes.Buffer
			w := NewWriter(&buf)
			if err := w.WriteMessage(&tc.msg); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("Writer wrote %x, want %x", buf.Bytes(), want)
			}
		})
	}
}

// normalize makes a decoded message comparable with a table entry.
func normalize(m Message) Message {
	if len(m.Payload) == 0 {
		m.Payload = nil
	}
	if m.ID == Piece {
		m.Length = 0
	}
	return m
}

func TestMessageDecode(t *testing.T) {
	for _, tc := range messageTable {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(unhex(t, tc.wire)), Limits{})
			var m Message
			if err := r.Read(&m); err != nil {
				t.Fatal(err)
			}
			if got, want := normalize(m), normalize(tc.msg); !reflect.DeepEqual(got, want) {
				t.Errorf("Read = %+v, want %+v", got, want)
			}
			if err := r.Read(&m); err != io.EOF {
				t.Errorf("Read at end = %v, want io.EOF", err)
			}
		})
	}
}

// TestMessageStream writes every message in one batch and reads them back
// with Next/ReadBlock, Read, and with blocks skipped.
func TestMessageStream(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	want := 0
	for _, tc := range messageTable {
		if err := w.Queue(&tc.msg); err != nil {
			t.Fatal(err)
		}
		want += tc.msg.WireLen()
	}
	if w.Buffered() != want {
		t.Errorf("Buffered = %d, want %d", w.Buffered(), want)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != want || w.Buffered() != 0 {
		t.Fatalf("wrote %d bytes, Buffered %d; want %d, 0", buf.Len(), w.Buffered(), want)
	}
	stream := buf.Bytes()
	for _, mode := range []string{"read", "next", "skip"} {
		r := NewReader(bytes.NewReader(stream), Limits{})
		for _, tc := range messageTable {
			var m Message
			var err error
			switch mode {
			case "read":
				err = r.Read(&m)
			default:
				err = r.Next(&m)
				if err == nil && m.ID == Piece && mode == "next" {
					if r.Pending() != len(tc.msg.Block) || int(m.Length) != len(tc.msg.Block) {
						t.Fatalf("Pending %d, Length %d, want %d", r.Pending(), m.Length, len(tc.msg.Block))
					}
					m.Block = make([]byte, r.Pending())
					err = r.ReadBlock(m.Block)
				}
			}
			if err != nil {
				t.Fatalf("%s %s: %v", mode, tc.name, err)
			}
			if mode == "skip" && m.ID == Piece {
				m.Block = tc.msg.Block
			}
			if got, want := normalize(m), normalize(tc.msg); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: got %+v, want %+v", mode, got, want)
			}
		}
		var m Message
		if err := r.Next(&m); err != io.EOF {
			t.Errorf("%s: at end %v, want io.EOF", mode, err)
		}
	}
}

func TestReadBlockWrongSize(t *testing.T) {
	r := NewReader(bytes.NewReader(unhex(t, "0000000c 07 00000002 00008000 616263")), Limits{})
	var m Message
	if err := r.Next(&m); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadBlock(make([]byte, 2)); err == nil {
		t.Fatal("ReadBlock into 2 bytes for a 3-byte block: no error")
	}
}

func TestGeometryOffset64(t *testing.T) {
	g := NewGeometry(6<<30+5, 4<<20) // 6 GiB + 5 bytes, 4 MiB pieces
	if g.NumPieces != 1537 {
		t.Fatalf("NumPieces = %d, want 1537", g.NumPieces)
	}
	if got, want := g.Offset(1536, 4), int64(6<<30+4); got != want {
		t.Errorf("Offset = %d, want %d", got, want)
	}
	if got := g.PieceSize(1536); got != 5 {
		t.Errorf("last PieceSize = %d, want 5", got)
	}
	if err := g.CheckBlock(Request, 1536, 0, 5, BlockSize); err != nil {
		t.Errorf("last block: %v", err)
	}
	if err := g.CheckBlock(Request, 1536, 0, 6, BlockSize); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("past the end: %v, want ErrOutOfRange", err)
	}
}

func TestMessageString(t *testing.T) {
	for _, tc := range messageTable {
		if s := tc.msg.String(); s == "" || strings.Contains(s, "message ") {
			t.Errorf("%s: String = %q", tc.name, s)
		}
	}
	if s := ID(99).String(); s != "message 99" {
		t.Errorf("ID(99) = %q", s)
	}
}
