package wire

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/delugefs/delugefs/bt"
)

// FuzzReader reads a stream of messages; every message read must encode
// back to exactly the bytes it was read from, pass the geometry it was
// checked against, and read the same with blocks skipped.
func FuzzReader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, pieces uint16) {
		var geo Geometry
		if pieces > 0 {
			geo = NewGeometry(int64(pieces)*32768-100, 32768)
		}
		lim := Limits{MaxMessage: 1 << 12}
		r := NewReader(bytes.NewReader(data), lim)
		r.SetGeometry(geo)
		skip := NewReader(bytes.NewReader(data), lim)
		skip.SetGeometry(geo)
		off := 0
		for {
			var m, s Message
			err := r.Read(&m)
			serr := skip.Next(&s)
			if (err == nil) != (serr == nil) && !(err != nil && m.ID == Piece) {
				t.Fatalf("Read %v, Next %v", err, serr)
			}
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
					var pe *ProtocolError
					if !errors.As(err, &pe) {
						t.Fatalf("error %v is not a *ProtocolError", err)
					}
				}
				return
			}
			if m.ID != s.ID || m.Index != s.Index || m.Begin != s.Begin {
				t.Fatalf("Read %v, Next %v", &m, &s)
			}
			enc, err := m.AppendBinary(nil)
			if err != nil {
				t.Fatalf("re-encode %v: %v", &m, err)
			}
			if off+len(enc) > len(data) || !bytes.Equal(enc, data[off:off+len(enc)]) {
				t.Fatalf("%v re-encodes to %x, read from %x", &m, enc, data[off:min(len(data), off+len(enc))])
			}
			off += len(enc)
			if err := geo.Check(&m, lim); err != nil {
				t.Fatalf("%v passed the reader but not Check: %v", &m, err)
			}
		}
	})
}

// FuzzExtHandshake decodes an extension handshake; whatever decodes must
// encode, decode to the same value and encode to the same bytes.
func FuzzExtHandshake(f *testing.F) {
	f.Add([]byte("d1:md11:ut_metadatai1eee"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseExtHandshake(data)
		if err != nil {
			if !errors.Is(err, ErrBadExtension) && !errors.Is(err, ErrBadBencode) {
				t.Fatalf("error %v is neither ErrBadExtension nor ErrBadBencode", err)
			}
			return
		}
		b, err := h.Bencode()
		if err != nil {
			t.Fatalf("re-encode %+v: %v", h, err)
		}
		h2, err := ParseExtHandshake(b)
		if err != nil {
			t.Fatalf("re-decode %q: %v", b, err)
		}
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("round trip: %#v, then %#v", h, h2)
		}
		b2, _ := h2.Bencode()
		if !bytes.Equal(b, b2) {
			t.Fatalf("encodings differ: %q, %q", b, b2)
		}
		if len(b) > len(data)+len("1:mde") { // only an absent m is added

			t.Fatalf("encoding of %d bytes grew to %d", len(data), len(b))
		}
	})
}

// FuzzMetadata decodes a ut_metadata message (round trip), lets a server
// answer it, and then replays the input as a script of peer events
// against a fetcher: it must never panic, and whatever it reports as
// fetched must be the true info.
func FuzzMetadata(f *testing.F) {
	f.Add([]byte("d8:msg_typei0e5:piecei0ee"))
	truth := testInfo(2*MetadataPieceSize + 300)
	bad := bytes.Clone(truth)
	bad[len(bad)-1] ^= 0xff
	want := bt.InfoHash(sha1.Sum(truth))
	good, liar := NewMetadataServer(truth), NewMetadataServer(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := ParseMetadataMsg(data); err == nil {
			enc, err := m.AppendBinary(nil)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", m, err)
			}
			m2, err := ParseMetadataMsg(enc)
			if err != nil || !reflect.DeepEqual(normalMeta(m), normalMeta(m2)) {
				t.Fatalf("round trip %+v: %+v, %v", m, m2, err)
			}
			if reply, ok := good.Answer(m); ok {
				b, _ := reply.AppendBinary(nil)
				if _, err := ParseMetadataMsg(b); err != nil {
					t.Fatalf("server reply %q does not parse: %v", b, err)
				}
			}
		} else if !errors.Is(err, ErrBadExtension) && !errors.Is(err, ErrBadBencode) {
			t.Fatalf("error %v is neither ErrBadExtension nor ErrBadBencode", err)
		}

		fe := NewMetadataFetcher[int](want, 1<<16)
		sizes := []int64{int64(len(truth)), int64(len(truth)), 100, 0, 1 << 20, -1}
		pending := map[int][]MetadataMsg{} // requests each peer owes an answer to
		for i := 0; i+1 < len(data); i += 2 {
			op, peer := data[i]%6, int(data[i+1]%4)
			var info []byte
			var err error
			switch op {
			case 0:
				fe.AddPeer(peer, sizes[int(data[i+1]>>2)%len(sizes)])
			case 1:
				fe.RemovePeer(peer)
				delete(pending, peer)
			case 2:
				if req, ok := fe.Next(peer); ok {
					pending[peer] = append(pending[peer], req)
				}
			case 3, 4: // peer 3 lies; op 4 answers with a reject
				if len(pending[peer]) == 0 {
					continue
				}
				req := pending[peer][0]
				pending[peer] = pending[peer][1:]
				srv := good
				if peer == 3 {
					srv = liar
				}
				reply, _ := srv.Answer(req)
				if op == 4 {
					reply = MetadataMsg{Type: MetadataReject, Piece: req.Piece}
				}
				info, _, err = fe.Receive(peer, reply)
			case 5:
				if m, perr := ParseMetadataMsg(data[i+2:]); perr == nil {
					info, _, err = fe.Receive(peer, m)
				}
			}
			if err != nil && !errors.Is(err, ErrMetadataHash) && !errors.Is(err, ErrBadExtension) {
				t.Fatalf("Receive: %v", err)
			}
			if info != nil && !bytes.Equal(info, truth) {
				t.Fatalf("fetched %d wrong bytes", len(info))
			}
			for _, n := range fe.inflight {
				if n < 0 {
					t.Fatalf("negative in-flight count %v", fe.inflight)
				}
			}
		}
		if fe.Done() && !bytes.Equal(fe.Info(), truth) {
			t.Fatal("Done with the wrong info")
		}
	})
}

func normalMeta(m MetadataMsg) MetadataMsg {
	if len(m.Data) == 0 {
		m.Data = nil
	}
	return m
}
