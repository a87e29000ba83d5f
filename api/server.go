package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Errors callers branch on.
var (
	// ErrBadVolume is returned by Register for an invalid volume id or a
	// missing handler.
	ErrBadVolume = errors.New("api: bad volume")
	// ErrVolumeExists is returned by Register for an id already served.
	ErrVolumeExists = errors.New("api: volume already registered")
)

// Options configure a Server. The zero value listens on 127.0.0.1 at a
// port the kernel picks, with the defaults below.
type Options struct {
	// Addr is the listen address ("host:port"); empty means "127.0.0.1:0".
	Addr string
	// Logger receives request failures at debug level and server errors;
	// nil means slog.Default(). The server never prints.
	Logger *slog.Logger
	// Registry receives the server's metrics and is served at /metrics;
	// nil means a new registry (see Server.Registry). Register the node's
	// own collectors on it.
	Registry *prometheus.Registry

	// Timeouts of the http.Server; zero means the default in brackets.
	ReadHeaderTimeout time.Duration // [10s]
	ReadTimeout       time.Duration // whole request, body included [60s]
	WriteTimeout      time.Duration // a response; pack responses extend it per write [60s]
	IdleTimeout       time.Duration // keep-alive [120s]

	// MaxBody bounds the body of a control call [64 KiB].
	MaxBody int64
	// MaxGitBody bounds the (decompressed) body of an upload-pack request
	// [8 MiB, about 160,000 "have" lines].
	MaxGitBody int64
	// MaxPacks bounds the pack responses built at once [4]; more wait.
	MaxPacks int
	// PackWindow is the delta window of the packs sent [10]; negative
	// means no deltas. Deltas shrink clones of long histories (trees
	// change a little per commit) but cost CPU: a clone of 10,000 files
	// takes about 3× longer with the default than with none.
	PackWindow int
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// when its context ends [5s].
	ShutdownTimeout time.Duration
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	def(&o.ReadHeaderTimeout, 10*time.Second)
	def(&o.ReadTimeout, 60*time.Second)
	def(&o.WriteTimeout, 60*time.Second)
	def(&o.IdleTimeout, 120*time.Second)
	def(&o.ShutdownTimeout, 5*time.Second)
	if o.MaxBody <= 0 {
		o.MaxBody = 64 << 10
	}
	if o.MaxGitBody <= 0 {
		o.MaxGitBody = 8 << 20
	}
	if o.MaxPacks <= 0 {
		o.MaxPacks = 4
	}
	switch {
	case o.PackWindow == 0:
		o.PackWindow = 10
	case o.PackWindow < 0:
		o.PackWindow = 0
	}
}

// Volume is one volume served by a Server.
type Volume struct {
	// ID is the volume id (1 to 63 letters, digits, '.', '_' or '-',
	// starting with a letter or digit).
	ID string
	// Key is the volume key as stored in node.json (base64); requests for
	// this volume must carry Token(Key).
	Key string
	// GitDir is the bare namespace repository served read-only at
	// /git/<ID>; empty disables git for this volume (404). Each request
	// opens its own go-git storage on it, so serving never shares go-git
	// state with the writer (meta.Repo) and sees packs fetched since.
	GitDir string
	// Handler answers the control calls; see HandlerFuncs for a partial one.
	Handler Handler
}

// volume is a registered Volume with its derived token.
type volume struct {
	Volume
	token string
}

var volumeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Server is the HTTP API of one process: git smart HTTP (read-only), the
// control calls, /status and /metrics, for every registered volume. Its
// methods are safe for concurrent use.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	mux     *http.ServeMux
	packs   chan struct{} // semaphore of pack responses being built

	// mu guards vols.
	mu   sync.RWMutex
	vols map[string]*volume

	// lnMu guards ln and addr. Lock order: lnMu is never held with mu.
	lnMu  sync.Mutex
	ln    net.Listener // bound by Listen, consumed by Serve
	addr  net.Addr     // the bound address; kept so a restarted Serve reuses the port
	ready chan struct{}
}

// New returns a Server that serves no volume yet. Call Register for each
// volume, then Listen (optional) and Serve.
func New(opts Options) *Server {
	opts.setDefaults()
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		metrics: newMetrics(opts.Registry),
		packs:   make(chan struct{}, opts.MaxPacks),
		vols:    make(map[string]*volume),
		ready:   make(chan struct{}),
	}
	s.routes()
	return s
}

// Registry returns the registry served at /metrics, for the node's own
// collectors.
func (s *Server) Registry() *prometheus.Registry { return s.opts.Registry }

// Handler returns the server's HTTP handler (for tests and for mounting
// under another server).
func (s *Server) Handler() http.Handler { return s.mux }

// Register starts serving v. It fails for an invalid id or key, a nil
// Handler, or an id already registered.
func (s *Server) Register(v Volume) error {
	if !volumeIDPattern.MatchString(v.ID) {
		return fmt.Errorf("%w: invalid id %q", ErrBadVolume, v.ID)
	}
	if v.Handler == nil {
		return fmt.Errorf("%w: %s: nil handler", ErrBadVolume, v.ID)
	}
	tok, err := Token(v.Key)
	if err != nil {
		return fmt.Errorf("register volume %s: %w", v.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.vols[v.ID]; ok {
		return fmt.Errorf("%w: %s", ErrVolumeExists, v.ID)
	}
	s.vols[v.ID] = &volume{Volume: v, token: tok}
	s.metrics.volumes.Set(float64(len(s.vols)))
	return nil
}

// Unregister stops serving the volume id; requests in flight finish.
func (s *Server) Unregister(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.vols, id)
	s.metrics.volumes.Set(float64(len(s.vols)))
}

// lookup returns the registered volume id, or nil.
func (s *Server) lookup(id string) *volume {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.vols[id]
}

// authorized returns the volumes (sorted by id) whose token the request
// carries.
func (s *Server) authorized(r *http.Request) []*volume {
	pw := password(r)
	if pw == "" {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*volume
	for _, v := range s.vols { // compare with every token: no early exit
		if tokenEqual(pw, v.token) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Listen binds the listen address (Options.Addr, or the address bound
// before when Serve is restarted) and returns it, so the caller can print
// it before serving. Serve calls it when it was not called.
func (s *Server) Listen() (net.Addr, error) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln != nil {
		return s.ln.Addr(), nil
	}
	addr := s.opts.Addr
	if s.addr != nil {
		addr = s.addr.String()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen %s: %w", addr, err)
	}
	s.ln = ln
	if s.addr == nil {
		s.addr = ln.Addr()
		close(s.ready)
	}
	return ln.Addr(), nil
}

// Addr returns the bound address, or nil before the first Listen.
func (s *Server) Addr() net.Addr {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	return s.addr
}

// Ready is closed once the server has bound its address (see Addr).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Serve serves HTTP until ctx ends (a suture.Service). It listens first
// unless Listen was called. When ctx ends it stops accepting, waits up to
// ShutdownTimeout for requests in flight, and returns ctx.Err().
func (s *Server) Serve(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	s.lnMu.Lock()
	ln := s.ln
	s.ln = nil // consumed: a restarted Serve binds again
	s.lnMu.Unlock()

	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }() // exits when hs is shut down or closed
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-errc // http.ErrServerClosed
	return ctx.Err()
}

// routes builds the mux. Every route authenticates first, then checks the
// method (so a caller without a token learns nothing, not even a 405).
func (s *Server) routes() {
	m := http.NewServeMux()
	handle := func(method, pattern, endpoint string, h func(w http.ResponseWriter, r *http.Request, v *volume)) {
		m.Handle(pattern, s.instrument(endpoint, s.volumeAuth(func(w http.ResponseWriter, r *http.Request, v *volume) {
			if allowMethod(w, r, method) {
				h(w, r, v)
			}
		})))
	}
	handle("GET", "/git/{vol}/info/refs", "git-info-refs", s.handleInfoRefs)
	handle("POST", "/git/{vol}/git-upload-pack", "git-upload-pack", s.handleUploadPack)
	handle("POST", "/git/{vol}/git-receive-pack", "git-receive-pack", s.handleReceivePack)
	handle("POST", "/v1/{vol}/notify", "notify", s.handleNotify)
	handle("POST", "/v1/{vol}/have", "have", s.handleHave)
	handle("POST", "/v1/{vol}/space", "space", s.handleSpace)
	handle("GET", "/v1/{vol}/status", "volume-status", s.handleVolumeStatus)
	global := func(method, pattern, endpoint string, h http.HandlerFunc) {
		m.Handle(pattern, s.instrument(endpoint, s.anyAuth(func(w http.ResponseWriter, r *http.Request) {
			if allowMethod(w, r, method) {
				h(w, r)
			}
		})))
	}
	global("GET", "/status", "status", s.handleStatus)
	metrics := promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{})
	global("GET", "/metrics", "metrics", metrics.ServeHTTP)
	// Go's profiles (heap, CPU, goroutines), for finding where a node's
	// time and memory go; behind the same token as everything else.
	global("", "/debug/pprof/", "pprof", pprof.Index)
	global("", "/debug/pprof/profile", "pprof", pprof.Profile)
	global("", "/debug/pprof/trace", "pprof", pprof.Trace)
	global("", "/", "other", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "api: no such endpoint")
	})
	s.mux = m
}

// allowMethod answers 405 unless r uses method (or method is empty).
func allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if method == "" || r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeError(w, http.StatusMethodNotAllowed, "api: method not allowed; use "+method)
	return false
}

// volumeAuth authenticates a request for the volume in its path: 401 when
// the credentials open no volume here (whether or not the named one
// exists), 404 for an unknown volume when they open another one.
func (s *Server) volumeAuth(h func(w http.ResponseWriter, r *http.Request, v *volume)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("vol")
		v := s.lookup(id)
		if v != nil && tokenEqual(password(r), v.token) {
			h(w, r, v)
			return
		}
		if v != nil || len(s.authorized(r)) == 0 {
			s.metrics.authFailures.Inc()
			unauthorized(w)
			return
		}
		if !volumeIDPattern.MatchString(id) {
			writeError(w, http.StatusBadRequest, "api: invalid volume id")
			return
		}
		writeError(w, http.StatusNotFound, "api: unknown volume")
	}
}

// anyAuth authenticates a request that names no volume: its credentials
// must open at least one.
func (s *Server) anyAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(s.authorized(r)) == 0 {
			s.metrics.authFailures.Inc()
			unauthorized(w)
			return
		}
		h(w, r)
	}
}
