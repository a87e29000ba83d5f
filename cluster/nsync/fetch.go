package nsync

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/delugefs/delugefs/api"
)

// DefaultFetchTimeout bounds a Fetch whose Options.Timeout is zero.
const DefaultFetchTimeout = time.Minute

// DefaultMaxHaves is the number of our commits a Fetch offers the peer as
// "have" when Options.MaxHaves is zero.
const DefaultMaxHaves = 256

// maxAdvertisement bounds the body of the ref advertisement (GET).
const maxAdvertisement = 1 << 20

// Options tune a Fetch. The zero value is ready to use.
type Options struct {
	// Limits bound what the peer may send; zero fields take DefaultLimits.
	Limits Limits
	// Known are commits to treat as had: when the peer's head is one of
	// them the fetch stops after the advertisement (typically our head and
	// the heads already integrated from this peer).
	Known []plumbing.Hash
	// Haves are commits of ours offered first as "have" (e.g. the last
	// head integrated from this peer, likely in its history); those our
	// repository does not hold are left out.
	Haves []plumbing.Hash
	// MaxHaves bounds the "have" lines sent: Haves, then our history from
	// our refs newest first; 0 means DefaultMaxHaves.
	MaxHaves int
	// Timeout bounds the whole fetch on top of ctx; 0 means
	// DefaultFetchTimeout.
	Timeout time.Duration
}

// Fetched is the outcome of a Fetch: the peer's head and, unless the fetch
// was skipped, the objects received, readable through Store together with
// ours. Close it when done.
type Fetched struct {
	// Head is the commit the peer advertises (zero when its repository
	// has no commit yet).
	Head plumbing.Hash
	// Branch is the peer's branch (HEAD's target), e.g. "refs/heads/main".
	Branch plumbing.ReferenceName
	// Skipped says no pack was requested: Head is zero, Known or already
	// in our repository.
	Skipped bool
	// Objects and Inflated count the objects received and their inflated
	// size; PackBytes is the size of the pack.
	Objects   int
	Inflated  int64
	PackBytes int64
	// Bytes counts the HTTP response bytes received (advertisement and
	// pack, as read off the wire); Requests counts the HTTP requests made.
	Bytes    int64
	Requests int
	// Haves is the number of "have" lines sent.
	Haves int
	// Store reads the objects received, falling back to ours (nil when
	// Skipped). Pass it to meta.Repo.Integrate. Valid until Close.
	Store storer.EncodedObjectStorer

	base *filesystem.Storage
}

// Close releases the storage opened on our repository.
func (f *Fetched) Close() error {
	if f == nil || f.base == nil {
		return nil
	}
	err := f.base.Close()
	f.base = nil
	return err
}

// Fetch asks the peer c for its namespace head and fetches the objects of
// its history we lack. Our repository at gitDir (owned by meta.Repo) is only
// read: a fresh read-only go-git storage is opened on it for this fetch, the
// objects received are kept in memory (Fetched.Store), and nothing is
// written to disk.
//
// Fetch first GETs the peer's ref advertisement; when the advertised head
// is zero, in opts.Known, or a commit we already hold, it stops there
// (Skipped), so a periodic fetch between peers in sync costs one small GET.
// Otherwise it POSTs one upload-pack request that wants the head and offers
// our newest commits as haves, so that only the difference travels; checks
// the pack (limits, checksum) before decoding it; and checks that every
// object received refers only to objects received or ours, so the history
// of Head is whole.
func Fetch(ctx context.Context, c *api.Client, gitDir string, opts Options) (*Fetched, error) {
	lim := opts.Limits.orDefault(DefaultLimits)
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	m := newMeter(c, lim)
	sess, ar, err := advertisement(ctx, c, m)
	f := &Fetched{}
	defer func() { f.Bytes, f.Requests = m.bytes.Load(), int(m.requests.Load()) }()
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		f.Skipped = true
		return f, nil
	}
	if err != nil {
		return nil, err
	}
	if f.Head, f.Branch, err = advertisedHead(ar); err != nil {
		return nil, fmt.Errorf("nsync: fetch from %s: %w", c.GitURL(), err)
	}
	for _, k := range opts.Known {
		if k == f.Head {
			f.Skipped = true
			return f, nil
		}
	}

	sto := filesystem.NewStorage(osfs.New(gitDir), cache.NewObjectLRU(4<<20))
	if sto.HasEncodedObject(f.Head) == nil {
		sto.Close()
		f.Skipped = true
		return f, nil
	}
	ok := false
	defer func() {
		if !ok {
			sto.Close()
		}
	}()

	maxHaves := opts.MaxHaves
	if maxHaves <= 0 {
		maxHaves = DefaultMaxHaves
	}
	haves := ourHaves(sto, opts.Haves, maxHaves)
	f.Haves = len(haves)
	pack, err := uploadPack(ctx, sess, ar, f.Head, haves, lim)
	if err != nil {
		return nil, fmt.Errorf("nsync: fetch %s from %s: %w", f.Head, c.GitURL(), err)
	}
	f.PackBytes = int64(len(pack))
	ov, err := decodePack(pack, sto, lim, f.Head)
	if err != nil {
		return nil, fmt.Errorf("nsync: fetch %s from %s: %w", f.Head, c.GitURL(), err)
	}
	f.Objects, f.Inflated = ov.counts()
	f.Store, f.base, ok = ov, sto, true
	return f, nil
}

// advertisement opens an upload-pack session on the peer and GETs its refs.
func advertisement(ctx context.Context, c *api.Client, m *meter) (transport.UploadPackSession, *packp.AdvRefs, error) {
	ep, err := transport.NewEndpoint(c.GitURL())
	if err != nil {
		return nil, nil, fmt.Errorf("nsync: peer URL %q: %w", c.GitURL(), err)
	}
	hc := &http.Client{Transport: m, CheckRedirect: func(*http.Request, []*http.Request) error {
		return errors.New("nsync: peers do not redirect")
	}}
	sess, err := githttp.NewClient(hc).NewUploadPackSession(ep, c.GitAuth())
	if err != nil {
		return nil, nil, fmt.Errorf("nsync: upload-pack session with %s: %w", c.GitURL(), err)
	}
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return sess, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("nsync: list refs of %s: %w", c.GitURL(), httpError(ctx, err))
	}
	return sess, ar, nil
}

// advertisedHead picks the commit to fetch from an advertisement: HEAD, or
// refs/heads/main when HEAD is not advertised.
func advertisedHead(ar *packp.AdvRefs) (plumbing.Hash, plumbing.ReferenceName, error) {
	branch := plumbing.NewBranchReferenceName("main")
	for _, v := range ar.Capabilities.Get(capability.SymRef) {
		if t, ok := strings.CutPrefix(v, "HEAD:"); ok && strings.HasPrefix(t, "refs/heads/") {
			branch = plumbing.ReferenceName(t)
		}
	}
	if h, ok := ar.References[branch.String()]; ok && !h.IsZero() {
		return h, branch, nil
	}
	if ar.Head != nil && !ar.Head.IsZero() {
		return *ar.Head, branch, nil
	}
	return plumbing.ZeroHash, "", ErrNoHead
}

// uploadPack POSTs one upload-pack request and returns the pack, read
// whole into memory within lim.PackBytes.
func uploadPack(ctx context.Context, sess transport.UploadPackSession, ar *packp.AdvRefs, want plumbing.Hash, haves []plumbing.Hash, lim Limits) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := receivePack(ctx, sess, ar, want, haves, lim, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// receivePack POSTs one upload-pack request and copies the pack (side-band
// removed) into dst, failing past lim.PackBytes.
func receivePack(ctx context.Context, sess transport.UploadPackSession, ar *packp.AdvRefs, want plumbing.Hash, haves []plumbing.Hash, lim Limits, dst io.Writer) (int64, error) {
	req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	if ar.Capabilities.Supports(capability.NoProgress) {
		if err := req.Capabilities.Set(capability.NoProgress); err != nil {
			return 0, err
		}
	}
	req.Wants = []plumbing.Hash{want}
	req.Haves = haves
	res, err := sess.UploadPack(ctx, req)
	if err != nil {
		if strings.Contains(err.Error(), "decoding upload-pack response") {
			// go-git formats the cause with %s: only the text is left.
			err = fmt.Errorf("%w: %w", ErrBadPack, err)
		}
		return 0, fmt.Errorf("upload-pack: %w", httpError(ctx, err))
	}
	defer res.Close()
	var r io.Reader = res
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		r = sideband.NewDemuxer(sideband.Sideband64k, res)
	case req.Capabilities.Supports(capability.Sideband):
		r = sideband.NewDemuxer(sideband.Sideband, res)
	}
	n, err := io.Copy(dst, io.LimitReader(r, lim.PackBytes+1))
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return n, err
		}
		return n, fmt.Errorf("%w: read pack: %w", ErrBadPack, httpError(ctx, err))
	}
	if n > lim.PackBytes {
		return n, fmt.Errorf("%w: pack larger than %d bytes", ErrTooLarge, lim.PackBytes)
	}
	return n, nil
}

// httpError adds the api sentinel matching a go-git transport error, and
// the context's error when the context ended.
func httpError(ctx context.Context, err error) error {
	var ue *plumbing.UnexpectedError
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err // it has no Unwrap
	}
	var he *githttp.Err
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return fmt.Errorf("%w (wrong volume key?): %w", api.ErrUnauthorized, err)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fmt.Errorf("%w: %w", api.ErrNotFound, err)
	case errors.As(err, &he) && he.StatusCode() >= 500:
		return fmt.Errorf("%w: %w", api.ErrServer, err)
	case errors.As(err, &he):
		return fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// Unreachable says whether err (from Fetch, Clone or a Syncer's
// OnFailure) means the peer could not be reached or did not answer in
// time (refused or reset connection, no route, timeout), as opposed to a
// peer that answered wrongly (wrong token, bad pack, failed integration).
func Unreachable(err error) bool {
	var op *net.OpError
	var ne net.Error
	return errors.As(err, &op) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

// ourHaves lists the commits offered as "have": the hints we hold, then
// our history from every ref, newest commit first (by committer time),
// at most max in all.
func ourHaves(sto *filesystem.Storage, hints []plumbing.Hash, max int) []plumbing.Hash {
	seen := map[plumbing.Hash]bool{}
	var out []plumbing.Hash
	var q commitQueue
	push := func(h plumbing.Hash) {
		if seen[h] {
			return
		}
		seen[h] = true
		c, err := object.GetCommit(sto, h)
		if err != nil {
			return // not ours, or unreadable: never claim it
		}
		heap.Push(&q, c)
	}
	for _, h := range hints {
		if len(out) < max && !seen[h] && sto.HasEncodedObject(h) == nil {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, h := range hints {
		if c, err := object.GetCommit(sto, h); err == nil {
			for _, p := range c.ParentHashes {
				push(p)
			}
		}
	}
	if refs, err := sto.IterReferences(); err == nil {
		refs.ForEach(func(r *plumbing.Reference) error {
			if r.Type() == plumbing.HashReference && strings.HasPrefix(r.Name().String(), "refs/") {
				push(r.Hash())
			}
			return nil
		})
	}
	if head, err := storer.ResolveReference(sto, plumbing.HEAD); err == nil {
		push(head.Hash())
	}
	for q.Len() > 0 && len(out) < max {
		c := heap.Pop(&q).(*object.Commit)
		out = append(out, c.Hash)
		for _, p := range c.ParentHashes {
			push(p)
		}
	}
	return out
}

// commitQueue is a max-heap of commits by committer time.
type commitQueue []*object.Commit

func (q commitQueue) Len() int { return len(q) }
func (q commitQueue) Less(i, j int) bool {
	return q[i].Committer.When.After(q[j].Committer.When)
}
func (q commitQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *commitQueue) Push(x any)   { *q = append(*q, x.(*object.Commit)) }
func (q *commitQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}

// defaultTransport is the HTTP transport of clients without their own: no
// proxy (peers are on the LAN), bounded dials, kept-alive connections.
var defaultTransport = &http.Transport{
	Proxy:                 nil,
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	MaxIdleConnsPerHost:   4,
	IdleConnTimeout:       90 * time.Second,
	ExpectContinueTimeout: time.Second,
}

// meter is the RoundTripper of one fetch: it counts requests and response
// bytes and bounds each response body (the advertisement to
// maxAdvertisement, the pack response to the pack limit plus framing).
type meter struct {
	base     http.RoundTripper
	maxGet   int64
	maxPost  int64
	bytes    atomic.Int64
	requests atomic.Int32
}

func newMeter(c *api.Client, lim Limits) *meter {
	var base http.RoundTripper = defaultTransport
	if c.HTTP != nil && c.HTTP.Transport != nil {
		base = c.HTTP.Transport
	}
	// Side-band-64k adds 5 bytes per 65,515; ACK/NAK lines and progress
	// fit in the megabyte of slack.
	return &meter{base: base, maxGet: maxAdvertisement, maxPost: lim.PackBytes + lim.PackBytes/1024 + 1<<20}
}

// RoundTrip sends req and wraps the response body.
func (m *meter) RoundTrip(req *http.Request) (*http.Response, error) {
	m.requests.Add(1)
	res, err := m.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	limit := m.maxGet
	if req.Method == http.MethodPost {
		limit = m.maxPost
	}
	res.Body = &meteredBody{rc: res.Body, left: limit, m: m}
	return res, nil
}

// meteredBody counts the bytes read and fails past its limit.
type meteredBody struct {
	rc   io.ReadCloser
	left int64
	m    *meter
}

func (b *meteredBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Tell a body that ends exactly at the limit from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n == 0 {
			return 0, err
		}
		return 0, fmt.Errorf("%w: response body larger than the limit", ErrTooLarge)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	b.m.bytes.Add(int64(n))
	return n, err
}

func (b *meteredBody) Close() error { return b.rc.Close() }
