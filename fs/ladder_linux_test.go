//go:build linux

package fs_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/piece"
)

// infohashXattr returns the user.delugefs.infohash of p.
func infohashXattr(t *testing.T, p string) string {
	t.Helper()
	buf := make([]byte, 128)
	k, err := unix.Getxattr(p, "user.delugefs.infohash", buf)
	must(t, err)
	return string(buf[:k])
}

// TestLadderPastThreshold writes a file in order past 512 MiB, where the
// piece length grows from 256 KiB to 512 KiB: the seal must take the
// ladder's info (no rehash) and it must be the canonical one.
func TestLadderPastThreshold(t *testing.T) {
	n := start(t)
	const size = piece.MinLength*piece.TargetPieces + 3<<20 + 12345
	if piece.Length(size) == piece.MinLength {
		t.Fatalf("size %d is not past the first threshold", size)
	}
	ref := piece.NewHasher(piece.Length(size))
	buf := make([]byte, 1<<20)
	p := filepath.Join(n.Dir, "big")
	f, err := os.Create(p)
	must(t, err)
	before := n.FS.Stats()
	for off := int64(0); off < size; {
		k := min(int64(len(buf)), size-off)
		for i := 0; i < len(buf); i += 4096 {
			buf[i] = byte(off>>20) ^ byte(i>>12)
		}
		_, err := f.Write(buf[:k])
		must(t, err)
		ref.Write(buf[:k])
		off += k
	}
	must(t, f.Close())
	after := n.FS.Stats()
	if after.SealsKnown != before.SealsKnown+1 || after.SealsHashed != before.SealsHashed {
		t.Fatalf("seals before %+v after %+v: want one known, none hashed", before, after)
	}
	want := ref.Info().Hash().String()
	if got := infohashXattr(t, p); got != want {
		t.Fatalf("info-hash %s, want %s", got, want)
	}
	e, ok := n.Repo.Snapshot().Get("big")
	if !ok || e.Size != size || e.Info.PieceLength != piece.Length(size) {
		t.Fatalf("manifest %+v", e)
	}
}

// TestLadderOutOfOrderFallsBack: a file written with a hole first and
// the hole later is hashed by the seal, with the same result.
func TestLadderOutOfOrderFallsBack(t *testing.T) {
	n := start(t)
	data := make([]byte, 3<<20+7)
	for i := range data {
		data[i] = byte(i * 13)
	}
	p := filepath.Join(n.Dir, "holes")
	f, err := os.Create(p)
	must(t, err)
	before := n.FS.Stats()
	for _, at := range []int{1 << 20, 0, 2 << 20} {
		end := min(at+1<<20, len(data))
		if at == 2<<20 {
			end = len(data)
		}
		_, err := f.WriteAt(data[at:end], int64(at))
		must(t, err)
	}
	must(t, f.Close())
	after := n.FS.Stats()
	if after.SealsHashed != before.SealsHashed+1 || after.SealsKnown != before.SealsKnown {
		t.Fatalf("seals before %+v after %+v: want one hashed", before, after)
	}
	ref := piece.NewHasher(piece.Length(int64(len(data))))
	ref.Write(data)
	if got, want := infohashXattr(t, p), ref.Info().Hash().String(); got != want {
		t.Fatalf("info-hash %s, want %s", got, want)
	}
	if got := readFile(t, p); string(got) != string(data) {
		t.Fatal("contents differ")
	}
	// Written in order again over the same path (O_TRUNC): known again.
	must(t, os.WriteFile(p, data[:1<<20], 0o644))
	if s := n.FS.Stats(); s.SealsKnown != after.SealsKnown+1 {
		t.Fatalf("seals after a rewrite in order %+v", s)
	}
}

// TestKeepCacheNewBlob: a file read twice (the second open keeps the
// kernel's pages), then given new contents of the same size and mtime by
// a commit that bypasses the mount (as a peer's change arrives), reads
// the new contents at the next open; and so does a rewrite through the
// mount.
func TestKeepCacheNewBlob(t *testing.T) {
	n := start(t)
	p := filepath.Join(n.Dir, "f")
	a := make([]byte, 256<<10)
	for i := range a {
		a[i] = 'a'
	}
	must(t, os.WriteFile(p, a, 0o644))
	for range 2 {
		if got := readFile(t, p); string(got) != string(a) {
			t.Fatal("first contents differ")
		}
	}
	// A peer's change: a new blob, same size, same mtime.
	b := make([]byte, len(a))
	for i := range b {
		b[i] = 'b'
	}
	tmp, err := n.Store.TempFile()
	must(t, err)
	_, err = tmp.Write(b)
	must(t, err)
	must(t, tmp.Close())
	info, err := n.Store.Seal(tmp.Name(), nil)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(t, n.Repo.Update(ctx, "peer", func(tx *meta.Tx) error {
		old, _ := tx.Get("f")
		e := *old
		e.Info, e.Hash = info, info.Hash()
		return tx.Put("f", &e)
	}))
	if got := readFile(t, p); string(got) != string(b) {
		t.Fatalf("after a new blob: read %q..., want b...", got[:8])
	}
	for range 2 {
		if got := readFile(t, p); string(got) != string(b) {
			t.Fatal("second contents differ on a later open")
		}
	}
	// Our own rewrite, same size.
	c := make([]byte, len(a))
	for i := range c {
		c[i] = 'c'
	}
	must(t, os.WriteFile(p, c, 0o644))
	if got := readFile(t, p); string(got) != string(c) {
		t.Fatalf("after a rewrite: read %q..., want c...", got[:8])
	}
	// Back to the first contents through a rename over it.
	q := filepath.Join(n.Dir, "g")
	must(t, os.WriteFile(q, a, 0o644))
	readFile(t, q)
	must(t, os.Rename(q, p))
	if got := readFile(t, p); string(got) != string(a) {
		t.Fatalf("after a rename over: read %q..., want a...", got[:8])
	}
}
