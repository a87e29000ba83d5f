package nsync

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/api/apitest"
)

// fakeNode is a Syncer over a fakeRepo, served by a real api.Server.
type fakeNode struct {
	id     string
	repo   *fakeRepo
	sync   *Syncer
	base   string
	addr   string
	gets   atomic.Int32 // info/refs GETs served
	posts  atomic.Int32
	gate   atomic.Pointer[chan struct{}] // when set, GETs wait for it to close
	deaf   atomic.Bool                   // drop incoming notices
	mu     sync.Mutex                    // guards heard and errs
	heard  []api.Notice                  // notices received
	errs   map[string]error              // last OnFailure error per peer
	failed atomic.Int32                  // OnFailure calls
	stop   func()
}

func newFakeNode(t *testing.T, id, key string, tune func(*Config)) *fakeNode {
	t.Helper()
	n := &fakeNode{id: id, repo: newFakeRepo(t), errs: map[string]error{}}
	srv := api.New(api.Options{})
	h := api.HandlerFuncs{NotifyFunc: func(ctx context.Context, no api.Notice) error {
		if n.deaf.Load() {
			return nil
		}
		n.mu.Lock()
		n.heard = append(n.heard, no)
		n.mu.Unlock()
		n.sync.Notice(no)
		return nil
	}}
	if err := srv.Register(api.Volume{ID: testVolume, Key: key, GitDir: n.repo.dir, Handler: h}); err != nil {
		t.Fatal(err)
	}
	n.base = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/info/refs"):
			n.gets.Add(1)
			if g := n.gate.Load(); g != nil {
				select {
				case <-*g:
				case <-r.Context().Done():
					return
				}
			}
		case strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			n.posts.Add(1)
		}
		srv.Handler().ServeHTTP(w, r)
	}))
	n.addr = strings.TrimPrefix(n.base, "http://")
	cfg := Config{
		Node: id, Addr: n.addr, Volume: testVolume, Key: key, GitDir: n.repo.dir, Repo: n.repo,
		Interval: time.Hour, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		FetchTimeout: 5 * time.Second, NotifyTimeout: time.Second,
		Logger: quiet,
		OnFailure: func(peer string, err error) {
			n.failed.Add(1)
			n.mu.Lock()
			n.errs[peer] = err
			n.mu.Unlock()
		},
	}
	if tune != nil {
		tune(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.sync = s
	n.start(t)
	return n
}

// start runs the Syncer until the test ends or stop is called.
func (n *fakeNode) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.sync.Serve(ctx) }() // ends when cancel is called
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(n.stop)
}

func (n *fakeNode) notices() []api.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]api.Notice(nil), n.heard...)
}

func link(t *testing.T, nodes ...*fakeNode) {
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

func sameHead(nodes ...*fakeNode) func() bool {
	return func() bool {
		h := nodes[0].repo.Head()
		for _, n := range nodes[1:] {
			if n.repo.Head() != h {
				return false
			}
		}
		return !h.IsZero()
	}
}

func TestSyncerFastForwardIsNotAnnounced(t *testing.T) {
	key := apitest.Key()
	a := newFakeNode(t, "a", key, nil)
	b := newFakeNode(t, "b", key, nil)
	link(t, a, b)

	h := a.repo.write(t, "x", "1")
	eventually(t, 5*time.Second, "b gets a's commit", func() bool { return b.repo.Head() == h })
	// b fast-forwarded to a's head: a hears nothing of it from b.
	a.repo.write(t, "y", "2")
	h2 := a.repo.Head()
	eventually(t, 5*time.Second, "b gets a's second commit", func() bool { return b.repo.Head() == h2 })
	for _, no := range a.notices() {
		if no.Head == h || no.Head == h2 {
			t.Errorf("b announced a's head %s back to a", no.Head)
		}
	}
	// b's own commit is announced, and a fast-forwards.
	h3 := b.repo.write(t, "z", "3")
	eventually(t, 5*time.Second, "a gets b's commit", func() bool { return a.repo.Head() == h3 })
	found := false
	for _, no := range a.notices() {
		found = found || no.Head == h3 && no.Node == "b" && no.Addr == b.addr
	}
	if !found {
		t.Errorf("a heard no notice of b's commit: %v", a.notices())
	}
	st := b.sync.Stats()
	if st.Integrations < 2 || st.Failures != 0 || len(st.Peers) != 1 || st.Peers[0].Node != "a" || st.Peers[0].LastSync.IsZero() {
		t.Errorf("b's stats: %+v", st)
	}
}

func TestSyncerConcurrentWritesConverge(t *testing.T) {
	key := apitest.Key()
	a := newFakeNode(t, "a", key, nil)
	b := newFakeNode(t, "b", key, nil)
	link(t, a, b)
	for i := range 10 {
		a.repo.write(t, "a"+string(rune('0'+i)), "a")
		b.repo.write(t, "b"+string(rune('0'+i)), "b")
	}
	eventually(t, 10*time.Second, "a and b converge", sameHead(a, b))
	files, err := a.repo.files(a.repo.Head())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 20 {
		t.Errorf("merged tree holds %d files, want 20", len(files))
	}
}

func TestSyncerAntiEntropy(t *testing.T) {
	key := apitest.Key()
	a := newFakeNode(t, "a", key, func(c *Config) { c.Interval = 50 * time.Millisecond })
	b := newFakeNode(t, "b", key, nil)
	link(t, a, b)
	a.deaf.Store(true) // every notice to a is lost
	h := b.repo.write(t, "x", "1")
	eventually(t, 5*time.Second, "a catches up by anti-entropy", func() bool { return a.repo.Head() == h })
	if len(a.notices()) != 0 {
		t.Fatal("a heard a notice")
	}
	// In sync, a period costs one GET per peer and no POST.
	eventually(t, 5*time.Second, "a's fetch done", func() bool { return a.sync.Stats().Fetches >= 1 })
	posts, gets, skipped := b.posts.Load(), b.gets.Load(), a.sync.Stats().Skipped
	eventually(t, 5*time.Second, "three more anti-entropy rounds", func() bool { return a.sync.Stats().Skipped >= skipped+3 })
	if p := b.posts.Load(); p != posts {
		t.Errorf("anti-entropy in sync made %d POSTs", p-posts)
	}
	if g := b.gets.Load(); g < gets+3 {
		t.Errorf("3 anti-entropy rounds made %d GETs", g-gets)
	}
}

func TestSyncerDeadPeerDoesNotDelayOthers(t *testing.T) {
	key := apitest.Key()
	a := newFakeNode(t, "a", key, func(c *Config) { c.NotifyTimeout, c.FetchTimeout = 300*time.Millisecond, 500*time.Millisecond })
	b := newFakeNode(t, "b", key, nil)
	link(t, a, b)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() { // ends when silent is closed
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	a.sync.AddPeer("closed", "http://"+closed)
	a.sync.AddPeer("silent", "http://"+silent.Addr().String())

	start := time.Now()
	h := a.repo.write(t, "x", "1")
	eventually(t, 2*time.Second, "b gets a's commit", func() bool { return b.repo.Head() == h })
	if d := time.Since(start); d > time.Second {
		t.Errorf("b got a's commit after %v, with a silent peer", d)
	}
	eventually(t, 5*time.Second, "failures reported", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.errs["closed"] != nil && a.errs["silent"] != nil
	})
	a.mu.Lock()
	for peer, err := range a.errs {
		if !Unreachable(err) {
			t.Errorf("%s: Unreachable(%v) is false", peer, err)
		}
	}
	a.mu.Unlock()
	st := a.sync.Stats()
	for _, p := range st.Peers {
		if p.Node == "closed" && (p.Failures == 0 || p.LastError == "" || p.RetryAt.IsZero()) {
			t.Errorf("closed peer's stats: %+v", p)
		}
	}
}

func TestSyncerCoalescesNotices(t *testing.T) {
	key := apitest.Key()
	a := newFakeNode(t, "a", key, nil)
	b := newFakeNode(t, "b", key, nil)
	gate := make(chan struct{})
	b.gate.Store(&gate)
	link(t, a, b) // a starts a fetch from b, which waits at the gate
	eventually(t, 5*time.Second, "a's first fetch reaches b", func() bool { return b.gets.Load() >= 1 })
	base := b.gets.Load()
	for i := range 20 {
		var h plumbing.Hash
		h[0], h[1] = 1, byte(i)
		a.sync.Notice(api.Notice{Node: "b", Head: h})
	}
	eventually(t, 5*time.Second, "notices received", func() bool { return a.sync.Stats().Received == 20 })
	b.gate.Store(nil)
	close(gate)
	eventually(t, 5*time.Second, "fetches done", func() bool {
		st := a.sync.Stats()
		return st.Fetches+st.Failures >= 2
	})
	// One fetch in flight, the 20 notices made one more, no third.
	h := b.repo.write(t, "sentinel", "s")
	eventually(t, 5*time.Second, "a gets b's commit", func() bool { return a.repo.Head() == h })
	if got := b.gets.Load() - base; got != 2 { // the coalesced fetch and the sentinel's
		t.Errorf("a fetched %d times from b after 20 notices during a fetch, want 2 (one coalesced, one for the sentinel)", got)
	}
}

// A peer may announce a head before git readers of its repository see it
// (meta.Repo.Head runs ahead of the flushed branch): the fetch that finds
// the older head is made again soon, without waiting for anti-entropy.
func TestSyncerAnnouncedHeadNotYetServed(t *testing.T) {
	key := apitest.Key()
	a := newFakeNode(t, "a", key, nil)
	b := newFakeNode(t, "b", key, nil)
	link(t, a, b)
	b.repo.write(t, "x", "1")
	eventually(t, 5*time.Second, "a gets x", sameHead(a, b))
	gets := b.gets.Load()
	h := b.repo.writeUnflushed(t, "y", "2")
	a.sync.Notice(api.Notice{Node: "b", Head: h})
	eventually(t, 5*time.Second, "a looks", func() bool { return b.gets.Load() > gets })
	a.deaf.Store(true) // b's announcement after its flush is lost
	b.repo.flush(t)
	eventually(t, 5*time.Second, "a gets y", func() bool { return a.repo.Head() == h })
}

func TestSyncerBackoff(t *testing.T) {
	key := apitest.Key()
	a := newFakeNode(t, "a", key, func(c *Config) {
		c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 80*time.Millisecond
	})
	b := newFakeNode(t, "b", key, nil)
	link(t, a, b)
	eventually(t, 5*time.Second, "first fetch", func() bool { return a.sync.Stats().Fetches >= 1 })
	b.repo.write(t, "x", "1")
	a.repo.fail.Store(true) // every integration fails from now on
	eventually(t, 5*time.Second, "failures", func() bool { return a.sync.Stats().Failures >= 4 })
	start := time.Now()
	f0 := a.sync.Stats().Failures
	eventually(t, 5*time.Second, "more failures", func() bool { return a.sync.Stats().Failures >= f0+5 })
	// At least 5 waits of 80 ms less 25 % jitter... the cap holds.
	if d := time.Since(start); d < 5*60*time.Millisecond {
		t.Errorf("5 retries in %v: backoff not applied", d)
	}
	a.repo.fail.Store(false)
	eventually(t, 5*time.Second, "recovery", func() bool {
		return a.repo.Head() == b.repo.Head() && a.sync.Stats().Peers[0].RetryAt.IsZero()
	})
}

func TestSyncerRestartCatchesUp(t *testing.T) {
	key := apitest.Key()
	a := newFakeNode(t, "a", key, nil)
	b := newFakeNode(t, "b", key, nil)
	link(t, a, b)
	h := b.repo.write(t, "x", "1")
	eventually(t, 5*time.Second, "a gets b's commit", func() bool { return a.repo.Head() == h })
	a.stop()
	h = b.repo.write(t, "y", "2") // a's server drops nothing, but no syncer acts on it
	eventually(t, 5*time.Second, "b's notice reaches a", func() bool {
		for _, no := range a.notices() {
			if no.Head == h {
				return true
			}
		}
		return false
	})
	// The notice waits in a's inbox; drop it to test the start-up fetch.
	a.sync.mu.Lock()
	a.sync.notices = map[string]api.Notice{}
	a.sync.mu.Unlock()
	a.start(t)
	eventually(t, 5*time.Second, "restarted a catches up", func() bool { return a.repo.Head() == h })
}

func TestSyncerPeersComeAndGo(t *testing.T) {
	key := apitest.Key()
	a := newFakeNode(t, "a", key, nil)
	b := newFakeNode(t, "b", key, nil)
	// a knows nobody; b's notice (with its address) adds b.
	if err := b.sync.AddPeer("a", a.base); err != nil {
		t.Fatal(err)
	}
	h := b.repo.write(t, "x", "1")
	eventually(t, 5*time.Second, "a learns b from its notice", func() bool { return a.repo.Head() == h })
	if st := a.sync.Stats(); len(st.Peers) != 1 || st.Peers[0].Node != "b" || st.Peers[0].Base != b.base {
		t.Errorf("a's peers: %+v", st.Peers)
	}
	a.sync.RemovePeer("b")
	eventually(t, 5*time.Second, "b removed", func() bool { return len(a.sync.Stats().Peers) == 0 })

	// b known at an address that fails: b's next notice moves it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	a.sync.AddPeer("b", dead)
	eventually(t, 5*time.Second, "a fails to reach b", func() bool {
		st := a.sync.Stats()
		return len(st.Peers) == 1 && st.Peers[0].Failures > 0
	})
	h = b.repo.write(t, "y", "2")
	eventually(t, 5*time.Second, "a follows b to its address", func() bool { return a.repo.Head() == h })
	if st := a.sync.Stats(); st.Peers[0].Base != b.base {
		t.Errorf("a has b at %s, want %s", st.Peers[0].Base, b.base)
	}
	if err := a.sync.AddPeer("c", "ftp://x"); err == nil {
		t.Error("AddPeer accepted an ftp URL")
	}
	if err := a.sync.AddPeer("a", b.base); err == nil {
		t.Error("AddPeer accepted our own node id")
	}
}

// TestSyncerLatency measures a write on a until b holds it, over fake
// repositories (so the time is the Syncer's and the wire's: notice, GET,
// POST, pack checks).
func TestSyncerLatency(t *testing.T) {
	key := apitest.Key()
	a := newFakeNode(t, "a", key, nil)
	b := newFakeNode(t, "b", key, nil)
	link(t, a, b)
	var ds []time.Duration
	for i := range 40 {
		start := time.Now()
		h := a.repo.write(t, "f"+string(rune('a'+i%26)), strings.Repeat("x", i))
		eventually(t, 5*time.Second, "b gets a's commit", func() bool { return b.repo.Head() == h })
		ds = append(ds, time.Since(start))
	}
	med, p90 := quantiles(ds)
	t.Logf("write on a -> integrated on b (fake repos, loopback): median %v, p90 %v over %d", med, p90, len(ds))
	if med > 500*time.Millisecond {
		t.Errorf("median %v", med)
	}
}

func quantiles(ds []time.Duration) (med, p90 time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)*9/10]
}
