package nsync

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
)

func TestClone(t *testing.T) {
	p := newPeer(t, "")
	var names []string
	for i := range 60 {
		names = append(names, "d"+string(rune('a'+i%5))+"/f"+string(rune('A'+i)))
	}
	p.write(t, 1, names...)
	p.write(t, 100, "top", "da/fA") // a second commit: history, not just a tree
	p.repo.Do(t, "rm", func(tx *meta.Tx) error { return tx.Remove("db/fB") })
	if err := p.repo.Sync(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"new", func(t *testing.T) string { return filepath.Join(t.TempDir(), "root", "meta.git") }},
		{"empty dir", func(t *testing.T) string {
			d := filepath.Join(t.TempDir(), "meta.git")
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			return d
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			start := time.Now()
			if err := Clone(testCtx(t, 20*time.Second), p.client, dir); err != nil {
				t.Fatal(err)
			}
			t.Logf("clone of %d entries in %v", p.repo.Snapshot().Len(), time.Since(start))
			r := metatest.Serve(t, dir, meta.Options{})
			if got, want := r.Head(), p.repo.Head(); got != want {
				t.Errorf("clone's head %s, want %s", got, want)
			}
			if got, want := dump(r.Snapshot()), dump(p.repo.Snapshot()); got != want {
				t.Errorf("clone's snapshot differs:\n%s\nwant\n%s", got, want)
			}
			if probs := r.Problems(); len(probs) > 0 {
				t.Errorf("problems in the clone: %v", probs)
			}
			// The clone is a working repository: commit on top of it.
			r.Do(t, "after clone", func(tx *meta.Tx) error {
				return tx.Put("new", metatest.File(10, 9, 0o644, 1))
			})
			ents, _ := os.ReadDir(filepath.Dir(dir))
			for _, e := range ents {
				if strings.Contains(e.Name(), ".clone-") {
					t.Errorf("temporary %s left behind", e.Name())
				}
			}
		})
	}
}

func TestCloneFails(t *testing.T) {
	p := newPeer(t, "")
	p.write(t, 1, "a", "b", "c")

	check := func(t *testing.T, parent, dir string, err error) {
		t.Helper()
		if err == nil {
			t.Fatal("clone succeeded")
		}
		if !strings.HasPrefix(err.Error(), "nsync: ") {
			t.Errorf("error without the package prefix: %v", err)
		}
		ents, rerr := os.ReadDir(parent)
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, e := range ents {
			if filepath.Join(parent, e.Name()) != dir || e.IsDir() && !isEmpty(t, dir) {
				t.Errorf("failed clone left %s", e.Name())
			}
		}
		t.Log(err)
	}

	t.Run("bad pack", func(t *testing.T) {
		p.setMangle(func(b []byte) []byte { return b[:len(b)-30] })
		defer p.mangle.Store(nil)
		parent := t.TempDir()
		dir := filepath.Join(parent, "meta.git")
		err := Clone(testCtx(t, 10*time.Second), p.client, dir)
		check(t, parent, dir, err)
		if !errors.Is(err, ErrBadPack) {
			t.Errorf("error %v, want ErrBadPack", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("failed clone left %s: %v", dir, err)
		}
	})
	t.Run("limits", func(t *testing.T) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "meta.git")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		err := CloneWithLimits(testCtx(t, 10*time.Second), p.client, dir, Limits{PackBytes: 100})
		check(t, parent, dir, err)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("error %v, want ErrTooLarge", err)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "meta.git")
		err := Clone(testCtx(t, 10*time.Second), p.newClient(t, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), dir)
		check(t, parent, dir, err)
	})
	t.Run("not empty", func(t *testing.T) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "meta.git")
		if err := os.MkdirAll(filepath.Join(dir, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		err := Clone(testCtx(t, 10*time.Second), p.client, dir)
		if !errors.Is(err, ErrNotEmpty) {
			t.Errorf("clone into a non-empty dir: %v, want ErrNotEmpty", err)
		}
	})
	t.Run("empty peer", func(t *testing.T) {
		q := newPeer(t, "")
		parent := t.TempDir()
		dir := filepath.Join(parent, "meta.git")
		err := Clone(testCtx(t, 10*time.Second), q.client, dir)
		check(t, parent, dir, err)
		if !errors.Is(err, ErrNoHead) {
			t.Errorf("error %v, want ErrNoHead", err)
		}
	})
}

func isEmpty(t *testing.T, dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) == 0
}
