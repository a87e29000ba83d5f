package nsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// fakeRepo is a Repo over a bare go-git repository holding a flat tree of
// blobs. Integrate copies the peer's objects, fast-forwards when it can
// and otherwise makes a deterministic merge commit (union of the two flat
// trees, the greater blob winning a clash, sorted parents, time from the
// parents), so two fakes that merge the same heads make the same commit.
type fakeRepo struct {
	dir string

	mu    sync.Mutex // guards sto, head, calls
	sto   *filesystem.Storage
	head  plumbing.Hash
	calls []plumbing.Hash // heads passed to Integrate

	watch chan struct{}
	fail  atomic.Bool // Integrate fails
	clock atomic.Int64
}

func newFakeRepo(t *testing.T) *fakeRepo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "meta.git")
	_, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		Bare:        true,
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRepo{dir: dir, sto: filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRUDefault()), watch: make(chan struct{}, 1)}
	r.clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	t.Cleanup(func() { r.sto.Close() })
	return r
}

func (r *fakeRepo) Head() plumbing.Hash {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.head
}

func (r *fakeRepo) Watch() <-chan struct{} { return r.watch }

func (r *fakeRepo) heads() []plumbing.Hash {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]plumbing.Hash(nil), r.calls...)
}

// setHead moves the branch and signals Watch; r.mu held.
func (r *fakeRepo) setHead(h plumbing.Hash) error {
	// Atomically, as meta does: go-git truncates and rewrites the file,
	// and the API server may read it meanwhile.
	ref := filepath.Join(r.dir, "refs", "heads", "main")
	if err := os.MkdirAll(filepath.Dir(ref), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(ref+".tmp", []byte(h.String()+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(ref+".tmp", ref); err != nil {
		return err
	}
	r.head = h
	select {
	case r.watch <- struct{}{}:
	default:
	}
	return nil
}

// write commits name=content on top of the head.
func (r *fakeRepo) write(t *testing.T, name, content string) plumbing.Hash {
	t.Helper()
	h := r.writeUnflushed(t, name, content)
	r.flush(t)
	return h
}

// flush moves the branch to the head and signals Watch.
func (r *fakeRepo) flush(t *testing.T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.setHead(r.head); err != nil {
		t.Fatal(err)
	}
}

// writeUnflushed commits name=content on top of the head, which moves,
// but leaves the branch (what git readers see) where it was.
func (r *fakeRepo) writeUnflushed(t *testing.T, name, content string) plumbing.Hash {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	files := map[string]plumbing.Hash{}
	if !r.head.IsZero() {
		var err error
		if files, err = r.files(r.head); err != nil {
			t.Fatal(err)
		}
	}
	b := &plumbing.MemoryObject{}
	b.SetType(plumbing.BlobObject)
	b.Write([]byte(content))
	bh, err := r.sto.SetEncodedObject(b)
	if err != nil {
		t.Fatal(err)
	}
	files[name] = bh
	var parents []plumbing.Hash
	if !r.head.IsZero() {
		parents = []plumbing.Hash{r.head}
	}
	h, err := r.commit(files, parents, time.Unix(r.clock.Add(1), 0), "write "+name)
	if err != nil {
		t.Fatal(err)
	}
	r.head = h
	return h
}

func (r *fakeRepo) files(commit plumbing.Hash) (map[string]plumbing.Hash, error) {
	c, err := object.GetCommit(r.sto, commit)
	if err != nil {
		return nil, err
	}
	tr, err := object.GetTree(r.sto, c.TreeHash)
	if err != nil {
		return nil, err
	}
	m := map[string]plumbing.Hash{}
	for _, e := range tr.Entries {
		m[e.Name] = e.Hash
	}
	return m, nil
}

func (r *fakeRepo) commit(files map[string]plumbing.Hash, parents []plumbing.Hash, when time.Time, msg string) (plumbing.Hash, error) {
	tr := &object.Tree{}
	for n, h := range files {
		tr.Entries = append(tr.Entries, object.TreeEntry{Name: n, Mode: filemode.Regular, Hash: h})
	}
	sort.Slice(tr.Entries, func(i, j int) bool { return tr.Entries[i].Name < tr.Entries[j].Name })
	to := r.sto.NewEncodedObject()
	if err := tr.Encode(to); err != nil {
		return plumbing.ZeroHash, err
	}
	th, err := r.sto.SetEncodedObject(to)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	sig := object.Signature{Name: "fake", Email: "fake@localhost", When: when.UTC()}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: th, ParentHashes: parents}
	co := r.sto.NewEncodedObject()
	if err := c.Encode(co); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.sto.SetEncodedObject(co)
}

// Integrate copies head's history from src and joins it.
func (r *fakeRepo) Integrate(ctx context.Context, head plumbing.Hash, src storer.EncodedObjectStorer) (IntegrateResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, head)
	if r.fail.Load() {
		return IntegrateResult{}, errors.New("fake: integrate fails")
	}
	if err := r.copyFrom(src, head); err != nil {
		return IntegrateResult{}, err
	}
	res := IntegrateResult{Head: r.head}
	if r.head == head || r.isAncestor(head, r.head) {
		return res, nil
	}
	if r.head.IsZero() || r.isAncestor(r.head, head) {
		if err := r.setHead(head); err != nil {
			return res, err
		}
		return IntegrateResult{Head: head, Changed: true}, nil
	}
	ours, err := r.files(r.head)
	if err != nil {
		return res, err
	}
	theirs, err := r.files(head)
	if err != nil {
		return res, err
	}
	for n, h := range theirs {
		if o, ok := ours[n]; !ok || h.String() > o.String() {
			ours[n] = h
		}
	}
	parents := []plumbing.Hash{r.head, head}
	sort.Slice(parents, func(i, j int) bool { return parents[i].String() < parents[j].String() })
	var when time.Time
	for _, p := range parents {
		c, err := object.GetCommit(r.sto, p)
		if err != nil {
			return res, err
		}
		if c.Committer.When.After(when) {
			when = c.Committer.When
		}
	}
	m, err := r.commit(ours, parents, when, fmt.Sprintf("merge %s %s", parents[0], parents[1]))
	if err != nil {
		return res, err
	}
	if err := r.setHead(m); err != nil {
		return res, err
	}
	return IntegrateResult{Head: m, Changed: true, Announce: true}, nil
}

// copyFrom copies every object reachable from head that r lacks.
func (r *fakeRepo) copyFrom(src storer.EncodedObjectStorer, head plumbing.Hash) error {
	todo := []plumbing.Hash{head}
	for len(todo) > 0 {
		h := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if r.sto.HasEncodedObject(h) == nil {
			continue
		}
		obj, err := src.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return fmt.Errorf("fake: copy %s: %w", h, err)
		}
		switch obj.Type() {
		case plumbing.CommitObject:
			c, err := object.DecodeCommit(src, obj)
			if err != nil {
				return err
			}
			todo = append(todo, c.TreeHash)
			todo = append(todo, c.ParentHashes...)
		case plumbing.TreeObject:
			t, err := object.DecodeTree(src, obj)
			if err != nil {
				return err
			}
			for _, e := range t.Entries {
				todo = append(todo, e.Hash)
			}
		}
		cp := r.sto.NewEncodedObject()
		cp.SetType(obj.Type())
		rd, err := obj.Reader()
		if err != nil {
			return err
		}
		w, _ := cp.Writer()
		_, err = io.Copy(w, rd)
		rd.Close()
		w.Close()
		if err != nil {
			return err
		}
		if _, err := r.sto.SetEncodedObject(cp); err != nil {
			return err
		}
	}
	return nil
}

// isAncestor says whether a is an ancestor of (or equal to) b; r.mu held.
func (r *fakeRepo) isAncestor(a, b plumbing.Hash) bool {
	if a.IsZero() || b.IsZero() {
		return false
	}
	seen := map[plumbing.Hash]bool{}
	todo := []plumbing.Hash{b}
	for len(todo) > 0 {
		h := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if h == a {
			return true
		}
		if seen[h] {
			continue
		}
		seen[h] = true
		c, err := object.GetCommit(r.sto, h)
		if err != nil {
			continue
		}
		todo = append(todo, c.ParentHashes...)
	}
	return false
}
