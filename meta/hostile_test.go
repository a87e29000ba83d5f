package meta_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/delugefs/delugefs/meta"
)

// Hand-made objects for hostile sources.

const (
	dirMarker  = "d3:gidi0e4:modei493e5:mtimei0e3:uidi0ee"
	emptyFile  = "d3:gidi0e6:lengthi0e4:modei420e5:mtimei0e3:uidi0ee"
	emptyExec  = "d3:gidi0e6:lengthi0e4:modei493e5:mtimei0e3:uidi0ee"
	badInfo    = "d3:gidi0e4:infod6:lengthi5e4:name3:abc12:piece lengthi3e6:pieces3:xyze4:modei420e5:mtimei0e3:uidi0ee"
	badBencode = "d3:gidi00e4:modei420e5:mtimei0e3:uidi0ee"
)

type hostileSrc struct {
	t  *testing.T
	st *memory.Storage
}

func (h hostileSrc) put(typ plumbing.ObjectType, data string) plumbing.Hash {
	o := h.st.NewEncodedObject()
	o.SetType(typ)
	w, _ := o.Writer()
	w.Write([]byte(data))
	w.Close()
	id, err := h.st.SetEncodedObject(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

func (h hostileSrc) blob(data string) plumbing.Hash { return h.put(plumbing.BlobObject, data) }

// tree encodes entries "mode name" -> id, in the order given.
func (h hostileSrc) tree(ents ...any) plumbing.Hash {
	var b strings.Builder
	for i := 0; i < len(ents); i += 2 {
		id := ents[i+1].(plumbing.Hash)
		b.WriteString(ents[i].(string) + "\x00" + string(id[:]))
	}
	return h.put(plumbing.TreeObject, b.String())
}

func (h hostileSrc) commit(tree, parent plumbing.Hash, gen int) plumbing.Hash {
	sig := "evil <evil@delugefs> 1795621620 +0000"
	return h.put(plumbing.CommitObject, fmt.Sprintf("tree %s\nparent %s\nauthor %s\ncommitter %s\n\nhostile\n\nDelugeFS-Generation: %d\n",
		tree, parent, sig, sig, gen))
}

func TestIntegrateHostile(t *testing.T) {
	a := newPeer(t, "aa", nil)
	put(t, a, "x", &meta.Entry{Kind: meta.KindFile, Mode: 0o644})
	a.Do(t, "dir", func(tx *meta.Tx) error { return tx.Put("d", &meta.Entry{Kind: meta.KindDir, Mode: 0o755}) })
	ctx := context.Background()
	cases := []struct {
		name string
		make func(h hostileSrc, parent plumbing.Hash, gen int) plumbing.Hash
	}{
		{"dot-dot", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 ..", h.blob(emptyFile), "100644 .delugefs", h.blob(dirMarker)), p, g)
		}},
		{".git", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "40000 .git", h.tree("100644 .delugefs", h.blob(dirMarker))), p, g)
		}},
		{"slash in name", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100644 a/b", h.blob(emptyFile)), p, g)
		}},
		{"bad info", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100644 f", h.blob(badInfo)), p, g)
		}},
		{"bad bencode", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100644 f", h.blob(badBencode)), p, g)
		}},
		{"bad marker", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(badBencode)), p, g)
		}},
		{"missing blob", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100644 f", plumbing.NewHash("1111111111111111111111111111111111111111")), p, g)
		}},
		{"missing parent", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker)), plumbing.NewHash("2222222222222222222222222222222222222222"), g)
		}},
		{"wrong generation", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker)), p, g+5)
		}},
		{"not in git order", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100644 z", h.blob(emptyFile), "100644 a", h.blob(emptyFile)), p, g)
		}},
		{"name twice", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			d := h.tree("100644 .delugefs", h.blob(dirMarker))
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100644 a", h.blob(emptyFile), "40000 a", d), p, g)
		}},
		{"exec bit disagrees", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100755 f", h.blob(emptyFile)), p, g)
		}},
		{"exec bit disagrees 2", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100644 f", h.blob(emptyExec)), p, g)
		}},
		{"submodule", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "160000 m", p), p, g)
		}},
		{"blob as tree", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "40000 d", h.blob(emptyFile)), p, g)
		}},
		{"tree as blob", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			d := h.tree("100644 .delugefs", h.blob(dirMarker))
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100644 f", d), p, g)
		}},
		{"symlink with NUL", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "120000 l", h.blob("a\x00b")), p, g)
		}},
		{"bad mode string", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "040000 d", h.tree("100644 .delugefs", h.blob(dirMarker))), p, g)
		}},
		{"bad commit header", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			tree := h.tree("100644 .delugefs", h.blob(dirMarker))
			return h.put(plumbing.CommitObject, fmt.Sprintf("tree %s\nparent %s\nauthor x <y> 1 +0000\ncommitter x <y> 1 +0000\nencoding evil\n\nm\n", tree, p))
		}},
		{"our marker as a file, in history", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			// dirMarker is one of ours (the marker of d): a commit before
			// the head uses it as a file's manifest.
			bad := h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100644 f", plumbing.ComputeHash(plumbing.BlobObject, []byte(dirMarker))), p, g)
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker)), bad, g+1)
		}},
		{"our tree as a blob, in history", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			ours := h.tree("100644 .delugefs", h.blob(dirMarker)) // also the tree of d
			bad := h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100644 f", ours), p, g)
			return h.commit(h.tree("100644 .delugefs", h.blob(dirMarker)), bad, g+1)
		}},
		{"commit is a tree", func(h hostileSrc, p plumbing.Hash, g int) plumbing.Hash {
			return h.tree("100644 .delugefs", h.blob(dirMarker))
		}},
	}
	// The generation of a's head: a made two commits.
	const headGen = 2
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, snap, stats := a.Head(), snapMap(a.Snapshot()), a.Stats()
			h := hostileSrc{t, memory.NewStorage()}
			head := c.make(h, a.Head(), headGen+1)
			res, err := a.Integrate(ctx, head, h.st)
			if !errors.Is(err, meta.ErrBadRemote) {
				t.Fatalf("Integrate = %+v, %v; want ErrBadRemote", res, err)
			}
			t.Log(err)
			if a.Head() != before || res.Changed {
				t.Errorf("head moved to %s", a.Head())
			}
			compareMaps(t, snapMap(a.Snapshot()), snap)
			if st := a.Stats(); st.Commits != stats.Commits || st.Integrations != stats.Integrations {
				t.Errorf("stats changed: %+v -> %+v", stats, st)
			}
		})
	}
	// The sanity check of the helpers: a well-formed commit of the same
	// making is taken.
	h := hostileSrc{t, memory.NewStorage()}
	good := h.commit(h.tree("100644 .delugefs", h.blob(dirMarker), "100755 exe", h.blob(emptyExec), "100644 f", h.blob(emptyFile)), a.Head(), headGen+1)
	res, err := a.Integrate(ctx, good, h.st)
	if err != nil || !res.Changed || a.Head() != good {
		t.Fatalf("well-formed commit: %+v %v", res, err)
	}
	if e, ok := a.Snapshot().Get("exe"); !ok || e.Mode != 0o755 {
		t.Errorf("exe: %+v", e)
	}
	if _, ok := a.Snapshot().Get("d"); ok {
		t.Errorf("d survived a fast-forward to a tree without it")
	}
	put(t, a, "after", &meta.Entry{Kind: meta.KindFile, Mode: 0o644})
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	gitFsck(t, a.dir)
}
