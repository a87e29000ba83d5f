package nsync

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

// fuzzLimits are small, so the fuzzer meets them.
var fuzzLimits = Limits{PackBytes: 1 << 20, Objects: 64, ObjectSize: 64 << 10, Inflated: 256 << 10}

// testPack encodes a small history (two commits, trees, similar blobs) as
// a pack, with deltas when window > 0.
func testPack(t testing.TB, window uint, refDeltas bool) ([]byte, plumbing.Hash) {
	sto := memory.NewStorage()
	put := func(typ plumbing.ObjectType, b []byte) plumbing.Hash {
		o := sto.NewEncodedObject()
		o.SetType(typ)
		w, _ := o.Writer()
		w.Write(b)
		w.Close()
		h, err := sto.SetEncodedObject(o)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	encode := func(obj interface {
		Encode(plumbing.EncodedObject) error
	}) plumbing.Hash {
		o := sto.NewEncodedObject()
		if err := obj.Encode(o); err != nil {
			t.Fatal(err)
		}
		h, err := sto.SetEncodedObject(o)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	var parent []plumbing.Hash
	var hashes []plumbing.Hash
	for c := range 2 {
		tree := &object.Tree{}
		for i := range 4 {
			body := bytes.Repeat([]byte(fmt.Sprintf("manifest %d of commit %d;", i, c)), 20)
			h := put(plumbing.BlobObject, body)
			hashes = append(hashes, h)
			tree.Entries = append(tree.Entries, object.TreeEntry{Name: fmt.Sprintf("f%d", i), Mode: filemode.Regular, Hash: h})
		}
		sort.Slice(tree.Entries, func(i, j int) bool { return tree.Entries[i].Name < tree.Entries[j].Name })
		th := encode(tree)
		sig := object.Signature{Name: "n", Email: "n@delugefs", When: time.Unix(int64(1000+c), 0).UTC()}
		ch := encode(&object.Commit{Author: sig, Committer: sig, Message: "m\n", TreeHash: th, ParentHashes: parent})
		parent = []plumbing.Hash{ch}
		hashes = append(hashes, th, ch)
	}
	var buf bytes.Buffer
	if _, err := packfile.NewEncoder(&buf, sto, refDeltas).Encode(hashes, window); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), parent[0]
}

// FuzzDecodePack feeds decodePack (what Fetch does with a peer's pack)
// arbitrary bytes. It must never panic or exceed the limits, and what it
// accepts must re-encode into a pack that decodes to the same objects.
func FuzzDecodePack(f *testing.F) {
	for _, tc := range []struct {
		window uint
		ref    bool
	}{{0, false}, {10, false}, {10, true}} {
		p, _ := testPack(f, tc.window, tc.ref)
		f.Add(p)
	}
	f.Add([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, pack []byte) {
		checkDecode(t, pack)
		// The same bytes with a valid trailer, to get past the checksum.
		if len(pack) >= packHeaderLen+packTrailerLen {
			body := pack[:len(pack)-packTrailerLen]
			sum := sha1.Sum(body)
			checkDecode(t, append(append([]byte(nil), body...), sum[:]...))
		}
	})
}

// checkDecode checks the properties of FuzzDecodePack on one input.
func checkDecode(t *testing.T, pack []byte) {
	{
		ov, err := decodePack(pack, nil, fuzzLimits, plumbing.ZeroHash)
		if err != nil {
			if !errors.Is(err, ErrBadPack) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrIncomplete) {
				t.Fatalf("error matches no sentinel: %v", err)
			}
			return
		}
		n, size := ov.counts()
		if n > fuzzLimits.Objects || size > fuzzLimits.Inflated {
			t.Fatalf("accepted %d objects, %d bytes, past the limits", n, size)
		}
		hashes := append([]plumbing.Hash(nil), ov.order...)
		var buf bytes.Buffer
		if _, err := packfile.NewEncoder(&buf, ov.mem, false).Encode(hashes, 10); err != nil {
			t.Fatalf("re-encode %d objects: %v", len(hashes), err)
		}
		again, err := decodePack(buf.Bytes(), nil, fuzzLimits, plumbing.ZeroHash)
		if err != nil {
			t.Fatalf("decode of the re-encoded pack: %v", err)
		}
		if m, s := again.counts(); m != n || s != size {
			t.Fatalf("re-encoded pack holds %d objects (%d bytes), want %d (%d)", m, s, n, size)
		}
		for _, h := range hashes {
			if !again.received(h) {
				t.Fatalf("re-encoded pack lost %s", h)
			}
		}
	}
}

func TestDecodePack(t *testing.T) {
	for _, tc := range []struct {
		window uint
		ref    bool
	}{{0, false}, {10, false}, {10, true}} {
		pack, head := testPack(t, tc.window, tc.ref)
		ov, err := decodePack(pack, nil, fuzzLimits, head)
		if err != nil {
			t.Fatalf("window %d ref %v: %v", tc.window, tc.ref, err)
		}
		if n, _ := ov.counts(); n != 12 {
			t.Errorf("window %d ref %v: %d objects, want 12", tc.window, tc.ref, n)
		}
		// The head's history without its first commit is incomplete.
		cut := newOverlay(nil, fuzzLimits)
		var first plumbing.Hash
		for _, h := range ov.order {
			o, _ := ov.mem.EncodedObject(plumbing.AnyObject, h)
			if o.Type() == plumbing.CommitObject && h != head {
				first = h
				continue
			}
			cut.SetEncodedObject(o)
		}
		if err := cut.checkClosed(head); !errors.Is(err, ErrIncomplete) || first.IsZero() {
			t.Errorf("history without its first commit: %v", err)
		}
	}
}
