package meta_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
)

// The convergence property on real repositories (meta/merge's
// TestConverge does it on a model): 3 to 5 peers make random changes and
// send their heads to each other through a simulated message queue with
// random delays and delivery order; a peer integrates each head it
// receives and announces its head after each change and each new merge.
// When every message is delivered, all heads and trees must be equal, and
// every file version ever written must still be in the tree (at its path
// or a conflict name) unless a peer that had it deleted or overwrote it.

type message struct {
	at, seq  int
	from, to int
	head     plumbing.Hash
}

type convSim struct {
	t       *testing.T
	r       *rand.Rand
	clock   *clock
	peers   []*peer
	queue   []message
	seq     int
	step    int
	seed    uint64
	written map[bt.InfoHash]bool
	killed  map[bt.InfoHash]bool
	ops     int
}

func (s *convSim) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("seed %d, step %d: "+format, append([]any{s.seed, s.step}, args...)...)
}

func (s *convSim) broadcast(from int) {
	if err := s.peers[from].Sync(context.Background()); err != nil {
		s.fatalf("sync: %v", err)
	}
	for to := range s.peers {
		if to != from {
			s.seq++
			s.queue = append(s.queue, message{at: s.step + 1 + s.r.IntN(8), seq: s.seq, from: from, to: to, head: s.peers[from].Head()})
		}
	}
}

func (s *convSim) deliver(m message) {
	p, from := s.peers[m.to], s.peers[m.from]
	// Mostly a fast reader of the source's packs; go-git's storage (slow
	// to load its indexes) now and then.
	var src storer.EncodedObjectStorer
	if s.r.IntN(8) == 0 {
		src = from.src(s.t)
	} else {
		var done func()
		var err error
		if src, done, err = meta.PackStorer(from.dir); err != nil {
			s.fatalf("open %s: %v", from.dir, err)
		}
		defer done()
	}
	res, err := p.Integrate(context.Background(), m.head, src)
	if err != nil {
		s.fatalf("%s integrates %s from %s: %v", p.node, m.head, from.node, err)
	}
	if res.Announce {
		s.broadcast(m.to)
	}
}

var convNames = []string{"a", "b", "c.txt", "d.mkv", "e"}

// op makes one random change on peer n.
func (s *convSim) op(n int) {
	p := s.peers[n]
	snap := p.Snapshot()
	var dirs, files []string
	dirs = append(dirs, "")
	snap.Walk(func(path string, e *meta.Entry) bool {
		if e.Kind == meta.KindDir {
			dirs = append(dirs, path)
		} else {
			files = append(files, path)
		}
		return true
	})
	r := s.r
	join := func(d, name string) string {
		if d == "" {
			return name
		}
		return d + "/" + name
	}
	newPath := func() string { return join(dirs[r.IntN(len(dirs))], convNames[r.IntN(len(convNames))]) }
	var kills []bt.InfoHash
	kill := func(tx *meta.Tx, path string) {
		if e, ok := tx.Get(path); ok && e.Kind == meta.KindFile {
			kills = append(kills, e.Hash)
		}
	}
	var killAll func(tx *meta.Tx, path string)
	killAll = func(tx *meta.Tx, path string) {
		kill(tx, path)
		if ents, ok := tx.ReadDir(path); ok {
			for _, de := range ents {
				killAll(tx, join(path, de.Name))
			}
		}
	}
	var wrote bt.InfoHash
	write := func(tx *meta.Tx, path string) error {
		kill(tx, path)
		e := metatest.File(int64(1+r.IntN(1000)), r.Uint64(), 0o644, int64(s.step))
		if err := tx.Put(path, e); err != nil {
			return err
		}
		wrote = e.Info.Hash()
		return nil
	}
	var fn func(tx *meta.Tx) error
	var what string
	switch k := r.IntN(20); {
	case k < 6:
		what, fn = "create", func(tx *meta.Tx) error { return write(tx, newPath()) }
	case k < 10 && len(files) > 0:
		what, fn = "modify", func(tx *meta.Tx) error { return write(tx, files[r.IntN(len(files))]) }
	case k < 12 && len(files) > 0:
		what, fn = "delete", func(tx *meta.Tx) error {
			f := files[r.IntN(len(files))]
			kill(tx, f)
			return tx.Remove(f)
		}
	case k < 15 && len(files) > 0:
		what, fn = "rename", func(tx *meta.Tx) error {
			from, to := files[r.IntN(len(files))], newPath()
			if from != to {
				kill(tx, to)
			}
			return tx.Rename(from, to)
		}
	case k < 18:
		what, fn = "mkdir", func(tx *meta.Tx) error { return tx.Put(newPath(), metatest.Dir(0o755, int64(s.step))) }
	case k < 19 && len(dirs) > 1:
		what, fn = "rm -r", func(tx *meta.Tx) error {
			d := dirs[1+r.IntN(len(dirs)-1)]
			killAll(tx, d)
			return removeAll(tx, d)
		}
	case len(dirs) > 1:
		what, fn = "rename dir", func(tx *meta.Tx) error { return tx.Rename(dirs[1+r.IntN(len(dirs)-1)], newPath()) }
	default:
		return
	}
	before := p.Head()
	err := p.Update(context.Background(), what, fn)
	if err != nil || p.Head() == before {
		return // refused (a directory in the way, say): nothing changed
	}
	s.ops++
	for _, h := range kills {
		s.killed[h] = true
	}
	if !wrote.IsZero() {
		s.written[wrote] = true
	}
	s.broadcast(n)
}

func TestIntegrateConverge(t *testing.T) {
	seeds := 8
	if testing.Short() {
		seeds = 3
	}
	if n, err := strconv.Atoi(os.Getenv("DELUGEFS_CONVERGE_SEEDS")); err == nil {
		seeds = n // a longer run by hand
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { convergeRun(t, seed) })
	}
}

func convergeRun(t *testing.T, seed uint64) {
	s := &convSim{
		t: t, r: rand.New(rand.NewPCG(seed, 11)), seed: seed,
		clock:   &clock{time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)},
		written: map[bt.InfoHash]bool{}, killed: map[bt.InfoHash]bool{},
	}
	n := 3 + int(seed%3)
	for i := range n {
		s.peers = append(s.peers, newPeer(t, fmt.Sprintf("n%d", i), s.clock))
	}
	// A common root, as a clone would give.
	s.peers[0].Do(t, "root", func(tx *meta.Tx) error { return tx.Put("top", metatest.Dir(0o755, 0)) })
	for _, p := range s.peers[1:] {
		p.pull(t, s.peers[0])
	}
	const opSteps = 30
	for s.step = 0; ; s.step++ {
		s.clock.t = s.clock.t.Add(time.Second)
		if s.step < opSteps {
			for i := range s.peers {
				if s.r.IntN(3) == 0 {
					s.op(i)
				}
			}
		}
		var due []message
		s.queue = slices.DeleteFunc(s.queue, func(m message) bool {
			if m.at <= s.step {
				due = append(due, m)
				return true
			}
			return false
		})
		s.r.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
		for _, m := range due {
			s.deliver(m)
		}
		if s.step >= opSteps && len(s.queue) == 0 {
			break
		}
		if s.step > 2000 {
			s.fatalf("no convergence: %d messages in flight", len(s.queue))
		}
	}
	head := s.peers[0].Head()
	var merges uint64
	for _, p := range s.peers {
		if p.Head() != head {
			s.fatalf("%s ends at %s, %s at %s", p.node, p.Head(), s.peers[0].node, head)
		}
		sameSnapshots(t, s.peers[0], p)
		merges += p.Stats().Merges
	}
	have := map[bt.InfoHash]int{}
	final := s.peers[0].Snapshot()
	dups := 0
	final.Walk(func(path string, e *meta.Entry) bool {
		if e.Kind == meta.KindFile {
			if have[e.Hash]++; have[e.Hash] == 2 {
				dups++
			}
		}
		return true
	})
	for h := range s.written {
		if !s.killed[h] && have[h] == 0 {
			t.Errorf("seed %d: file version %s was lost", seed, h)
		}
	}
	// No merge storm: merges (counted once per peer that made each)
	// stay within a small multiple of the changes.
	if merges > uint64(2*n*s.ops+10) {
		t.Errorf("seed %d: %d merges for %d changes on %d peers", seed, merges, s.ops, n)
	}
	conflicts := 0
	final.Walk(func(path string, e *meta.Entry) bool {
		if strings.Contains(path, ".conflict-") {
			conflicts++
		}
		return true
	})
	t.Logf("seed %d: %d peers, %d changes, %d merges made, %d steps, %d entries, %d conflict copies, %d versions at several paths",
		seed, n, s.ops, merges, s.step, final.Len(), conflicts, dups)
	for _, p := range s.peers {
		if err := p.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		gitFsck(t, p.dir)
	}
	p0 := s.peers[0]
	wide := strings.TrimSpace(string(git(t, p0.dir, "rev-list", "--count", "--min-parents=3", "HEAD")))
	t.Logf("seed %d: merges of 3 or more commits in the final history: %s", seed, wide)
}
