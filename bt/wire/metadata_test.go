package wire

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/delugefs/delugefs/bt"
)

func TestMetadataMsgCodec(t *testing.T) {
	for _, tc := range []struct {
		msg  MetadataMsg
		wire string
	}{
		{MetadataMsg{Type: MetadataRequest, Piece: 0}, "d8:msg_typei0e5:piecei0ee"},
		{MetadataMsg{Type: MetadataReject, Piece: 3}, "d8:msg_typei2e5:piecei3ee"},
		{MetadataMsg{Type: MetadataData, Piece: 1, TotalSize: 16384 + 3, Data: []byte("xyz")},
			"d8:msg_typei1e5:piecei1e10:total_sizei16387eexyz"},
		{MetadataMsg{Type: 7, Piece: 2}, "d8:msg_typei7e5:piecei2ee"},
	} {
		b, err := tc.msg.AppendBinary(nil)
		if err != nil || string(b) != tc.wire {
			t.Errorf("AppendBinary(%+v) = %q, %v; want %q", tc.msg, b, err, tc.wire)
		}
		got, err := ParseMetadataMsg([]byte(tc.wire))
		if err != nil || !reflect.DeepEqual(got, tc.msg) {
			t.Errorf("ParseMetadataMsg(%q) = %+v, %v; want %+v", tc.wire, got, err, tc.msg)
		}
	}
}

func TestMetadataMsgBad(t *testing.T) {
	for _, in := range []string{
		"",
		"i1e",
		"d5:piecei0ee",                  // no msg_type
		"d8:msg_typei0ee",               // no piece
		"d8:msg_typei0e5:piecei-1ee",    // negative piece
		"d8:msg_typei0e5:piecei1024ee",  // piece past MaxMetadataSize
		"d8:msg_typei0e5:piecei0eextra", // bytes after a request
		"d8:msg_typei1e5:piecei0eexyz",  // data without total_size
		"d8:msg_typei1e5:piecei0e10:total_sizei0eexyz",       // total_size 0
		"d8:msg_typei1e5:piecei0e10:total_sizei-3eexyz",      // negative total_size
		"d8:msg_typei1e5:piecei1e10:total_sizei3eexyz",       // piece past total_size
		"d8:msg_typei1e5:piecei0e10:total_sizei4eexyz",       // short piece
		"d8:msg_typei1e5:piecei0e10:total_sizei2eexyz",       // long piece
		"d8:msg_typei1e5:piecei0e10:total_sizei999999999eex", // over MaxMetadataSize
		"d5:piecei0e8:msg_typei0ee",                          // unsorted
		"d8:msg_type1:a5:piecei0ee",                          // msg_type not an int
		"d8:msg_typei-1e5:piecei0ee",                         // negative msg_type
	} {
		if m, err := ParseMetadataMsg([]byte(in)); err == nil {
			t.Errorf("ParseMetadataMsg(%q) = %+v, want an error", in, m)
		} else if !errors.Is(err, ErrBadExtension) && !errors.Is(err, ErrBadBencode) {
			t.Errorf("ParseMetadataMsg(%q) = %v, want ErrBadExtension or ErrBadBencode", in, err)
		}
	}
}

func testInfo(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestMetadataServer(t *testing.T) {
	info := testInfo(2*MetadataPieceSize + 100)
	s := NewMetadataServer(info)
	if s.Size() != int64(len(info)) {
		t.Errorf("Size = %d", s.Size())
	}
	for piece, want := range map[int]int{0: MetadataPieceSize, 1: MetadataPieceSize, 2: 100, 3: -1} {
		reply, ok := s.Answer(MetadataMsg{Type: MetadataRequest, Piece: piece})
		if !ok {
			t.Fatalf("piece %d: no reply", piece)
		}
		if want < 0 {
			if reply.Type != MetadataReject || reply.Piece != piece {
				t.Errorf("piece %d: %+v, want reject", piece, reply)
			}
			continue
		}
		start := piece * MetadataPieceSize
		if reply.Type != MetadataData || reply.TotalSize != int64(len(info)) || !bytes.Equal(reply.Data, info[start:start+want]) {
			t.Errorf("piece %d: type %v total %d %d bytes", piece, reply.Type, reply.TotalSize, len(reply.Data))
		}
		// The reply survives its own encoding and the strict parser.
		b, _ := reply.AppendBinary(nil)
		if back, err := ParseMetadataMsg(b); err != nil || !bytes.Equal(back.Data, reply.Data) {
			t.Errorf("piece %d: reply does not parse: %v", piece, err)
		}
	}
	if _, ok := s.Answer(MetadataMsg{Type: MetadataData, Piece: 0}); ok {
		t.Error("answered a data message")
	}
	empty := NewMetadataServer(nil)
	if reply, _ := empty.Answer(MetadataMsg{Type: MetadataRequest}); reply.Type != MetadataReject {
		t.Errorf("server without metadata: %+v, want reject", reply)
	}
}

// swarm drives a fetcher against peers that each serve some bytes
// (the right info, corrupt info, or nothing), round by round, the way the
// connection actors would.
type swarm struct {
	t       *testing.T
	f       *MetadataFetcher[string]
	servers map[string]*MetadataServer
	blamed  []string
	errs    int
}

func (s *swarm) run(rounds int) []byte {
	type sent struct {
		peer  string
		reply []byte
	}
	for range rounds {
		// Each peer gets one request per round; the answers arrive after
		// all requests went out, so pieces come from several peers.
		var inflight []sent
		for _, p := range slices.Sorted(maps.Keys(s.servers)) {
			req, ok := s.f.Next(p)
			if !ok {
				continue
			}
			reply, ok := s.servers[p].Answer(req)
			if !ok {
				s.t.Fatalf("%s: no reply to %+v", p, req)
			}
			b, _ := reply.AppendBinary(nil) // through the wire encoding
			inflight = append(inflight, sent{p, b})
		}
		if len(inflight) == 0 {
			return nil
		}
		for _, x := range inflight {
			msg, err := ParseMetadataMsg(x.reply)
			if err != nil {
				s.t.Fatal(err)
			}
			info, blame, err := s.f.Receive(x.peer, msg)
			if err != nil {
				s.t.Logf("%s: %v (blame %v)", x.peer, err, blame)
				s.errs++
				s.blamed = append(s.blamed, blame...)
				for _, q := range blame {
					delete(s.servers, q)
				}
			}
			if info != nil {
				return info
			}
		}
	}
	return nil
}

func TestMetadataFetcherOnePeer(t *testing.T) {
	info := testInfo(3*MetadataPieceSize + 5)
	want := bt.InfoHash(sha1.Sum(info))
	f := NewMetadataFetcher[string](want, 0)
	if err := f.AddPeer("a", int64(len(info))); err != nil {
		t.Fatal(err)
	}
	s := &swarm{t: t, f: f, servers: map[string]*MetadataServer{"a": NewMetadataServer(info)}}
	got := s.run(10)
	if !bytes.Equal(got, info) || !f.Done() || !bytes.Equal(f.Info(), info) {
		t.Fatalf("fetched %d bytes, Done %v", len(got), f.Done())
	}
	if _, ok := f.Next("a"); ok {
		t.Error("Next after Done")
	}
}

func TestMetadataFetcherBlamesAndRestarts(t *testing.T) {
	info := testInfo(2*MetadataPieceSize + 77)
	bad := bytes.Clone(info)
	bad[MetadataPieceSize+5] ^= 1
	want := bt.InfoHash(sha1.Sum(info))
	f := NewMetadataFetcher[string](want, 0)
	// The liar comes first, so its pieces make the first attempt fail.
	for _, p := range []string{"liar", "good"} {
		if err := f.AddPeer(p, int64(len(info))); err != nil {
			t.Fatal(err)
		}
	}
	s := &swarm{t: t, f: f, servers: map[string]*MetadataServer{
		"liar": NewMetadataServer(bad), "good": NewMetadataServer(info),
	}}
	got := s.run(10)
	if !bytes.Equal(got, info) {
		t.Fatalf("fetched %d bytes, want the info", len(got))
	}
	if !slices.Equal(s.blamed, []string{"liar"}) || !f.Banned("liar") || f.Banned("good") {
		t.Errorf("errs %d blamed %v banned(liar) %v; want liar and only liar blamed", s.errs, s.blamed, f.Banned("liar"))
	}
}

func TestMetadataFetcherWrongSizeThenRight(t *testing.T) {
	info := testInfo(MetadataPieceSize + 1)
	want := bt.InfoHash(sha1.Sum(info))
	f := NewMetadataFetcher[string](want, 0)
	// "short" announces a wrong size first: its attempt fails the hash,
	// then the fetcher uses the size "good" announced.
	f.AddPeer("short", 100)
	f.AddPeer("good", int64(len(info)))
	s := &swarm{t: t, f: f, servers: map[string]*MetadataServer{
		"short": NewMetadataServer(testInfo(100)), "good": NewMetadataServer(info),
	}}
	if got := s.run(10); !bytes.Equal(got, info) {
		t.Fatalf("fetched %d bytes", len(got))
	}
	if !f.Banned("short") || f.Banned("good") {
		t.Errorf("banned short %v good %v", f.Banned("short"), f.Banned("good"))
	}
}

func TestMetadataFetcherRejectAndRemove(t *testing.T) {
	info := testInfo(2 * MetadataPieceSize)
	want := bt.InfoHash(sha1.Sum(info))
	f := NewMetadataFetcher[string](want, 0)
	f.AddPeer("a", int64(len(info)))
	f.AddPeer("b", int64(len(info)))
	r1, _ := f.Next("a")
	r2, _ := f.Next("b")
	if r1.Piece == r2.Piece {
		t.Errorf("a and b both asked for piece %d, want different pieces first", r1.Piece)
	}
	// a rejects: it is asked no more; b leaves: its piece is free again.
	if _, _, err := f.Receive("a", MetadataMsg{Type: MetadataReject, Piece: r1.Piece}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Next("a"); ok {
		t.Error("asked a peer that rejected")
	}
	f.RemovePeer("b")
	f.AddPeer("c", int64(len(info)))
	srv := NewMetadataServer(info)
	var got []byte
	for range 4 {
		req, ok := f.Next("c")
		if !ok {
			break
		}
		reply, _ := srv.Answer(req)
		info, _, err := f.Receive("c", reply)
		if err != nil {
			t.Fatal(err)
		}
		got = info
	}
	if !bytes.Equal(got, info) {
		t.Fatalf("c alone fetched %d bytes", len(got))
	}
}

func TestMetadataFetcherBounds(t *testing.T) {
	f := NewMetadataFetcher[int](bt.InfoHash{}, 1000)
	for _, size := range []int64{-1, 1001, MaxMetadataSize + 1} {
		if err := f.AddPeer(1, size); !errors.Is(err, ErrBadExtension) {
			t.Errorf("AddPeer size %d: %v, want ErrBadExtension", size, err)
		}
	}
	if err := f.AddPeer(1, 0); err != nil || f.Size() != 0 {
		t.Errorf("AddPeer size 0: %v, size %d", err, f.Size())
	}
	f.AddPeer(2, 500)
	req, ok := f.Next(2)
	if !ok || req.Piece != 0 {
		t.Fatalf("Next = %+v, %v", req, ok)
	}
	// A data message contradicting the announced size is the peer's fault.
	_, _, err := f.Receive(2, MetadataMsg{Type: MetadataData, Piece: 0, TotalSize: 400, Data: make([]byte, 400)})
	if !errors.Is(err, ErrBadExtension) {
		t.Errorf("wrong total_size: %v, want ErrBadExtension", err)
	}
	// Unsolicited data is ignored.
	if info, blame, err := f.Receive(2, MetadataMsg{Type: MetadataData, Piece: 0, TotalSize: 500, Data: make([]byte, 500)}); info != nil || blame != nil || err != nil {
		t.Errorf("unsolicited data: %v %v %v", info, blame, err)
	}
	if info, _, err := f.Receive(3, MetadataMsg{Type: MetadataData}); info != nil || err != nil {
		t.Errorf("unknown peer: %v %v", info, err)
	}
}
