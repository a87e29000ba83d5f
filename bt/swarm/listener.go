package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/wire"
)

// Registry maps info-hashes to the swarms a node runs, so its Listener can
// route inbound connections. It is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex // guards m and resolve
	m       map[bt.InfoHash]*Swarm
	resolve func(bt.InfoHash) *Swarm
}

// SetResolver sets the function the Listener asks for a swarm when an
// inbound connection names an info-hash with none registered: a node
// seeds a complete blob on demand instead of running a swarm for every
// blob it holds. fn runs on the connection's goroutine, must be safe for
// concurrent use, and returns nil when the node does not serve h (the
// connection is then closed); it registers the swarm it returns.
func (r *Registry) SetResolver(fn func(bt.InfoHash) *Swarm) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resolve = fn
}

// Resolve returns the swarm of h, asking the resolver when none is
// registered; nil when there is none.
func (r *Registry) Resolve(h bt.InfoHash) *Swarm {
	r.mu.RLock()
	s, fn := r.m[h], r.resolve
	r.mu.RUnlock()
	if s != nil || fn == nil {
		return s
	}
	return fn(h)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[bt.InfoHash]*Swarm{}} }

// Add registers s under its info-hash, replacing any swarm registered there.
func (r *Registry) Add(s *Swarm) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[s.InfoHash()] = s
}

// Remove unregisters s (if it is still the swarm registered for its hash).
func (r *Registry) Remove(s *Swarm) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[s.InfoHash()] == s {
		delete(r.m, s.InfoHash())
	}
}

// Get returns the swarm of h, or nil.
func (r *Registry) Get(h bt.InfoHash) *Swarm {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[h]
}

// Len returns the number of swarms registered.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}

// Listener accepts BitTorrent connections and hands each one to the swarm
// registered for the info-hash of its handshake, or closes it.
type Listener struct {
	ln      net.Listener
	reg     *Registry
	log     *slog.Logger
	timeout time.Duration
}

// Listen listens on addr (host:port; port 0 picks one) for the swarms of
// reg. A nil logger means slog.Default().
func Listen(addr string, reg *Registry, log *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("swarm: listen: %w", err)
	}
	return NewListener(ln, reg, log), nil
}

// NewListener serves the swarms of reg on ln.
func NewListener(ln net.Listener, reg *Registry, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.Default()
	}
	return &Listener{ln: ln, reg: reg, log: log, timeout: 10 * time.Second}
}

// Close closes the listening socket of a Listener that will not Serve
// (Serve closes it when its context ends).
func (l *Listener) Close() error { return l.ln.Close() }

// Addr returns the address it listens on.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Serve accepts connections until ctx ends, then closes the listening
// socket and returns once every handshake in progress has ended.
func (l *Listener) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { l.ln.Close() })
	defer stop()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.ln.Close()
			return fmt.Errorf("swarm: accept: %w", err)
		}
		wg.Go(func() { l.route(ctx, nc) })
	}
}

// route reads the handshake head and hands nc to its swarm.
func (l *Listener) route(ctx context.Context, nc net.Conn) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(l.timeout))
	res, h, err := wire.ReadHandshakeHead(nc)
	if !stop() {
		nc.Close()
		return
	}
	if err != nil {
		l.log.Debug("inbound handshake", "peer", nc.RemoteAddr(), "err", err)
		nc.Close()
		return
	}
	s := l.reg.Resolve(h)
	if s == nil {
		l.log.Debug("inbound for unknown info-hash", "peer", nc.RemoteAddr(), "infohash", h)
		nc.Close()
		return
	}
	if err := s.Accept(ctx, nc, res); err != nil {
		l.log.Debug("inbound refused", "err", err)
	}
}
