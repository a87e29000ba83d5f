package meta

import (
	"bytes"
	"testing"
)

// encodeLogged is the encoding parseOps reads, from what it returned.
func encodeLogged(ups []loggedUpdate) []byte {
	var b []byte
	for _, u := range ups {
		b = appendOp(b, opMsg, u.msg)
		for _, o := range u.ops {
			switch o.tag {
			case opPut:
				b = appendPut(b, o.kind, o.path, o.data)
			case opRemove:
				b = appendOp(b, opRemove, o.path)
			case opRename:
				b = appendOp(b, opRename, o.path, o.to)
			}
		}
	}
	return b
}

// FuzzOperationsRecord: parseOps takes any bytes without panicking and
// reads exactly what the encoding says (encoding what it read gives the
// input back); replaying what it read on a namespace fails cleanly or
// succeeds, never panics.
func FuzzOperationsRecord(f *testing.F) {
	tx := &Tx{root: &node{e: &Entry{Kind: KindDir, Mode: 0o755}, kids: emptyKids()}, log: true}
	var seed []byte
	add := func(msg string, fn func() error) {
		tx.ops = tx.ops[:0]
		if err := fn(); err != nil {
			f.Fatal(err)
		}
		seed = appendOp(seed, opMsg, msg)
		seed = append(seed, tx.ops...)
	}
	add("mkdir d", func() error {
		return tx.Put("d", &Entry{Kind: KindDir, Mode: 0o700, Xattrs: map[string][]byte{"user.a": {0, 1}}})
	})
	add("create d/f", func() error { return tx.Put("d/f", &Entry{Kind: KindFile, Mode: 0o644, Mtime: 7}) })
	add("symlink l", func() error { return tx.Put("l", &Entry{Kind: KindSymlink, Target: "d/f"}) })
	add("rename, remove", func() error {
		if err := tx.Rename("d/f", "g"); err != nil {
			return err
		}
		return tx.Remove("l")
	})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{opMsg, 1, 0, 0, 0, 'x', opPut, 9, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		ups, err := parseOps(p)
		if err != nil {
			return
		}
		if got := encodeLogged(ups); !bytes.Equal(got, p) {
			t.Fatalf("parsed %d updates that encode to %x, not %x", len(ups), got, p)
		}
		tx := &Tx{root: &node{e: &Entry{Kind: KindDir, Mode: 0o755}, kids: emptyKids()}}
		for _, u := range ups {
			for _, o := range u.ops {
				o.apply(tx) // errors are fine; a panic is not
			}
		}
	})
}
