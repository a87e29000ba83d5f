package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// frame builds a message with an arbitrary length prefix and body.
func frame(length uint32, body ...byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, length), body...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestReaderLimits(t *testing.T) {
	// 10 pieces of 32 KiB, the last one 1000 bytes: 9*32768+1000.
	geo := NewGeometry(9*32768+1000, 32768)
	tests := []struct {
		name string
		geo  Geometry
		lim  Limits
		in   []byte
		want error // nil: accepted
	}{
		{"huge length prefix", Geometry{}, Limits{}, frame(0xffffffff, 7), ErrTooLong},
		{"length over MaxMessage", Geometry{}, Limits{}, frame(1<<20+1, 20), ErrTooLong},
		{"unknown id", Geometry{}, Limits{}, frame(1, 99), ErrUnknownMessage},
		{"unknown id 21 (BEP 52)", Geometry{}, Limits{}, frame(49, 21), ErrUnknownMessage},
		{"choke with payload", Geometry{}, Limits{}, frame(2, 0, 0), ErrBadLength},
		{"have too short", Geometry{}, Limits{}, frame(4, 4, 0, 0, 1), ErrBadLength},
		{"have too long", Geometry{}, Limits{}, frame(6, 4, 0, 0, 0, 1, 0), ErrBadLength},
		{"request too short", Geometry{}, Limits{}, frame(12, 6), ErrBadLength},
		{"port too long", Geometry{}, Limits{}, frame(4, 9, 0, 1, 2), ErrBadLength},
		{"have all with payload", Geometry{}, Limits{}, frame(2, 14, 0), ErrBadLength},
		{"extended without id", Geometry{}, Limits{}, frame(1, 20), ErrBadLength},
		{"piece without block", Geometry{}, Limits{}, cat(frame(9, 7), u32(0), u32(0)), ErrBadLength},
		{"piece block over 16 KiB", Geometry{}, Limits{}, cat(frame(9+16385, 7), u32(0), u32(0), make([]byte, 16385)), ErrTooLong},
		{"piece block of 16 KiB", Geometry{}, Limits{}, cat(frame(9+16384, 7), u32(0), u32(0), make([]byte, 16384)), nil},
		{"piece block over a 32 KiB limit", Geometry{}, Limits{MaxBlock: 32768}, cat(frame(9+32769, 7), u32(0), u32(0), make([]byte, 32769)), ErrTooLong},
		{"piece block of 32 KiB with the limit", Geometry{}, Limits{MaxBlock: 32768}, cat(frame(9+32768, 7), u32(0), u32(0), make([]byte, 32768)), nil},
		{"request over 16 KiB", Geometry{}, Limits{}, cat(frame(13, 6), u32(0), u32(0), u32(16385)), ErrOutOfRange},
		{"request of 0 bytes", Geometry{}, Limits{}, cat(frame(13, 6), u32(0), u32(0), u32(0)), ErrOutOfRange},
		{"request of 16 KiB", Geometry{}, Limits{}, cat(frame(13, 6), u32(0), u32(0), u32(16384)), nil},
		{"request over a configured 8 KiB", Geometry{}, Limits{MaxBlock: 8192}, cat(frame(13, 6), u32(0), u32(0), u32(8193)), ErrOutOfRange},
		{"cancel over 16 KiB", Geometry{}, Limits{}, cat(frame(13, 8), u32(0), u32(0), u32(1<<30)), ErrOutOfRange},
		{"reject over 16 KiB", Geometry{}, Limits{}, cat(frame(13, 16), u32(0), u32(0), u32(1<<30)), ErrOutOfRange},
		{"request outside the torrent", geo, Limits{}, cat(frame(13, 6), u32(10), u32(0), u32(16384)), ErrOutOfRange},
		{"request past the end of a piece", geo, Limits{}, cat(frame(13, 6), u32(0), u32(32768-100), u32(16384)), ErrOutOfRange},
		{"request past the short last piece", geo, Limits{}, cat(frame(13, 6), u32(9), u32(0), u32(1001)), ErrOutOfRange},
		{"request of the short last piece", geo, Limits{}, cat(frame(13, 6), u32(9), u32(0), u32(1000)), nil},
		{"request begin overflow", geo, Limits{}, cat(frame(13, 6), u32(0), u32(0xffffffff), u32(16384)), ErrOutOfRange},
		{"piece outside the torrent", geo, Limits{}, cat(frame(9+4, 7), u32(10), u32(0), make([]byte, 4)), ErrOutOfRange},
		{"piece past the last piece", geo, Limits{}, cat(frame(9+4, 7), u32(9), u32(998), make([]byte, 4)), ErrOutOfRange},
		{"have outside the torrent", geo, Limits{}, cat(frame(5, 4), u32(10)), ErrOutOfRange},
		{"have inside", geo, Limits{}, cat(frame(5, 4), u32(9)), nil},
		{"suggest outside", geo, Limits{}, cat(frame(5, 13), u32(1<<31)), ErrOutOfRange},
		{"allowed fast outside", geo, Limits{}, cat(frame(5, 17), u32(10)), ErrOutOfRange},
		{"bitfield too short", geo, Limits{}, frame(2, 5, 0xff), ErrBadBitfield},
		{"bitfield too long", geo, Limits{}, frame(4, 5, 0xff, 0xc0, 0), ErrBadBitfield},
		{"bitfield spare bit set", geo, Limits{}, frame(3, 5, 0xff, 0xe0), ErrBadBitfield},
		{"bitfield spare bits set", geo, Limits{}, frame(3, 5, 0xff, 0x3f), ErrBadBitfield},
		{"bitfield ok", geo, Limits{}, frame(3, 5, 0xff, 0xc0), nil},
		{"bitfield large without geometry", Geometry{}, Limits{}, cat(frame(1<<20, 5), make([]byte, 1<<20-1)), nil},
		{"bitfield over a configured limit", Geometry{}, Limits{MaxMessage: 1000}, cat(frame(1001, 5), make([]byte, 1000)), ErrTooLong},
		{"extended of 1 MiB", Geometry{}, Limits{}, cat(frame(1<<20, 20, 1), make([]byte, 1<<20-2)), nil},
		{"truncated stream", Geometry{}, Limits{}, cat(frame(13, 6), u32(0)), io.ErrUnexpectedEOF},
		{"truncated length", Geometry{}, Limits{}, []byte{0, 0}, io.ErrUnexpectedEOF},
		{"truncated piece block", Geometry{}, Limits{}, cat(frame(9+100, 7), u32(0), u32(0), make([]byte, 50)), io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tc.in), tc.lim)
			r.SetGeometry(tc.geo)
			var m Message
			err := r.Read(&m)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Read: %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Read: %v, want %v", err, tc.want)
			}
			var pe *ProtocolError
			if tc.want != io.ErrUnexpectedEOF {
				if !errors.As(err, &pe) || pe.Reason == "" {
					t.Fatalf("Read: %v is not a *ProtocolError with a reason", err)
				}
			}
			t.Logf("%v", err)
		})
	}
}

// TestReaderNoHugeAllocation checks that a length prefix claiming 4 GiB
// is refused before anything is allocated for it.
func TestReaderNoHugeAllocation(t *testing.T) {
	in := frame(0xfffffff0, 20, 0)
	allocs := testing.AllocsPerRun(100, func() {
		r := NewReader(bytes.NewReader(in), Limits{})
		var m Message
		if err := r.Read(&m); !errors.Is(err, ErrTooLong) {
			t.Fatal(err)
		}
	})
	if allocs > 10 {
		t.Errorf("%v allocations for a refused message", allocs)
	}
}

func TestGeometryCheckBitfield(t *testing.T) {
	for _, tc := range []struct {
		pieces int
		bf     []byte
		ok     bool
	}{
		{0, nil, true},
		{0, []byte{0}, false},
		{1, []byte{0x80}, true},
		{1, []byte{0x40}, false},
		{8, []byte{0xff}, true},
		{8, []byte{0xff, 0}, false},
		{9, []byte{0xff, 0x80}, true},
		{9, []byte{0xff, 0x81}, false},
		{16, []byte{0xff, 0xff}, true},
	} {
		g := Geometry{NumPieces: tc.pieces, PieceLength: 16384, Length: int64(tc.pieces) * 16384}
		err := g.CheckBitfield(tc.bf)
		if (err == nil) != tc.ok {
			t.Errorf("%d pieces, %x: %v, want ok=%v", tc.pieces, tc.bf, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadBitfield) {
			t.Errorf("%d pieces, %x: %v, want ErrBadBitfield", tc.pieces, tc.bf, err)
		}
	}
}

func TestWriterRefusesUnknown(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.Queue(&Message{ID: 99}); err == nil {
		t.Fatal("Queue of id 99: no error")
	}
	if _, err := (&Message{ID: 42}).MarshalBinary(); err == nil {
		t.Fatal("MarshalBinary of id 42: no error")
	}
}
