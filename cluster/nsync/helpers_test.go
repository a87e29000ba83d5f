package nsync

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/api/apitest"
	"github.com/delugefs/delugefs/internal/testwait"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
)

const testVolume = "vol"

// quiet drops the Syncers' logs (merge events, peers added) in tests.
var quiet = slog.New(slog.DiscardHandler)

// peer is a served meta repository behind a real api.Server on loopback.
type peer struct {
	dir    string
	repo   *metatest.Served
	key    string
	base   string
	client *api.Client
	posts  atomic.Int32 // upload-pack POSTs served
	gets   atomic.Int32 // info/refs GETs served
	// mangle, when set, rewrites upload-pack responses (nil: answer 502).
	mangle atomic.Pointer[func([]byte) []byte]
}

// newPeer starts a peer of volume key (a new key when empty).
func newPeer(t testing.TB, key string) *peer {
	t.Helper()
	if key == "" {
		key = apitest.Key()
	}
	p := &peer{dir: filepath.Join(t.TempDir(), "meta.git"), key: key}
	p.repo = metatest.Serve(t, p.dir, meta.Options{})
	srv := api.New(api.Options{})
	if err := srv.Register(api.Volume{ID: testVolume, Key: key, GitDir: p.dir, Handler: apitest.NewRecorder()}); err != nil {
		t.Fatal(err)
	}
	p.base = serveHTTP(t, p.wrap(srv.Handler()))
	p.client = p.newClient(t, key)
	return p
}

func (p *peer) newClient(t testing.TB, key string) *api.Client {
	t.Helper()
	c, err := api.NewClient(p.base, testVolume, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wrap counts git requests and applies mangle to upload-pack answers.
func (p *peer) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/info/refs"):
			p.gets.Add(1)
		case strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			p.posts.Add(1)
			if f := p.mangle.Load(); f != nil {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.Header().Del("Content-Length")
				body := (*f)(rec.Body.Bytes())
				if body == nil {
					http.Error(w, "mangled", http.StatusBadGateway)
					return
				}
				w.WriteHeader(rec.Code)
				w.Write(body)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (p *peer) setMangle(f func([]byte) []byte) { p.mangle.Store(&f) }

// write puts files named names (top level) with made-up contents and waits
// until git readers see the commit.
func (p *peer) write(t testing.TB, seed uint64, names ...string) {
	t.Helper()
	p.repo.Do(t, "write", func(tx *meta.Tx) error {
		for i, n := range names {
			if dir := filepath.Dir(n); dir != "." {
				if _, ok := tx.Get(dir); !ok {
					if err := tx.Put(dir, metatest.Dir(0o755, 1)); err != nil {
						return err
					}
				}
			}
			if err := tx.Put(n, metatest.File(1000+int64(i), seed+uint64(i), 0o644, 1)); err != nil {
				return err
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.repo.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// serveHTTP serves h on 127.0.0.1 until the test ends and returns its URL.
func serveHTTP(t testing.TB, h http.Handler) string {
	base, _ := startHTTP(t, h, "127.0.0.1:0")
	return base
}

// startHTTP serves h on addr until the test ends or stop is called, and
// returns its URL.
func startHTTP(t testing.TB, h http.Handler, addr string) (base string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { // exits when Close is called below
		defer close(done)
		srv.Serve(ln)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

// treeDigest hashes every file under dir (names, sizes, contents), to show
// that a directory was not written.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	for _, n := range names {
		fi, err := os.Lstat(n)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %v %d %d\n", n, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			h.Write(b)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// dump lists a snapshot's entries, for comparisons.
func dump(s *meta.Snapshot) string {
	var b strings.Builder
	s.Walk(func(p string, e *meta.Entry) bool {
		fmt.Fprintf(&b, "%q kind=%d mode=%o size=%d hash=%s target=%q mtime=%d\n", p, e.Kind, e.Mode, e.Size, e.Hash, e.Target, e.Mtime)
		return true
	})
	return b.String()
}

// eventually waits for cond, checking it every few milliseconds, and fails
// the test when it does not hold within d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
