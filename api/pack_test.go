package api

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/storage/memory"
)

// history is a random commit DAG in a memory storage.
type history struct {
	t       testing.TB
	sto     *memory.Storage
	commits []plumbing.Hash
	states  map[plumbing.Hash]map[string]string // files of each commit
}

func (h *history) put(o interface {
	Encode(plumbing.EncodedObject) error
}) plumbing.Hash {
	obj := h.sto.NewEncodedObject()
	if err := o.Encode(obj); err != nil {
		h.t.Fatal(err)
	}
	id, err := h.sto.SetEncodedObject(obj)
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

func (h *history) blob(content string) plumbing.Hash {
	obj := h.sto.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, _ := obj.Writer()
	w.Write([]byte(content))
	w.Close()
	id, err := h.sto.SetEncodedObject(obj)
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// tree writes the tree of files (paths relative to dir's contents).
func (h *history) tree(files map[string]string) plumbing.Hash {
	subs := map[string]map[string]string{}
	var ents []object.TreeEntry
	for p, c := range files {
		if dir, rest, ok := strings.Cut(p, "/"); ok {
			if subs[dir] == nil {
				subs[dir] = map[string]string{}
			}
			subs[dir][rest] = c
			continue
		}
		ents = append(ents, object.TreeEntry{Name: p, Mode: filemode.Regular, Hash: h.blob(c)})
	}
	for dir, sub := range subs {
		ents = append(ents, object.TreeEntry{Name: dir, Mode: filemode.Dir, Hash: h.tree(sub)})
	}
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(ents, func(i, j int) bool { return key(ents[i]) < key(ents[j]) })
	return h.put(&object.Tree{Entries: ents})
}

func (h *history) commit(files map[string]string, when time.Time, parents ...plumbing.Hash) plumbing.Hash {
	sig := object.Signature{Name: "t", Email: "t@t", When: when}
	id := h.put(&object.Commit{Author: sig, Committer: sig, Message: "m", TreeHash: h.tree(files), ParentHashes: parents})
	h.commits = append(h.commits, id)
	h.states[id] = files
	return id
}

var paths = []string{"a", "b", "d/x", "d/y", "d/e/z", "d/e/w", "f/g/h", "k"}

func randomHistory(t *testing.T, rng *rand.Rand, n int) *history {
	h := &history{t: t, sto: memory.NewStorage(), states: map[plumbing.Hash]map[string]string{}}
	now := time.Unix(1_700_000_000, 0)
	tips := []plumbing.Hash{h.commit(map[string]string{"a": "0"}, now)}
	for i := range n {
		now = now.Add(time.Duration(rng.IntN(100)-10) * time.Second) // some clock skew
		ti := rng.IntN(len(tips))
		base := h.states[tips[ti]]
		files := make(map[string]string, len(base))
		for k, v := range base {
			files[k] = v
		}
		parents := []plumbing.Hash{tips[ti]}
		if len(tips) > 1 && rng.IntN(4) == 0 { // merge another tip
			tj := (ti + 1 + rng.IntN(len(tips)-1)) % len(tips)
			for k, v := range h.states[tips[tj]] {
				if _, ok := files[k]; !ok || rng.IntN(2) == 0 {
					files[k] = v
				}
			}
			parents = append(parents, tips[tj])
			tips = append(tips[:tj], tips[tj+1:]...)
			if tj < ti {
				ti--
			}
		}
		for range 1 + rng.IntN(3) {
			p := paths[rng.IntN(len(paths))]
			switch rng.IntN(4) {
			case 0:
				delete(files, p)
			case 1:
				files[p] = fmt.Sprint(rng.IntN(3)) // often a content seen before
			default:
				files[p] = fmt.Sprint("v", i)
			}
		}
		if len(files) == 0 {
			files["a"] = "again"
		}
		c := h.commit(files, now, parents...)
		if rng.IntN(5) == 0 { // branch
			tips = append(tips, c)
		} else {
			tips[ti] = c
		}
	}
	return h
}

// TestObjectsToSend compares the pack walk with go-git's revlist (every
// object reachable from the wants and not from the haves) on random
// histories: nothing needed may be missing, nothing foreign may be sent,
// nothing twice.
func TestObjectsToSend(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 60 {
		h := randomHistory(t, rng, 5+rng.IntN(60))
		for range 10 {
			pick := func(n int) []plumbing.Hash {
				var out []plumbing.Hash
				for range n {
					out = append(out, h.commits[rng.IntN(len(h.commits))])
				}
				return out
			}
			wants, haves := pick(1+rng.IntN(2)), pick(rng.IntN(4))
			got, err := objectsToSend(context.Background(), h.sto, wants, haves)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			need, err := revlist.Objects(h.sto, wants, haves)
			if err != nil {
				t.Fatal(err)
			}
			all, err := revlist.Objects(h.sto, wants, nil)
			if err != nil {
				t.Fatal(err)
			}
			gotSet := map[plumbing.Hash]bool{}
			for _, o := range got {
				if gotSet[o] {
					t.Fatalf("round %d: %s sent twice", round, o)
				}
				gotSet[o] = true
			}
			allSet := map[plumbing.Hash]bool{}
			for _, o := range all {
				allSet[o] = true
			}
			for _, o := range need {
				if !gotSet[o] {
					t.Fatalf("round %d: wants %v haves %v: %s missing (%d sent, %d needed)", round, wants, haves, o, len(got), len(need))
				}
			}
			for _, o := range got {
				if !allSet[o] {
					t.Fatalf("round %d: %s sent but not reachable from the wants", round, o)
				}
			}
		}
	}
}

// TestObjectsToSendIncremental checks that a fetch of one commit on a long
// history reads and sends only the change.
func TestObjectsToSendIncremental(t *testing.T) {
	h := &history{t: t, sto: memory.NewStorage(), states: map[plumbing.Hash]map[string]string{}}
	files := map[string]string{}
	now := time.Unix(1_700_000_000, 0)
	var prev []plumbing.Hash
	for i := range 300 {
		files[fmt.Sprintf("d%d/f%d", i%7, i)] = fmt.Sprint(i)
		c := h.commit(files, now.Add(time.Duration(i)*time.Second), prev...)
		prev = []plumbing.Hash{c}
	}
	head := prev[0]
	parent := h.commits[len(h.commits)-2]
	got, err := objectsToSend(context.Background(), h.sto, []plumbing.Hash{head}, []plumbing.Hash{parent})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 { // commit, root tree, d5 tree, blob
		t.Errorf("sent %d objects, want 4", len(got))
	}
	if got, _ := objectsToSend(context.Background(), h.sto, []plumbing.Hash{head}, []plumbing.Hash{head}); len(got) != 0 {
		t.Errorf("want = have: sent %d objects", len(got))
	}
	if _, err := objectsToSend(context.Background(), h.sto, []plumbing.Hash{plumbing.NewHash(strings.Repeat("ab", 20))}, nil); err == nil {
		t.Error("unknown want: no error")
	}
}

func BenchmarkObjectsToSendClone(b *testing.B) {
	h := &history{t: b, sto: memory.NewStorage(), states: map[plumbing.Hash]map[string]string{}}
	files := map[string]string{}
	var prev []plumbing.Hash
	for i := range 2000 {
		files[fmt.Sprintf("d%d/e%d/f%d", i%13, i%5, i)] = fmt.Sprint(i)
		if i%10 == 9 {
			c := h.commit(files, time.Unix(int64(i), 0), prev...)
			prev = []plumbing.Hash{c}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := objectsToSend(context.Background(), h.sto, prev, nil); err != nil {
			b.Fatal(err)
		}
	}
}
