package nsync

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/api/apitest"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
)

// node is a real meta.Repo with its api.Server and Syncer on loopback.
type node struct {
	t    *testing.T
	id   string
	key  string
	dir  string
	tune func(*Config)

	repo     *metatest.Served
	sync     *Syncer
	base     string
	addr     string
	stopHTTP func()
	stopSync func()

	deaf    atomic.Bool  // drop incoming notices
	noticed atomic.Int32 // notices delivered to the Syncer
}

func newNode(t *testing.T, id, key string, tune func(*Config)) *node {
	t.Helper()
	n := &node{t: t, id: id, key: key, dir: filepath.Join(t.TempDir(), "meta.git"), tune: tune}
	n.open("127.0.0.1:0")
	return n
}

// open opens the repository, serves the API on addr and runs a new Syncer.
func (n *node) open(addr string) {
	t := n.t
	t.Helper()
	n.repo = metatest.Serve(t, n.dir, meta.Options{NodeID: n.id})
	srv := api.New(api.Options{})
	h := api.HandlerFuncs{NotifyFunc: func(ctx context.Context, no api.Notice) error {
		if n.deaf.Load() {
			return nil
		}
		n.noticed.Add(1)
		n.sync.Notice(no)
		return nil
	}}
	if err := srv.Register(api.Volume{ID: testVolume, Key: n.key, GitDir: n.dir, Handler: h}); err != nil {
		t.Fatal(err)
	}
	var handler http.Handler = srv.Handler()
	n.base, n.stopHTTP = startHTTP(t, handler, addr)
	n.addr = strings.TrimPrefix(n.base, "http://")
	cfg := Config{
		Node: n.id, Addr: n.addr, Volume: testVolume, Key: n.key, GitDir: n.dir, Repo: n.repo.Repo,
		Interval: time.Hour, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		FetchTimeout: 10 * time.Second, NotifyTimeout: time.Second,
		Logger: quiet,
	}
	if n.tune != nil {
		n.tune(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.sync = s
	n.startSync()
}

// startSync runs the Syncer until the test ends or stopSync is called.
func (n *node) startSync() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.sync.Serve(ctx) }() // ends when cancel is called
	var once sync.Once
	n.stopSync = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				n.t.Errorf("%s: Serve: %v", n.id, err)
			}
		})
	}
	n.t.Cleanup(n.stopSync)
}

// kill stops the node: Syncer, API and repository.
func (n *node) kill() {
	n.stopSync()
	n.stopHTTP()
	n.repo.Stop()
}

func (n *node) put(t *testing.T, path string, seed uint64) {
	t.Helper()
	n.repo.Do(t, "put "+path, func(tx *meta.Tx) error {
		if dir := filepath.Dir(path); dir != "." {
			if _, ok := tx.Get(dir); !ok {
				if err := tx.Put(dir, metatest.Dir(0o755, 1)); err != nil {
					return err
				}
			}
		}
		return tx.Put(path, metatest.File(100+int64(seed%1000), seed, 0o644, int64(seed)))
	})
}

func linkNodes(t *testing.T, nodes ...*node) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				if err := a.sync.AddPeer(b.id, b.base); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// converged says whether all nodes have one head and the same snapshot.
func converged(nodes ...*node) func() bool {
	return func() bool {
		h := nodes[0].repo.Head()
		if h.IsZero() {
			return false
		}
		for _, n := range nodes[1:] {
			if n.repo.Head() != h {
				return false
			}
		}
		d := dump(nodes[0].repo.Snapshot())
		for _, n := range nodes[1:] {
			if dump(n.repo.Snapshot()) != d {
				return false
			}
		}
		return true
	}
}

func TestClusterWritesConverge(t *testing.T) {
	key := apitest.Key()
	a, b, c := newNode(t, "a", key, nil), newNode(t, "b", key, nil), newNode(t, "c", key, nil)
	nodes := []*node{a, b, c}
	linkNodes(t, nodes...)

	// Writes on every node at once, while they sync.
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 15 {
				n.put(t, fmt.Sprintf("%s/f%02d", n.id, j), uint64(100*i+j+1))
				if j%5 == 4 {
					n.put(t, "shared", uint64(1000*i+j)) // conflicts
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 30*time.Second, "a, b and c converge", converged(nodes...))
	snap := a.repo.Snapshot()
	for _, n := range nodes {
		for j := range 15 {
			p := fmt.Sprintf("%s/f%02d", n.id, j)
			if _, ok := snap.Get(p); !ok {
				t.Errorf("%s lost", p)
			}
		}
	}
	for _, n := range nodes {
		st := n.sync.Stats()
		t.Logf("%s: %d fetches (%d skipped), %d integrations, %d objects, %d B, %d notices sent, %d received, %d failures",
			n.id, st.Fetches, st.Skipped, st.Integrations, st.Objects, st.Bytes, st.Sent, st.Received, st.Failures)
		if st.Failures != 0 {
			for _, p := range st.Peers {
				t.Logf("  %s: %s", p.Node, p.LastError)
			}
		}
	}
}

func TestClusterConcurrentEditsMerge(t *testing.T) {
	key := apitest.Key()
	a, b, c := newNode(t, "a", key, nil), newNode(t, "b", key, nil), newNode(t, "c", key, nil)
	nodes := []*node{a, b, c}
	linkNodes(t, nodes...)
	a.put(t, "base/f1", 1)
	a.put(t, "base/f2", 2)
	eventually(t, 10*time.Second, "base converges", converged(nodes...))

	// Edits made while no syncer runs are concurrent.
	for _, n := range nodes {
		n.stopSync()
	}
	c.repo.Do(t, "mv", func(tx *meta.Tx) error { return tx.Rename("base/f1", "base/g1") })
	b.put(t, "base/f1", 11)
	a.repo.Do(t, "rm", func(tx *meta.Tx) error { return tx.Remove("base/f2") })
	b.put(t, "base/f2", 12)
	for i, n := range nodes {
		n.put(t, "new/x", uint64(20+i))
	}
	f1, _ := a.repo.Snapshot().Get("base/f1")
	for _, n := range nodes {
		n.startSync() // announces and fetches at start
	}
	waitConverged(t, 20*time.Second, "edits converge", nodes...)

	snap := a.repo.Snapshot()
	if e, ok := snap.Get("base/g1"); !ok || e.Hash != f1.Hash {
		t.Errorf("renamed file: %v %v", ok, e)
	}
	if e, ok := snap.Get("base/f1"); !ok || e.Hash != metatest.Info(111, 11).Hash() {
		t.Errorf("modified file (renamed elsewhere): %v %+v", ok, e)
	}
	if e, ok := snap.Get("base/f2"); !ok || e.Hash != metatest.Info(112, 12).Hash() {
		t.Errorf("modified file (deleted elsewhere): %v %+v", ok, e)
	}
	ents, _ := snap.ReadDir("new")
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	if len(names) != 3 {
		t.Errorf("new/ holds %v, want x and two conflict copies", names)
	}
	t.Logf("new/: %v", names)
}

func TestClusterDroppedNoticeHealed(t *testing.T) {
	key := apitest.Key()
	a := newNode(t, "a", key, nil)
	b := newNode(t, "b", key, nil)
	c := newNode(t, "c", key, func(c *Config) { c.Interval = 100 * time.Millisecond })
	linkNodes(t, a, b, c)
	c.deaf.Store(true)
	a.put(t, "x", 1)
	eventually(t, 10*time.Second, "c catches up without notices", converged(a, b, c))
	if n := c.noticed.Load(); n != 0 {
		t.Errorf("c got %d notices", n)
	}
}

func TestClusterDeadPeerAndRestart(t *testing.T) {
	key := apitest.Key()
	a, b, c := newNode(t, "a", key, nil), newNode(t, "b", key, nil), newNode(t, "c", key, nil)
	linkNodes(t, a, b, c)
	a.put(t, "x", 1)
	eventually(t, 10*time.Second, "x converges", converged(a, b, c))

	c.kill()
	start := time.Now()
	a.put(t, "y", 2)
	eventually(t, 5*time.Second, "b gets y", converged(a, b))
	if d := time.Since(start); d > time.Second {
		t.Errorf("b got a's commit after %v with c dead", d)
	}
	b.put(t, "z", 3)
	eventually(t, 5*time.Second, "a gets z", converged(a, b))

	// c comes back (same address), a new process on its repository.
	c.open(c.addr)
	linkNodes(t, c, a)
	linkNodes(t, c, b)
	eventually(t, 10*time.Second, "restarted c catches up", converged(a, b, c))
	c.put(t, "w", 4)
	eventually(t, 10*time.Second, "c's write reaches a and b", converged(a, b, c))
}

func TestClusterCloneJoins(t *testing.T) {
	key := apitest.Key()
	a := newNode(t, "a", key, nil)
	for i := range 20 {
		a.put(t, fmt.Sprintf("d/f%02d", i), uint64(i+1))
	}
	if err := a.repo.Sync(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	d := &node{t: t, id: "d", key: key, dir: filepath.Join(t.TempDir(), "root", "meta.git")}
	c, err := api.NewClient(a.base, testVolume, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := Clone(testCtx(t, 10*time.Second), c, d.dir); err != nil {
		t.Fatal(err)
	}
	d.open("127.0.0.1:0")
	if dump(d.repo.Snapshot()) != dump(a.repo.Snapshot()) {
		t.Fatal("clone differs")
	}
	linkNodes(t, a, d)
	d.put(t, "from-d", 100)
	a.put(t, "from-a", 101)
	eventually(t, 10*time.Second, "a and d converge", converged(a, d))
}

// TestClusterLatency measures an Update on a until b's snapshot holds it.
func TestClusterLatency(t *testing.T) {
	key := apitest.Key()
	a, b := newNode(t, "a", key, nil), newNode(t, "b", key, nil)
	linkNodes(t, a, b)
	a.put(t, "warm", 1)
	eventually(t, 10*time.Second, "warm-up", converged(a, b))
	var ds []time.Duration
	for i := range 30 {
		start := time.Now()
		a.put(t, fmt.Sprintf("f%02d", i), uint64(i+10))
		h := a.repo.Head()
		eventually(t, 5*time.Second, "b gets a's commit", func() bool { return b.repo.Snapshot().Head() == h })
		ds = append(ds, time.Since(start))
	}
	med, p90 := quantiles(ds)
	t.Logf("Update on a -> b's snapshot (meta.Repo, loopback): median %v, p90 %v over %d", med, p90, len(ds))
	if med > time.Second {
		t.Errorf("median %v", med)
	}
}

// waitConverged waits until the nodes converge; on failure it tells what
// each node has.
func waitConverged(t *testing.T, d time.Duration, what string, nodes ...*node) {
	t.Helper()
	ok := converged(nodes...)
	deadline := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		if time.Now().After(deadline) {
			for _, n := range nodes {
				st := n.sync.Stats()
				t.Logf("%s: head %s, %d fetches (%d skipped), %d integrations, %d failures\n%s",
					n.id, n.repo.Head(), st.Fetches, st.Skipped, st.Integrations, st.Failures, dump(n.repo.Snapshot()))
				for _, p := range st.Peers {
					t.Logf("  peer %s: head %s, last error %q", p.Node, p.Head, p.LastError)
				}
			}
			t.Fatalf("%s: not within %v", what, d)
		}
		<-tick.C
	}
}
