package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/api/apitest"
	"github.com/delugefs/delugefs/internal/testwait"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// volume is a served meta repository behind a running API server.
type volume struct {
	srv    *api.Server
	base   string
	key    string
	repo   *meta.Repo
	client *api.Client
	rec    *apitest.Recorder
}

func newVolume(t *testing.T, id string) *volume {
	t.Helper()
	return newVolumeOpts(t, id, api.Options{})
}

func newVolumeOpts(t *testing.T, id string, opts api.Options) *volume {
	t.Helper()
	gitDir := filepath.Join(t.TempDir(), "meta.git")
	served := metatest.Serve(t, gitDir, meta.Options{})
	key := apitest.Key()
	rec := apitest.NewRecorder()
	srv, base := apitest.Start(t, opts, api.Volume{ID: id, Key: key, GitDir: gitDir, Handler: rec})
	c, err := api.NewClient(base, id, key)
	if err != nil {
		t.Fatal(err)
	}
	return &volume{srv: srv, base: base, key: key, repo: served.Repo, client: c, rec: rec}
}

var seed uint64

// addFiles commits one file per name (directories made as needed).
func (v *volume) addFiles(t *testing.T, names ...string) {
	t.Helper()
	err := v.repo.Update(context.Background(), "add files", func(tx *meta.Tx) error {
		for _, name := range names {
			dir := ""
			for _, part := range strings.Split(name, "/")[:strings.Count(name, "/")] {
				dir = strings.TrimPrefix(dir+"/"+part, "/")
				if _, ok := tx.Get(dir); !ok {
					if err := tx.Put(dir, metatest.Dir(0o755, 1)); err != nil {
						return err
					}
				}
			}
			seed++
			if err := tx.Put(name, metatest.File(1000+int64(seed), seed, 0o644, int64(seed))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	// The branch and objects reach the repository just after Update
	// returns; Sync waits for them.
	if err := v.repo.Sync(context.Background()); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// gitEnv is an environment for stock git that reads no user or system
// config, never prompts and never uses a proxy.
func gitEnv(t *testing.T) []string {
	home := t.TempDir()
	empty := filepath.Join(home, "empty.gitconfig") // not /dev/null: it may not be a device here
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "git_askpass", "ssh_askpass", "home", "xdg_config_home":
			continue
		}
		if strings.HasPrefix(k, "GIT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+empty,
		"GIT_TERMINAL_PROMPT=0", "NO_PROXY=*", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
}

// runGit runs stock git and returns its combined output and error.
func runGit(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(t)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := runGit(t, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

func TestStockGitCloneFetch(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("stock git needed: %v", err)
	}
	v := newVolume(t, "bigstore")
	v.addFiles(t, "a.txt", "dir/b.bin", "dir/sub/c")
	work := t.TempDir()

	// With the token in the URL.
	mustGit(t, work, "clone", "-q", v.client.CloneURL(), "clone")
	clone := filepath.Join(work, "clone")
	if got := mustGit(t, clone, "rev-parse", "HEAD"); got != v.repo.Head().String() {
		t.Fatalf("cloned HEAD %s, want %s", got, v.repo.Head())
	}
	if got := mustGit(t, clone, "symbolic-ref", "HEAD"); got != "refs/heads/main" {
		t.Fatalf("cloned branch %s, want refs/heads/main (symref)", got)
	}
	for _, p := range []string{"a.txt", "dir/b.bin", "dir/sub/c", "dir/.delugefs"} {
		if _, err := os.Stat(filepath.Join(clone, p)); err != nil {
			t.Errorf("checkout: %v", err)
		}
	}
	mustGit(t, clone, "fsck", "--strict", "--no-dangling")

	// A new commit arrives with an incremental pack.
	before := counter(t, v, "delugefs_api_git_pack_objects_total")
	v.addFiles(t, "dir/sub/new.txt")
	mustGit(t, clone, "fetch", "-q")
	if got := mustGit(t, clone, "rev-parse", "origin/main"); got != v.repo.Head().String() {
		t.Fatalf("fetched origin/main %s, want %s", got, v.repo.Head())
	}
	// commit, 3 trees (root, dir, dir/sub), 1 manifest
	if sent := counter(t, v, "delugefs_api_git_pack_objects_total") - before; sent != 5 {
		t.Errorf("fetch of one new file sent %v objects, want 5", sent)
	}
	mustGit(t, clone, "merge", "-q", "--ff-only", "origin/main")
	mustGit(t, clone, "fsck", "--strict", "--no-dangling")

	// A client with commits the server lacks: several negotiation rounds
	// (haves the server does not hold, then common ones).
	for i := range 40 {
		os.WriteFile(filepath.Join(clone, fmt.Sprintf("local%d", i)), []byte{byte(i)}, 0o644)
		mustGit(t, clone, "add", ".")
		mustGit(t, clone, "commit", "-q", "-m", fmt.Sprint("local ", i))
	}
	for i := range 3 {
		v.addFiles(t, fmt.Sprintf("more/%d", i))
	}
	before = counter(t, v, "delugefs_api_git_pack_objects_total")
	mustGit(t, clone, "fetch", "-q")
	if got := mustGit(t, clone, "rev-parse", "origin/main"); got != v.repo.Head().String() {
		t.Fatalf("fetched origin/main %s, want %s", got, v.repo.Head())
	}
	if sent := counter(t, v, "delugefs_api_git_pack_objects_total") - before; sent > 15 {
		t.Errorf("fetch of 3 commits sent %v objects: the negotiation found no common base", sent)
	}
	mustGit(t, clone, "fsck", "--strict", "--no-dangling")

	// Push is refused.
	out, err := runGit(t, clone, "push", "origin", "HEAD:refs/heads/main")
	if err == nil || !strings.Contains(out, "403") {
		t.Errorf("push: err %v, output %q; want a failure with 403", err, out)
	}
}

func TestStockGitCloneRefused(t *testing.T) {
	v := newVolume(t, "bigstore")
	v.addFiles(t, "a")
	work := t.TempDir()
	out, err := runGit(t, work, "clone", "-q", v.client.GitURL(), "noauth")
	if err == nil {
		t.Fatalf("clone without a token succeeded:\n%s", out)
	}
	bad := *v.client
	bad.Token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	out, err = runGit(t, work, "clone", "-q", bad.CloneURL(), "badauth")
	if err == nil || !strings.Contains(out, "Authentication failed") {
		t.Fatalf("clone with a wrong token: err %v\n%s", err, out)
	}
	// What git saw: 401 with a Basic challenge.
	for _, tok := range []string{"", bad.Token} {
		req, _ := http.NewRequest("GET", v.client.GitURL()+"/info/refs?service=git-upload-pack", nil)
		if tok != "" {
			req.SetBasicAuth("delugefs", tok)
		}
		resp := do(t, req)
		if resp.code != 401 || resp.header.Get("WWW-Authenticate") != `Basic realm="delugefs"` || resp.body != `{"error":"unauthorized"}`+"\n" {
			t.Errorf("token %q: got %d %q %q", tok, resp.code, resp.header.Get("WWW-Authenticate"), resp.body)
		}
	}
}

func TestStockGitCloneEmpty(t *testing.T) {
	v := newVolume(t, "empty")
	out := mustGit(t, t.TempDir(), "clone", v.client.CloneURL(), "e")
	if !strings.Contains(out, "empty repository") {
		t.Errorf("clone of an empty namespace: %q", out)
	}
}

func TestGoGitFetch(t *testing.T) {
	v := newVolume(t, "bigstore")
	v.addFiles(t, "x/1", "x/2", "y")
	dst, err := git.PlainInit(filepath.Join(t.TempDir(), "peer.git"), true)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := dst.CreateRemote(&config.RemoteConfig{Name: "peer", URLs: []string{v.client.GitURL()}})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(auth transport.AuthMethod) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return remote.FetchContext(ctx, &git.FetchOptions{
			RefSpecs: []config.RefSpec{"+refs/heads/*:refs/remotes/peer/*"},
			Auth:     auth,
		})
	}
	if err := fetch(nil); !errors.Is(err, transport.ErrAuthenticationRequired) {
		t.Fatalf("fetch without auth: %v, want ErrAuthenticationRequired", err)
	}
	check := func(names ...string) {
		t.Helper()
		ref, err := dst.Reference("refs/remotes/peer/main", true)
		if err != nil {
			t.Fatal(err)
		}
		if ref.Hash() != v.repo.Head() {
			t.Fatalf("fetched %s, want %s", ref.Hash(), v.repo.Head())
		}
		c, err := dst.CommitObject(ref.Hash())
		if err != nil {
			t.Fatal(err)
		}
		tree, err := c.Tree()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			f, err := tree.File(n)
			if err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			if _, err := f.Contents(); err != nil {
				t.Fatalf("%s: %v", n, err)
			}
		}
		// Every object of every commit is there.
		iter, _ := dst.Log(&git.LogOptions{From: ref.Hash()})
		err = iter.ForEach(func(c *object.Commit) error {
			t, err := c.Tree()
			if err != nil {
				return err
			}
			return t.Files().ForEach(func(f *object.File) error { _, err := f.Contents(); return err })
		})
		if err != nil {
			t.Fatalf("walk fetched history: %v", err)
		}
	}
	if err := fetch(v.client.GitAuth()); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	check("x/1", "x/2", "y")
	v.addFiles(t, "x/3")
	v.addFiles(t, "z/4")
	before := counter(t, v, "delugefs_api_git_pack_objects_total")
	if err := fetch(v.client.GitAuth()); err != nil {
		t.Fatalf("second fetch: %v", err)
	}
	check("x/1", "x/2", "y", "x/3", "z/4")
	if sent := counter(t, v, "delugefs_api_git_pack_objects_total") - before; sent > 10 {
		t.Errorf("incremental go-git fetch sent %v objects", sent)
	}
	if err := fetch(v.client.GitAuth()); !errors.Is(err, git.NoErrAlreadyUpToDate) {
		t.Fatalf("third fetch: %v, want already up to date", err)
	}
}

// gitRequest is a hand-made upload-pack request.
func pkt(lines ...string) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		if l == "" {
			b.WriteString("0000")
			continue
		}
		fmt.Fprintf(&b, "%04x%s", len(l)+4, l)
	}
	return b.Bytes()
}

func TestUploadPackRequests(t *testing.T) {
	v := newVolumeOpts(t, "bigstore", api.Options{MaxGitBody: 1 << 20})
	v.addFiles(t, "a")
	head := v.repo.Head().String()
	post := func(body []byte, hdr map[string]string) result {
		req, _ := http.NewRequest("POST", v.client.GitURL()+"/git-upload-pack", bytes.NewReader(body))
		req.SetBasicAuth("n1", v.client.Token)
		req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
		for k, val := range hdr {
			req.Header.Set(k, val)
		}
		return do(t, req)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(pkt("want "+head+" side-band-64k ofs-delta\n", "", "done\n"))
	zw.Close()
	var bomb bytes.Buffer
	zw = gzip.NewWriter(&bomb)
	zw.Write(pkt("want "+head+"\n", ""))
	zw.Write(bytes.Repeat(pkt("have "+head+"\n"), 30000))
	zw.Close()

	for _, tc := range []struct {
		name string
		body []byte
		hdr  map[string]string
		code int
		want string
	}{
		{"clone", pkt("want "+head+" side-band-64k ofs-delta\n", "", "done\n"), nil, 200, "0008NAK\n"},
		{"gzip", gz.Bytes(), map[string]string{"Content-Encoding": "gzip"}, 200, "0008NAK\n"},
		{"round", pkt("want "+head+" multi_ack_detailed side-band-64k\n", "", "have "+head+"\n", ""), nil, 200,
			"0038ACK " + head + " common\n0008NAK\n"},
		{"not ours", pkt("want "+strings.Repeat("ab", 20)+"\n", "", "done\n"), nil, 200, "ERR upload-pack: not our ref"},
		{"no want", pkt("", "done\n"), nil, 400, "no want line"},
		{"garbage", []byte("zzzz"), nil, 400, "bad pkt-line length"},
		{"truncated", []byte("0032want "), nil, 400, "truncated"},
		{"shallow", pkt("want "+head+"\n", "deepen 1\n", ""), nil, 400, "not supported"},
		{"bad hash", pkt("want "+strings.Repeat("x", 40)+"\n", ""), nil, 400, "bad object id"},
		{"zip bomb", bomb.Bytes(), map[string]string{"Content-Encoding": "gzip"}, 413, "larger than"},
		{"encoding", []byte("x"), map[string]string{"Content-Encoding": "br"}, 415, "encoding"},
		{"content type", []byte("x"), map[string]string{"Content-Type": "text/plain"}, 415, "content type"},
	} {
		r := post(tc.body, tc.hdr)
		if r.code != tc.code || !strings.Contains(r.body, tc.want) {
			t.Errorf("%s: got %d %.200q, want %d containing %q", tc.name, r.code, r.body, tc.code, tc.want)
		}
	}

	// receive-pack and dumb HTTP are refused.
	for _, u := range []string{"/info/refs?service=git-receive-pack", "/info/refs"} {
		req, _ := http.NewRequest("GET", v.client.GitURL()+u, nil)
		req.SetBasicAuth("x", v.client.Token)
		if r := do(t, req); r.code != 403 {
			t.Errorf("%s: %d %s", u, r.code, r.body)
		}
	}
	req, _ := http.NewRequest("POST", v.client.GitURL()+"/git-receive-pack", strings.NewReader("0000"))
	req.SetBasicAuth("x", v.client.Token)
	if r := do(t, req); r.code != 403 {
		t.Errorf("receive-pack: %d %s", r.code, r.body)
	}
}

// result is a read response.
type result struct {
	code   int
	header http.Header
	body   string
}

// testHTTP is the tests' client: loopback only, never a proxy.
var testHTTP = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second}

func do(t *testing.T, req *http.Request) result {
	t.Helper()
	resp, err := testHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return result{resp.StatusCode, resp.Header, string(b)}
}

// counter reads a counter without labels from /metrics.
func counter(t *testing.T, v *volume, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", v.base+"/metrics", nil)
	req.SetBasicAuth("x", v.client.Token)
	r := do(t, req)
	for _, line := range strings.Split(r.body, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(rest, &f)
			return f
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", name, r.body)
	return 0
}

// TestConcurrentFetches runs go-git fetches in parallel with commits (each
// request opens its own storage: -race checks nothing is shared).
func TestConcurrentFetches(t *testing.T) {
	v := newVolumeOpts(t, "bigstore", api.Options{MaxPacks: 2})
	v.addFiles(t, "seed")
	const peers = 6
	errc := make(chan error, peers)
	for i := range peers {
		go func() { // reports to errc
			dst, err := git.PlainInit(filepath.Join(t.TempDir(), fmt.Sprint("p", i)), true)
			if err == nil {
				_, err = dst.CreateRemote(&config.RemoteConfig{Name: "o", URLs: []string{v.client.GitURL()}})
			}
			for range 5 {
				if err != nil {
					break
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err = dst.FetchContext(ctx, &git.FetchOptions{RemoteName: "o", Auth: v.client.GitAuth(),
					RefSpecs: []config.RefSpec{"+refs/heads/*:refs/remotes/o/*"}})
				cancel()
				if errors.Is(err, git.NoErrAlreadyUpToDate) {
					err = nil
				}
			}
			errc <- err
		}()
	}
	for i := range 10 {
		v.addFiles(t, fmt.Sprintf("d%d/f", i))
	}
	for range peers {
		if err := <-errc; err != nil {
			t.Errorf("fetch: %v", err)
		}
	}
}

// TestSlowHeaders checks that a client that never finishes its headers is
// dropped after ReadHeaderTimeout.
func TestSlowHeaders(t *testing.T) {
	_, base := apitest.Start(t, api.Options{ReadHeaderTimeout: 200 * time.Millisecond},
		api.Volume{ID: "v", Key: apitest.Key(), Handler: apitest.NewRecorder()})
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET /status HTTP/1.1\r\nHost: x\r\n"))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read: %v (the server kept the connection)", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("connection closed after %v", d)
	}
}

// BenchmarkClone measures a stock git clone and a go-git fetch of a
// namespace of 10,000 files in 100 directories (one commit).
func BenchmarkClone(b *testing.B) {
	gitDir := filepath.Join(b.TempDir(), "meta.git")
	served := metatest.Serve(b, gitDir, meta.Options{})
	key := apitest.Key()
	_, base := apitest.Start(b, api.Options{}, api.Volume{ID: "big", Key: key, GitDir: gitDir, Handler: apitest.NewRecorder()})
	c, _ := api.NewClient(base, "big", key)
	const files = 10000
	err := served.Repo.Update(context.Background(), "many", func(tx *meta.Tx) error {
		for d := range 100 {
			if err := tx.Put(fmt.Sprint("d", d), metatest.Dir(0o755, 1)); err != nil {
				return err
			}
		}
		for i := range files {
			if err := tx.Put(fmt.Sprintf("d%d/f%d", i%100, i), metatest.File(1<<20, uint64(i), 0o644, 1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = served.Repo.Sync(context.Background())
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Run("stock-git", func(b *testing.B) {
		for b.Loop() {
			dir := b.TempDir()
			cmd := exec.Command("git", "clone", "-q", "--bare", c.CloneURL(), filepath.Join(dir, "c.git"))
			cmd.Env = benchEnv(dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/clone")
	})
	b.Run("go-git", func(b *testing.B) {
		for b.Loop() {
			dst, _ := git.PlainInit(filepath.Join(b.TempDir(), "p.git"), true)
			r, _ := dst.CreateRemote(&config.RemoteConfig{Name: "o", URLs: []string{c.GitURL()}})
			if err := r.Fetch(&git.FetchOptions{Auth: c.GitAuth(), RefSpecs: []config.RefSpec{"+refs/heads/*:refs/remotes/o/*"}}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/fetch")
	})
}

func benchEnv(home string) []string {
	empty := filepath.Join(home, "empty.gitconfig")
	os.WriteFile(empty, nil, 0o644)
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + empty, "GIT_TERMINAL_PROMPT=0", "NO_PROXY=*"}
}

// TestMain fails the run when goroutines outlive the tests (servers,
// handlers, pack encoders).
func TestMain(m *testing.M) {
	before := ourGoroutines()
	code := m.Run()
	testHTTP.CloseIdleConnections()
	if code == 0 {
		testwait.Until(10*time.Second, func() bool { return ourGoroutines() <= before })
	}
	if n := ourGoroutines(); code == 0 && n > before {
		buf := make([]byte, 1<<20)
		fmt.Fprintf(os.Stderr, "leaked goroutines: %d > %d\n%s", n, before, buf[:runtime.Stack(buf, true)])
		code = 1
	}
	os.Exit(code)
}

// ourGoroutines counts the goroutines alive, less the ones the runtime and
// the test framework keep for themselves (the signal loop the fuzzing
// engine starts, for one).
func ourGoroutines() int {
	buf := make([]byte, 1<<20)
	stacks := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
	n := 0
	for _, s := range stacks {
		if !strings.Contains(s, "os/signal.signal_recv") {
			n++
		}
	}
	return n
}

// TestStockGitCredentialHelper: the token comes from a credential helper
// instead of the URL.
func TestStockGitCredentialHelper(t *testing.T) {
	v := newVolume(t, "bigstore")
	v.addFiles(t, "a")
	helper := "!f() { echo username=delugefs; echo password=" + v.client.Token + "; }; f"
	mustGit(t, t.TempDir(), "-c", "credential.helper="+helper, "clone", "-q", v.client.GitURL(), "c")
}
