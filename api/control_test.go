package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/api/apitest"
	"github.com/delugefs/delugefs/bt"
	"github.com/go-git/go-git/v5/plumbing"
)

func infoHash(i int) bt.InfoHash {
	var h bt.InfoHash
	h[0], h[1], h[19] = byte(i>>8), byte(i), 0xaa
	return h
}

func TestControlRoundTrip(t *testing.T) {
	rec := apitest.NewRecorder()
	var many []bt.InfoHash
	for i := range 20000 {
		many = append(many, infoHash(i))
	}
	rec.Haves = []api.NodeHave{{Node: "n1", Hashes: many}, {Node: "n2", Hashes: nil}}
	rec.Disks = []api.Disk{{Node: "n1", Root: "/mnt/d1", Total: 1 << 40, Free: 1 << 39}, {Node: "n2", Total: 10, Free: 0}}
	rec.VolStatus = api.VolumeStatus{
		Volume: "ignored", Head: strings.Repeat("ab", 20), Files: 3, Bytes: 4096,
		Nodes: []api.NodeStatus{{ID: "n1", Blobs: 2, Total: 100, Free: 50}},
		Peers: []api.PeerStatus{{Node: "p1", Addr: "10.0.0.2:7450", Alive: true, LastSeen: time.Unix(1700000000, 0).UTC(), Free: 7}},
		Swarm: []api.SwarmStatus{{InfoHash: infoHash(1).String(), Path: "film.mkv", Pieces: 10, Have: 5, Progress: 0.5, Peers: 2}},
	}
	key := apitest.Key()
	_, base := apitest.Start(t, api.Options{}, api.Volume{ID: "bigstore", Key: key, Handler: rec})
	c, err := api.NewClient(base, "bigstore", key)
	if err != nil {
		t.Fatal(err)
	}
	c.User = "n9"
	ctx := context.Background()

	head := plumbing.NewHash(strings.Repeat("12", 20))
	if err := c.Notify(ctx, api.Notice{Node: "n9", Head: head, Addr: ":7450"}); err != nil {
		t.Fatalf("notify: %v", err)
	}
	n := <-rec.Notices
	if n.Node != "n9" || n.Head != head || n.Addr != "127.0.0.1:7450" || !strings.HasPrefix(n.Remote, "127.0.0.1:") {
		t.Errorf("notice %+v", n)
	}
	if err := c.Notify(ctx, api.Notice{Node: "n9", Head: head, Addr: "host-b.local:7450"}); err != nil {
		t.Fatalf("notify: %v", err)
	}
	if n := <-rec.Notices; n.Addr != "host-b.local:7450" {
		t.Errorf("notice addr %q", n.Addr)
	}

	haves, err := c.Have(ctx)
	if err != nil {
		t.Fatalf("have: %v", err)
	}
	if len(haves) != 2 || haves[0].Node != "n1" || len(haves[0].Hashes) != len(many) || haves[1].Node != "n2" || len(haves[1].Hashes) != 0 {
		t.Fatalf("have: %d nodes", len(haves))
	}
	for i, h := range haves[0].Hashes {
		if h != many[i] {
			t.Fatalf("have[%d] = %s, want %s", i, h, many[i])
		}
	}

	disks, err := c.Space(ctx)
	if err != nil {
		t.Fatalf("space: %v", err)
	}
	if len(disks) != 2 || disks[0] != rec.Disks[0] || disks[1] != rec.Disks[1] {
		t.Errorf("space: %+v", disks)
	}

	rep, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if len(rep.Volumes) != 1 {
		t.Fatalf("status: %d volumes", len(rep.Volumes))
	}
	want := rec.VolStatus
	want.Volume = "bigstore"
	got := rep.Volumes[0]
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("status:\n got %s\nwant %s", gj, wj)
	}
	vs, err := c.VolumeStatus(ctx)
	if err != nil || vs.Volume != "bigstore" || vs.Files != 3 {
		t.Errorf("volume status: %+v, %v", vs, err)
	}
}

func TestControlErrors(t *testing.T) {
	keyA, keyB, keyC := apitest.Key(), apitest.Key(), apitest.Key()
	recA := apitest.NewRecorder()
	srv, base := apitest.Start(t, api.Options{MaxBody: 1024},
		api.Volume{ID: "a", Key: keyA, Handler: recA},
		api.Volume{ID: "b", Key: keyB, Handler: api.HandlerFuncs{}},
		api.Volume{ID: "c", Key: keyC, GitDir: t.TempDir(), Handler: recA},
	)
	tokA, _ := api.Token(keyA)
	tokB, _ := api.Token(keyB)
	tokC, _ := api.Token(keyC)
	// A token one character off (the key is random: never the same one).
	wrongTok := "x" + tokA[1:]
	if tokA[0] == 'x' {
		wrongTok = "y" + tokA[1:]
	}
	head := strings.Repeat("0f", 20)
	good := `{"node":"n1","head":"` + head + `"}`

	for _, tc := range []struct {
		name, method, path, token, ctype, body string
		code                                   int
		msg                                    string
	}{
		{"ok", "POST", "/v1/a/notify", tokA, "application/json", good, 204, ""},
		{"no token", "POST", "/v1/a/notify", "", "application/json", good, 401, "unauthorized"},
		{"wrong token", "POST", "/v1/a/notify", wrongTok, "application/json", good, 401, "unauthorized"},
		{"other volume's token", "POST", "/v1/a/notify", tokB, "application/json", good, 401, "unauthorized"},
		{"unknown volume, no token", "POST", "/v1/zz/notify", "", "application/json", good, 401, "unauthorized"},
		{"unknown volume", "POST", "/v1/zz/notify", tokA, "application/json", good, 404, "unknown volume"},
		{"invalid volume id", "POST", "/v1/-x/notify", tokA, "application/json", good, 400, "invalid volume id"},
		{"malformed", "POST", "/v1/a/notify", tokA, "application/json", `{"node":`, 400, "malformed"},
		{"unknown field", "POST", "/v1/a/notify", tokA, "application/json", `{"node":"n1","head":"` + head + `","x":1}`, 400, "unknown field"},
		{"trailing", "POST", "/v1/a/notify", tokA, "application/json", good + `{}`, 400, "trailing"},
		{"empty", "POST", "/v1/a/notify", tokA, "application/json", ``, 400, "empty"},
		{"bad head", "POST", "/v1/a/notify", tokA, "application/json", `{"node":"n1","head":"xyz"}`, 400, "head"},
		{"bad node", "POST", "/v1/a/notify", tokA, "application/json", `{"node":"../x","head":"` + head + `"}`, 400, "node id"},
		{"bad addr", "POST", "/v1/a/notify", tokA, "application/json", `{"node":"n1","head":"` + head + `","addr":"a b:1"}`, 400, "addr"},
		{"bad port", "POST", "/v1/a/notify", tokA, "application/json", `{"node":"n1","head":"` + head + `","addr":"h:99999"}`, 400, "port"},
		{"oversized", "POST", "/v1/a/notify", tokA, "application/json", `{"node":"` + strings.Repeat("n", 2000) + `"}`, 413, "larger than 1024"},
		{"content type", "POST", "/v1/a/notify", tokA, "text/plain", good, 415, "content type"},
		{"method", "GET", "/v1/a/notify", tokA, "", "", 405, ""},
		{"have, empty body", "POST", "/v1/a/have", tokA, "", "", 200, `"nodes":[]`},
		{"have, body", "POST", "/v1/a/have", tokA, "application/json", `{"x":1}`, 400, "unknown field"},
		{"space", "POST", "/v1/a/space", tokA, "application/json", `{}`, 200, `"disks":[]`},
		{"not implemented", "POST", "/v1/b/space", tokB, "application/json", `{}`, 501, "not implemented"},
		{"no endpoint", "GET", "/nothing", tokA, "", "", 404, "no such endpoint"},
		{"no git", "GET", "/git/a/info/refs?service=git-upload-pack", tokA, "", "", 404, "no git repository"},
		{"no git repo", "POST", "/git/c/git-upload-pack", tokC, "", "0000", 404, "repository is missing"},
		{"no endpoint, no token", "GET", "/nothing", "", "", "", 401, "unauthorized"},
		{"status, no token", "GET", "/status", "", "", "", 401, "unauthorized"},
		{"metrics, no token", "GET", "/metrics", "", "", "", 401, "unauthorized"},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		if tc.token != "" {
			req.SetBasicAuth("n1", tc.token)
		}
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		r := do(t, req)
		if r.code != tc.code || !strings.Contains(r.body, tc.msg) {
			t.Errorf("%s: got %d %.200q, want %d with %q", tc.name, r.code, r.body, tc.code, tc.msg)
		}
		if r.code == 401 && r.body != `{"error":"unauthorized"}`+"\n" {
			t.Errorf("%s: 401 with details: %q", tc.name, r.body)
		}
	}

	// Client errors match the sentinels.
	ctx := context.Background()
	bad := &api.Client{Base: base, Token: tokB, Volume: "a"}
	if _, err := bad.Space(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("wrong token: %v", err)
	}
	unk := &api.Client{Base: base, Token: tokA, Volume: "zz"}
	if _, err := unk.Space(ctx); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown volume: %v", err)
	}
	b := &api.Client{Base: base, Token: tokB, Volume: "b"}
	if _, err := b.Have(ctx); !errors.Is(err, api.ErrUnimplemented) {
		t.Errorf("unimplemented: %v", err)
	}
	var se *api.StatusError
	if err := b.Notify(ctx, api.Notice{Node: "n1", Head: plumbing.NewHash(head)}); !errors.As(err, &se) || se.Code != 501 {
		t.Errorf("notify unimplemented: %v", err)
	}

	// /status shows only the volumes the token opens.
	for tok, want := range map[string]string{tokA: "a", tokB: "b"} {
		rep, err := (&api.Client{Base: base, Token: tok}).Status(ctx)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if len(rep.Volumes) != 1 || rep.Volumes[0].Volume != want {
			t.Fatalf("status with %s's token: %+v", want, rep.Volumes)
		}
		if e := rep.Volumes[0].Error; (want == "b") != strings.Contains(e, "not implemented") {
			t.Errorf("status of %s: error %q", want, e) // b's handler has no Status
		}
	}

	// /metrics counts requests by endpoint and code.
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.SetBasicAuth("x", tokA)
	r := do(t, req)
	for _, want := range []string{
		`delugefs_api_requests_total{code="401",endpoint="notify"}`,
		`delugefs_api_requests_total{code="204",endpoint="notify"}`,
		`delugefs_api_requests_total{code="413",endpoint="notify"}`,
		`delugefs_api_auth_failures_total`,
		`delugefs_api_volumes 3`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Unregister: the volume's token opens nothing any more.
	srv.Unregister("a")
	if err := (&api.Client{Base: base, Token: tokA, Volume: "a"}).Notify(ctx, api.Notice{Node: "n1", Head: plumbing.NewHash(head)}); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("after unregister: %v", err)
	}
}

func TestRegister(t *testing.T) {
	s := api.New(api.Options{})
	h := apitest.NewRecorder()
	for _, tc := range []struct {
		v    api.Volume
		want error
	}{
		{api.Volume{ID: "ok", Key: apitest.Key(), Handler: h}, nil},
		{api.Volume{ID: "ok", Key: apitest.Key(), Handler: h}, api.ErrVolumeExists},
		{api.Volume{ID: "a/b", Key: apitest.Key(), Handler: h}, api.ErrBadVolume},
		{api.Volume{ID: "", Key: apitest.Key(), Handler: h}, api.ErrBadVolume},
		{api.Volume{ID: "k", Key: "c2hvcnQ=", Handler: h}, api.ErrBadKey},
		{api.Volume{ID: "k", Key: "!!!", Handler: h}, api.ErrBadKey},
		{api.Volume{ID: "k", Key: apitest.Key()}, api.ErrBadVolume},
	} {
		if err := s.Register(tc.v); !errors.Is(err, tc.want) {
			t.Errorf("register %q: %v, want %v", tc.v.ID, err, tc.want)
		}
	}
}

func TestToken(t *testing.T) {
	// HMAC-SHA256(32 zero bytes, "delugefs-api-v1"), base64url without padding.
	tok, err := api.Token("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 43 || strings.ContainsAny(tok, "+/=") {
		t.Errorf("token %q", tok)
	}
	tok2, _ := api.Token(apitest.Key())
	if tok2 == tok {
		t.Error("different keys, same token")
	}
}

func TestServeRestart(t *testing.T) {
	s := api.New(api.Options{})
	if err := s.Register(api.Volume{ID: "v", Key: apitest.Key(), Handler: apitest.NewRecorder()}); err != nil {
		t.Fatal(err)
	}
	var addr string
	for i := range 2 {
		if _, err := s.Listen(); err != nil {
			t.Fatal(err)
		}
		<-s.Ready()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx) }()
		if i == 0 {
			addr = s.Addr().String()
		} else if s.Addr().String() != addr {
			t.Fatalf("restart bound %s, want %s", s.Addr(), addr)
		}
		r := do(t, mustReq(t, "GET", "http://"+addr+"/status"))
		if r.code != 401 {
			t.Errorf("serve %d: /status without a token: %d", i, r.code)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("serve returned %v", err)
		}
	}
}

func mustReq(t *testing.T, method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestStatusText(t *testing.T) {
	now := time.Unix(1_700_000_100, 0).UTC()
	rep := &api.StatusReport{Time: now, Volumes: []api.VolumeStatus{{
		Volume: "bigstore", Head: strings.Repeat("ab", 20), Files: 2, Bytes: 3 << 30,
		Nodes:  []api.NodeStatus{{ID: "n1", Root: "/mnt/d1", Blobs: 2, Free: 1 << 40, Total: 4 << 40}, {ID: "n2", Root: "/mnt/d2", Error: "meta: sync journal: input/output error"}},
		Peers:  []api.PeerStatus{{Node: "p1", Addr: "10.0.0.2:7450", Alive: true, LastSeen: now.Add(-3 * time.Second), Free: 1536, Total: 2048}},
		Swarm:  []api.SwarmStatus{{InfoHash: strings.Repeat("cd", 20), Path: "film.mkv", Progress: 0.25, Peers: 3, Down: 1 << 20}},
		Copies: []api.FileCopies{{Path: "film.mkv", Size: 3 << 30, Copies: 1, Holders: []string{"n1"}}},
	}, {Volume: "other", Error: "api: not implemented"}}}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"volume bigstore", "abababababab", "3.0 GiB", "/mnt/d1", "1.0 TiB", "alive", "1.5 KiB", "3s ago", "film.mkv", "25.0%", "1.0 MiB/s", "error: api: not implemented",
		"node n2 refuses changes: meta: sync journal: input/output error"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	if api.Bytes(0) != "0 B" || api.Bytes(1023) != "1023 B" || api.Bytes(1<<60) != "1.0 EiB" || api.Bytes(^uint64(0)) != "16.0 EiB" {
		t.Errorf("Bytes: %s %s %s %s", api.Bytes(0), api.Bytes(1023), api.Bytes(1<<60), api.Bytes(^uint64(0)))
	}
}

// The Go profiles are served, and only with a token.
func TestPprof(t *testing.T) {
	key := apitest.Key()
	_, base := apitest.Start(t, api.Options{}, api.Volume{ID: "a", Key: key, Handler: api.HandlerFuncs{}})
	tok, _ := api.Token(key)
	for _, tc := range []struct {
		token string
		code  int
	}{{"", 401}, {tok, 200}} {
		req, _ := http.NewRequest("GET", base+"/debug/pprof/heap?debug=1", nil)
		if tc.token != "" {
			req.SetBasicAuth("n1", tc.token)
		}
		r := do(t, req)
		if r.code != tc.code || tc.code == 200 && !strings.Contains(r.body, "heap profile") {
			t.Errorf("token %v: %d %.100q", tc.token != "", r.code, r.body)
		}
	}
}
