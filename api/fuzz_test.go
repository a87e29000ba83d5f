package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

func encodeUploadRequest(r *uploadRequest) []byte {
	var b bytes.Buffer
	line := func(s string) { fmt.Fprintf(&b, "%04x%s", len(s)+4, s) }
	var caps []string
	for c := range r.caps {
		caps = append(caps, c)
	}
	sort.Strings(caps)
	for i, w := range r.wants {
		if i == 0 && len(caps) > 0 {
			line("want " + w.String() + " " + strings.Join(caps, " ") + "\n")
		} else {
			line("want " + w.String() + "\n")
		}
	}
	b.WriteString("0000")
	for _, h := range r.haves {
		line("have " + h.String() + "\n")
	}
	if r.done {
		line("done\n")
	} else {
		b.WriteString("0000")
	}
	return b.Bytes()
}

// FuzzParseUploadRequest: the parser never panics, and what it accepts
// encodes back to a request it parses the same.
func FuzzParseUploadRequest(f *testing.F) {
	h := strings.Repeat("ab", 20)
	f.Add([]byte("0032want " + h + "\n00000009done\n"))
	f.Add([]byte("0047want " + h + " side-band-64k ofs-delta\n00000032have " + h + "\n0000"))
	f.Add([]byte("0000"))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseUploadRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		again, err := parseUploadRequest(bytes.NewReader(encodeUploadRequest(req)))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !slices.Equal(req.wants, again.wants) || !slices.Equal(req.haves, again.haves) || req.done != again.done || len(req.caps) != len(again.caps) {
			t.Fatalf("round trip: %+v != %+v", req, again)
		}
		for c := range req.caps {
			if !again.caps[c] {
				t.Fatalf("round trip lost capability %q", c)
			}
		}
	})
}

// FuzzNotice: a notice the server accepts marshals back to the same one.
func FuzzNotice(f *testing.F) {
	f.Add([]byte(`{"node":"n1","head":"` + strings.Repeat("0f", 20) + `","addr":":7450"}`))
	f.Add([]byte(`{"node":"n1","head":"` + strings.Repeat("0f", 20) + `","addr":"[::1]:1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var in noticeJSON
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if dec.Decode(&in) != nil {
			return
		}
		n, err := parseNotice(in, "192.0.2.1:5000")
		if err != nil {
			return
		}
		out := noticeJSON{Node: n.Node, Head: n.Head.String(), Addr: n.Addr}
		n2, err := parseNotice(out, "198.51.100.1:1")
		if err != nil {
			t.Fatalf("re-parse %+v: %v", out, err)
		}
		if n2.Node != n.Node || n2.Head != n.Head || n2.Addr != n.Addr {
			t.Fatalf("round trip: %+v != %+v", n, n2)
		}
	})
}
