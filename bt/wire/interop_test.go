package wire

// Interoperability with a stock implementation: anacrolix/torrent's
// peer_protocol (test-only dependency). Every message is compared byte for
// byte both ways, and handshakes run over loopback sockets against its
// Handshake function.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/delugefs/delugefs/bt"
)

// toAnacrolix converts one of our messages to theirs.
func toAnacrolix(m Message) pp.Message {
	if m.ID == KeepAlive {
		return pp.Message{Keepalive: true}
	}
	x := pp.Message{
		Type:   pp.MessageType(m.ID),
		Index:  pp.Integer(m.Index),
		Begin:  pp.Integer(m.Begin),
		Length: pp.Integer(m.Length),
		Port:   m.Port,
	}
	switch m.ID {
	case Bitfield:
		for _, b := range m.Bitfield {
			for i := 7; i >= 0; i-- {
				x.Bitfield = append(x.Bitfield, b>>i&1 == 1)
			}
		}
	case Piece:
		x.Piece = m.Block
	case Extended:
		x.ExtendedID = pp.ExtensionNumber(m.ExtID)
		x.ExtendedPayload = m.Payload
	}
	return x
}

func TestAnacrolixMessages(t *testing.T) {
	for _, tc := range messageTable {
		t.Run(tc.name, func(t *testing.T) {
			ours, err := tc.msg.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := toAnacrolix(tc.msg).MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Fatalf("ours %x, anacrolix %x", ours, theirs)
			}
			// Theirs decodes ours.
			d := pp.Decoder{R: bufio.NewReader(bytes.NewReader(ours)), MaxLength: 1 << 20}
			var got pp.Message
			if err := d.Decode(&got); err != nil {
				t.Fatalf("anacrolix decodes ours: %v", err)
			}
			want := toAnacrolix(tc.msg)
			if len(want.ExtendedPayload) == 0 {
				want.ExtendedPayload, got.ExtendedPayload = nil, nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("anacrolix decoded %+v, want %+v", got, want)
			}
			// Ours decodes theirs.
			var m Message
			if err := NewReader(bytes.NewReader(theirs), Limits{}).Read(&m); err != nil {
				t.Fatalf("we decode anacrolix: %v", err)
			}
			if !reflect.DeepEqual(normalize(m), normalize(tc.msg)) {
				t.Errorf("we decoded %+v, want %+v", m, tc.msg)
			}
		})
	}
}

func TestAnacrolixExtensionMessages(t *testing.T) {
	// Their extension handshake, as their client sends it.
	theirs, err := bencode.Marshal(pp.ExtendedHandshakeMessage{
		M:            map[pp.ExtensionName]pp.ExtensionNumber{pp.ExtensionNameMetadata: 2, pp.ExtensionNamePex: 1},
		V:            "Go.Torrent v1.61.0",
		Reqq:         250,
		MetadataSize: 12345,
		Port:         42069,
		YourIp:       pp.CompactIp(net.IPv4(127, 0, 0, 1)),
		Ipv6:         net.ParseIP("::1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseExtHandshake(theirs)
	if err != nil {
		t.Fatalf("ParseExtHandshake(%q): %v", theirs, err)
	}
	if id, ok := h.Ext(ExtMetadata); !ok || id != 2 || h.MetadataSize != 12345 || h.Reqq != 250 || h.P != 42069 ||
		!bytes.Equal(h.YourIP, []byte{127, 0, 0, 1}) {
		t.Errorf("parsed %+v", h)
	}
	// Ours, as they read it.
	ours, err := (&ExtHandshake{M: map[string]int{ExtMetadata: 3}, V: "DelugeFS", Reqq: 500, MetadataSize: 999, P: 6881}).Bencode()
	if err != nil {
		t.Fatal(err)
	}
	var back pp.ExtendedHandshakeMessage
	if err := bencode.Unmarshal(ours, &back); err != nil {
		t.Fatal(err)
	}
	if back.M[pp.ExtensionNameMetadata] != 3 || back.V != "DelugeFS" || back.Reqq != 500 || back.MetadataSize != 999 || back.Port != 6881 {
		t.Errorf("anacrolix read %+v", back)
	}

	// ut_metadata: their request, their data message.
	req := pp.MetadataExtensionRequestMsg(3, 1)
	if m, err := ParseMetadataMsg(req.ExtendedPayload); err != nil || m.Type != MetadataRequest || m.Piece != 1 {
		t.Errorf("their request: %+v, %v", m, err)
	}
	info := testInfo(MetadataPieceSize + 10)
	head, _ := bencode.Marshal(pp.ExtendedMetadataRequestMsg{Piece: 1, TotalSize: len(info), Type: pp.DataMetadataExtensionMsgType})
	data := append(head, info[MetadataPieceSize:]...)
	if m, err := ParseMetadataMsg(data); err != nil || m.Type != MetadataData || m.TotalSize != int64(len(info)) || !bytes.Equal(m.Data, info[MetadataPieceSize:]) {
		t.Errorf("their data: %+v, %v", m, err)
	}
	// Our data message, as they read it.
	reply, _ := NewMetadataServer(info).Answer(MetadataMsg{Type: MetadataRequest, Piece: 1})
	b, _ := reply.AppendBinary(nil)
	var theirMsg pp.ExtendedMetadataRequestMsg
	d := bencode.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&theirMsg); err != nil {
		t.Fatal(err)
	}
	if theirMsg.Type != pp.DataMetadataExtensionMsgType || theirMsg.Piece != 1 || theirMsg.TotalSize != len(info) ||
		!bytes.Equal(b[len(b)-theirMsg.PieceSize():], info[MetadataPieceSize:]) {
		t.Errorf("anacrolix read %+v", theirMsg)
	}
}

// TestAnacrolixHandshake runs handshakes over loopback TCP between our
// codec and anacrolix's Handshake, each side initiating once.
func TestAnacrolixHandshake(t *testing.T) {
	var ih bt.InfoHash
	copy(ih[:], "abcdefghij0123456789")
	theirID := [20]byte{'-', 'G', 'T'}
	ours := Handshake{Reserved: Reserved{}.With(ReservedFast).With(ReservedExtended), InfoHash: ih, PeerID: [20]byte{'-', 'D', 'F'}}
	theirBits := pp.NewPeerExtensionBytes(pp.ExtensionBitFast, pp.ExtensionBitLtep)

	for _, weInitiate := range []bool{true, false} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			res pp.HandshakeResult
			err error
		}
		done := make(chan result, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		go func() { // anacrolix's side; exits when its handshake ends
			var c net.Conn
			var err error
			if weInitiate {
				c, err = ln.Accept()
			} else {
				c, err = net.Dial("tcp", ln.Addr().String())
			}
			if err != nil {
				done <- result{err: err}
				return
			}
			defer c.Close()
			var target *metainfo.Hash // nil: it waits for our info-hash
			if !weInitiate {
				h := metainfo.Hash(ih)
				target = &h
			}
			res, err := pp.Handshake(ctx, c, target, theirID, theirBits)
			done <- result{res, err}
			// Wait for our side to finish reading before closing.
			var one [1]byte
			c.Read(one[:])
		}()
		var c net.Conn
		if weInitiate {
			c, err = net.Dial("tcp", ln.Addr().String())
		} else {
			c, err = ln.Accept()
		}
		if err != nil {
			t.Fatal(err)
		}
		var got Handshake
		if weInitiate {
			if err := WriteHandshake(c, ours); err != nil {
				t.Fatal(err)
			}
			got, err = ReadHandshake(c)
		} else {
			// The listener's two steps: route on the head, then answer.
			got.Reserved, got.InfoHash, err = ReadHandshakeHead(c)
			if err == nil && got.InfoHash == ih {
				err = WriteHandshake(c, ours)
			}
			if err == nil {
				got.PeerID, err = ReadPeerID(c)
			}
		}
		if err != nil {
			t.Fatalf("weInitiate=%v: %v", weInitiate, err)
		}
		r := <-done
		c.Close()
		ln.Close()
		cancel()
		if r.err != nil {
			t.Fatalf("weInitiate=%v: anacrolix: %v", weInitiate, r.err)
		}
		if got.InfoHash != ih || got.PeerID != theirID || !got.Reserved.Fast() || !got.Reserved.Extended() {
			t.Errorf("weInitiate=%v: we read %+v", weInitiate, got)
		}
		if [20]byte(r.res.Hash) != [20]byte(ih) || r.res.PeerID != ours.PeerID || !r.res.SupportsFast() || !r.res.SupportsExtended() {
			t.Errorf("weInitiate=%v: anacrolix read %+v", weInitiate, r.res)
		}
	}
}

// BenchmarkAnacrolixReadPiece is the reference for BenchmarkReadPiece:
// anacrolix's decoder with a block pool, on the same stream.
func BenchmarkAnacrolixReadPiece(b *testing.B) {
	pool := sync.Pool{New: func() any { s := make([]byte, BlockSize); return &s }}
	d := pp.Decoder{R: bufio.NewReaderSize(&cycle{buf: pieceStream(b, 64)}, readBufSize), Pool: &pool, MaxLength: 1 << 20}
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	for b.Loop() {
		var m pp.Message
		if err := d.Decode(&m); err != nil {
			b.Fatal(err)
		}
		pool.Put(&m.Piece)
	}
}

// BenchmarkAnacrolixWritePiece is the reference for BenchmarkWritePiece.
func BenchmarkAnacrolixWritePiece(b *testing.B) {
	w := bufio.NewWriterSize(io.Discard, 64<<10)
	m := pp.Message{Type: pp.Piece, Index: 1, Piece: make([]byte, BlockSize)}
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	for b.Loop() {
		if err := m.WriteTo(w); err != nil {
			b.Fatal(err)
		}
		w.Flush()
	}
}
