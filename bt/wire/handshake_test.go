package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/delugefs/delugefs/bt"
)

func TestReservedBits(t *testing.T) {
	r := Reserved{}.With(ReservedFast).With(ReservedExtended)
	if want := (Reserved{5: 0x10, 7: 0x04}); r != want {
		t.Fatalf("reserved = %x, want %x", r, want)
	}
	if !r.Fast() || !r.Extended() || r.DHT() {
		t.Errorf("Fast %v Extended %v DHT %v, want true true false", r.Fast(), r.Extended(), r.DHT())
	}
	if (Reserved{}).Fast() || (Reserved{}).Extended() {
		t.Error("zero Reserved has bits")
	}
}

func testHandshake() Handshake {
	h := Handshake{Reserved: Reserved{}.With(ReservedFast).With(ReservedExtended)}
	copy(h.InfoHash[:], "0123456789abcdefghij")
	copy(h.PeerID[:], "-DF0001-xxxxxxxxxxxx")
	return h
}

func TestHandshakeBytes(t *testing.T) {
	h := testHandshake()
	var buf bytes.Buffer
	if err := WriteHandshake(&buf, h); err != nil {
		t.Fatal(err)
	}
	want := "\x13BitTorrent protocol" + "\x00\x00\x00\x00\x00\x10\x00\x04" +
		"0123456789abcdefghij" + "-DF0001-xxxxxxxxxxxx"
	if buf.String() != want {
		t.Fatalf("handshake = %q, want %q", buf.String(), want)
	}
	got, err := ReadHandshake(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got != h {
		t.Errorf("ReadHandshake = %+v, want %+v", got, h)
	}
}

func TestHandshakeBad(t *testing.T) {
	h := testHandshake()
	var buf bytes.Buffer
	WriteHandshake(&buf, h)
	good := buf.Bytes()
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"wrong length byte", append([]byte{18}, good[1:]...), ErrBadHandshake},
		{"wrong name", append([]byte("\x13BitTorrent protocoL"), good[20:]...), ErrBadHandshake},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdefghijkl"), ErrBadHandshake},
		{"truncated head", good[:47], io.ErrUnexpectedEOF},
		{"empty", nil, io.EOF},
		{"truncated peer id", good[:60], io.ErrUnexpectedEOF},
	} {
		_, err := ReadHandshake(bytes.NewReader(tc.in))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestHandshakeRouting plays a listener on a loopback socket: it reads
// the head, routes on the info-hash, answers, then reads the peer id.
func TestHandshakeRouting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := testHandshake()
	var known bt.InfoHash
	copy(known[:], "0123456789abcdefghij")
	type result struct {
		h   Handshake
		err error
	}
	done := make(chan result, 1)
	go func() { // the listener; exits after one connection
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		var res result
		var ih bt.InfoHash
		res.h.Reserved, ih, res.err = ReadHandshakeHead(c)
		if res.err == nil && ih != known {
			res.err = errors.New("unknown info-hash")
		}
		if res.err == nil {
			res.h.InfoHash = ih
			res.err = WriteHandshake(c, Handshake{Reserved: ReservedFast, InfoHash: ih, PeerID: [20]byte{'s'}})
		}
		if res.err == nil {
			res.h.PeerID, res.err = ReadPeerID(c)
		}
		done <- res
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := WriteHandshake(c, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHandshake(c)
	if err != nil {
		t.Fatal(err)
	}
	if got.InfoHash != known || !got.Reserved.Fast() || got.Reserved.Extended() || got.PeerID[0] != 's' {
		t.Errorf("initiator read %+v", got)
	}
	res := <-done
	if res.err != nil || res.h != want {
		t.Errorf("listener read %+v, %v; want %+v", res.h, res.err, want)
	}
}
