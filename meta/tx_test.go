package meta_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
)

func TestTxSemantics(t *testing.T) {
	s := metatest.New(t)
	base := map[string]*meta.Entry{
		"d": metatest.Dir(0o755, 1), "d/f": metatest.File(1, 1, 0o644, 1),
		"e": metatest.Dir(0o755, 2), "g": metatest.File(2, 2, 0o644, 2),
		"s": metatest.Symlink("g"), "n": metatest.Dir(0o755, 3), "n/x": metatest.File(0, 0, 0o644, 3),
	}
	order := []string{"d", "d/f", "e", "g", "s", "n", "n/x"}
	reset := func(t *testing.T) {
		s.Do(t, "reset", func(tx *meta.Tx) error {
			ents, _ := tx.ReadDir("")
			for _, de := range ents {
				if err := removeAll(tx, de.Name); err != nil {
					return err
				}
			}
			for _, p := range order {
				if err := tx.Put(p, base[p]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	type op func(tx *meta.Tx) error
	ren := func(a, b string) op { return func(tx *meta.Tx) error { return tx.Rename(a, b) } }
	rm := func(a string) op { return func(tx *meta.Tx) error { return tx.Remove(a) } }
	put := func(a string, e *meta.Entry) op { return func(tx *meta.Tx) error { return tx.Put(a, e) } }
	for _, c := range []struct {
		name string
		op   op
		want error
		has  []string // paths that must exist after
		gone []string // paths that must not
	}{
		{"file over file", ren("g", "d/f"), nil, []string{"d/f"}, []string{"g"}},
		{"symlink over file", ren("s", "d/f"), nil, []string{"d/f"}, []string{"s"}},
		{"file over empty dir", ren("g", "e"), meta.ErrIsDir, []string{"g", "e"}, nil},
		{"dir over file", ren("e", "g"), meta.ErrNotDir, []string{"g", "e"}, nil},
		{"dir over empty dir", ren("d", "e"), nil, []string{"e/f"}, []string{"d", "d/f"}},
		{"dir over non-empty dir", ren("d", "n"), meta.ErrNotEmpty, []string{"d/f", "n/x"}, nil},
		{"dir into itself", ren("d", "d/sub"), meta.ErrInvalid, []string{"d/f"}, []string{"d/sub"}},
		{"dir onto itself", ren("d", "d"), nil, []string{"d/f"}, nil},
		{"file onto itself", ren("g", "g"), nil, []string{"g"}, nil},
		{"missing source", ren("x", "y"), meta.ErrNotExist, nil, []string{"y"}},
		{"missing target parent", ren("g", "nope/y"), meta.ErrNotExist, []string{"g"}, nil},
		{"target parent is a file", ren("g", "g/y"), meta.ErrNotDir, []string{"g"}, nil},
		{"source through a file", ren("g/y", "z"), meta.ErrNotDir, nil, []string{"z"}},
		{"root", ren("", "z"), meta.ErrInvalid, nil, nil},
		{"onto root", ren("d", ""), meta.ErrInvalid, nil, nil},
		{"file onto own parent dir", ren("n/x", "n"), meta.ErrIsDir, []string{"n/x"}, nil},
		{"dir with contents to new name", ren("n", "d/m"), nil, []string{"d/m/x", "d/f"}, []string{"n"}},
		{"remove non-empty dir", rm("n"), meta.ErrNotEmpty, []string{"n/x"}, nil},
		{"remove empty dir", rm("e"), nil, nil, []string{"e"}},
		{"remove file", rm("d/f"), nil, []string{"d"}, []string{"d/f"}},
		{"remove root", rm(""), meta.ErrInvalid, nil, nil},
		{"remove missing", rm("zz"), meta.ErrNotExist, nil, nil},
		{"remove through a file", rm("g/x"), meta.ErrNotDir, nil, nil},
		{"mkdir over file", put("g", metatest.Dir(0o755, 0)), meta.ErrExist, []string{"g"}, nil},
		{"file over dir", put("d", metatest.File(1, 1, 0o644, 0)), meta.ErrIsDir, []string{"d/f"}, nil},
		{"dir attrs keep children", put("d", metatest.Dir(0o700, 9)), nil, []string{"d/f"}, nil},
		{"missing parent", put("zz/a", metatest.File(0, 0, 0o644, 0)), meta.ErrNotExist, nil, []string{"zz/a"}},
		{"parent is a file", put("g/a", metatest.File(0, 0, 0o644, 0)), meta.ErrNotDir, nil, nil},
		{"root as file", put("", metatest.File(0, 0, 0o644, 0)), meta.ErrInvalid, nil, nil},
		{"root attrs", put("", metatest.Dir(0o711, 7)), nil, []string{"d/f", "n/x"}, nil},
		{"bad mode", put("x", &meta.Entry{Kind: meta.KindFile, Mode: 0o10000}), meta.ErrInvalid, nil, []string{"x"}},
		{"dotdot", put("a/../b", metatest.File(0, 0, 0o644, 0)), meta.ErrInvalid, nil, nil},
		{"absolute", put("/b", metatest.File(0, 0, 0o644, 0)), meta.ErrInvalid, nil, nil},
		{"nul", put("b\x00", metatest.File(0, 0, 0o644, 0)), meta.ErrInvalid, nil, nil},
		{"too long", put(strings.Repeat("x", 256), metatest.File(0, 0, 0o644, 0)), meta.ErrInvalid, nil, nil},
		{"empty symlink", put("l", &meta.Entry{Kind: meta.KindSymlink}), meta.ErrInvalid, nil, []string{"l"}},
		{"size without info", put("x", &meta.Entry{Kind: meta.KindFile, Size: 5}), meta.ErrInvalid, nil, []string{"x"}},
		{"replace file by symlink", put("g", metatest.Symlink("d")), nil, []string{"g"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			reset(t)
			before := s.Snapshot()
			err := s.Update(context.Background(), c.name, func(tx *meta.Tx) error { return c.op(tx) })
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			snap := s.Snapshot()
			if c.want != nil && snap != before {
				t.Errorf("a failed update published a new snapshot")
			}
			for _, p := range c.has {
				if _, ok := snap.Get(p); !ok {
					t.Errorf("%q missing", p)
				}
			}
			for _, p := range c.gone {
				if _, ok := snap.Get(p); ok {
					t.Errorf("%q still there", p)
				}
			}
		})
	}
}

func removeAll(tx *meta.Tx, p string) error {
	if ents, ok := tx.ReadDir(p); ok {
		for _, de := range ents {
			if err := removeAll(tx, p+"/"+de.Name); err != nil {
				return err
			}
		}
	}
	return tx.Remove(p)
}

// model is the naive reference: a flat map from path to entry.
type model map[string]*meta.Entry

func (m model) clone() model {
	c := make(model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (m model) isDir(p string) bool { return p == "" || m[p] != nil && m[p].Kind == meta.KindDir }

func (m model) hasKids(p string) bool {
	for k := range m {
		if strings.HasPrefix(k, p+"/") {
			return true
		}
	}
	return false
}

// walkTo checks every proper prefix of p.
func (m model) walkTo(p string) error {
	parts := strings.Split(p, "/")
	for i := 1; i < len(parts); i++ {
		pre := strings.Join(parts[:i], "/")
		e, ok := m[pre]
		if !ok {
			return meta.ErrNotExist
		}
		if e.Kind != meta.KindDir {
			return meta.ErrNotDir
		}
	}
	return nil
}

func (m model) put(p string, e *meta.Entry) error {
	if p == "" {
		if e.Kind != meta.KindDir {
			return meta.ErrInvalid
		}
		return nil
	}
	if err := m.walkTo(p); err != nil {
		return err
	}
	if old, ok := m[p]; ok {
		switch {
		case old.Kind == meta.KindDir && e.Kind != meta.KindDir:
			return meta.ErrIsDir
		case old.Kind != meta.KindDir && e.Kind == meta.KindDir:
			return meta.ErrExist
		}
	}
	m[p] = e
	return nil
}

func (m model) remove(p string) error {
	if p == "" {
		return meta.ErrInvalid
	}
	if err := m.walkTo(p); err != nil {
		return err
	}
	if _, ok := m[p]; !ok {
		return meta.ErrNotExist
	}
	if m.hasKids(p) {
		return meta.ErrNotEmpty
	}
	delete(m, p)
	return nil
}

func (m model) rename(from, to string) error {
	if from == "" || to == "" {
		return meta.ErrInvalid
	}
	if err := m.walkTo(from); err != nil {
		return err
	}
	src, ok := m[from]
	if !ok {
		return meta.ErrNotExist
	}
	if err := m.walkTo(to); err != nil {
		return err
	}
	if from == to {
		return nil
	}
	if strings.HasPrefix(to, from+"/") {
		return meta.ErrInvalid
	}
	if dst, ok := m[to]; ok {
		switch {
		case src.Kind == meta.KindDir && dst.Kind != meta.KindDir:
			return meta.ErrNotDir
		case src.Kind == meta.KindDir && m.hasKids(to):
			return meta.ErrNotEmpty
		case src.Kind != meta.KindDir && dst.Kind == meta.KindDir:
			return meta.ErrIsDir
		}
	}
	moved := model{}
	for k, v := range m {
		if k == from || strings.HasPrefix(k, from+"/") {
			moved[to+k[len(from):]] = v
			delete(m, k)
		}
	}
	for k, v := range moved {
		m[k] = v
	}
	return nil
}

// TestModel applies random operations, a few per update, to a Repo and to
// the naive model, and compares errors and the whole namespace after each
// update; then reopens the repository and compares again.
func TestModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	dir := filepath.Join(t.TempDir(), "meta.git")
	s := metatest.Serve(t, dir, meta.Options{})
	m := model{}
	names := []string{"a", "b", "c", ".git", "d d"}
	var keys []string // the model's paths, refreshed after each update
	randPath := func() string {
		if len(keys) > 0 && rng.IntN(3) > 0 {
			p := keys[rng.IntN(len(keys))]
			if rng.IntN(2) == 0 {
				p += "/" + names[rng.IntN(len(names))]
			}
			return p
		}
		n := 1 + rng.IntN(2)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = names[rng.IntN(len(names))]
		}
		return strings.Join(parts, "/")
	}
	randEntry := func() *meta.Entry {
		switch rng.IntN(4) {
		case 0:
			return metatest.Dir(uint32(rng.IntN(0o1000)), rng.Int64())
		case 1:
			return metatest.Symlink(randPath())
		default:
			return metatest.File(int64(rng.IntN(3)), rng.Uint64(), uint32(rng.IntN(0o1000)), rng.Int64())
		}
	}
	type op struct {
		kind int
		a, b string
		e    *meta.Entry
	}
	const updates = 1500
	okUpdates, maxLen := 0, 0
	for i := range updates {
		ops := make([]op, 1+rng.IntN(3)/2)
		for j := range ops {
			o := op{kind: rng.IntN(10), a: randPath(), b: randPath(), e: randEntry()}
			if rng.IntN(20) == 0 {
				o.a = ""
			}
			if rng.IntN(4) == 0 && strings.Contains(o.a, "/") { // renames within a subtree
				o.b = o.a[:strings.LastIndex(o.a, "/")] + "/" + names[rng.IntN(len(names))]
			}
			ops[j] = o
		}
		mm := m.clone()
		var wantErr error
		for _, o := range ops {
			switch {
			case o.kind < 5:
				wantErr = mm.put(o.a, o.e)
			case o.kind < 7:
				wantErr = mm.remove(o.a)
			default:
				wantErr = mm.rename(o.a, o.b)
			}
			if wantErr != nil {
				break
			}
		}
		err := s.Update(context.Background(), fmt.Sprintf("step %d", i), func(tx *meta.Tx) error {
			for _, o := range ops {
				var err error
				switch {
				case o.kind < 5:
					err = tx.Put(o.a, o.e)
				case o.kind < 7:
					err = tx.Remove(o.a)
				default:
					err = tx.Rename(o.a, o.b)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if wantErr == nil && err != nil || wantErr != nil && !errors.Is(err, wantErr) {
			t.Fatalf("seed %d step %d ops %+v: got %v, want %v", seed, i, ops, err, wantErr)
		}
		if wantErr == nil {
			m = mm
			okUpdates++
			keys = keys[:0]
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys) // deterministic for a seed
		}
		maxLen = max(maxLen, len(m))
		snap := s.Snapshot()
		compareModel(t, snap, m)
		if t.Failed() {
			t.Fatalf("seed %d step %d ops %+v", seed, i, ops)
		}
	}
	t.Logf("%d of %d updates succeeded; up to %d entries, %d at the end", okUpdates, updates, maxLen, len(m))
	s.Stop()
	s2 := metatest.Serve(t, dir, meta.Options{})
	if p := s2.Problems(); len(p) > 0 {
		t.Errorf("problems after reopen: %v", p)
	}
	compareModel(t, s2.Snapshot(), m)
	gitFsck(t, dir)
}

func compareModel(t *testing.T, snap *meta.Snapshot, m model) {
	t.Helper()
	want := make(map[string]*meta.Entry, len(m))
	for k, v := range m {
		c := *v
		if c.Info != nil {
			c.Size, c.Hash = c.Info.Length, c.Info.Hash()
		}
		if c.Kind == meta.KindSymlink {
			c.Size = int64(len(c.Target))
		}
		want[k] = &c
	}
	compareMaps(t, snapMap(snap), want)
	if snap.Len() != len(m) {
		t.Errorf("Len %d, model %d", snap.Len(), len(m))
	}
	// ReadDir agrees with the model for every directory.
	for p := range m {
		if !m.isDir(p) {
			continue
		}
		ents, ok := snap.ReadDir(p)
		if !ok {
			t.Errorf("ReadDir(%q) failed", p)
			continue
		}
		var got, exp []string
		for _, de := range ents {
			got = append(got, de.Name)
		}
		for k := range m {
			if strings.HasPrefix(k, p+"/") && !strings.Contains(k[len(p)+1:], "/") {
				exp = append(exp, k[len(p)+1:])
			}
		}
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			t.Errorf("ReadDir(%q) = %q, want %q", p, got, exp)
		}
	}
}
