package api

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Agent is the agent= capability this server advertises.
const Agent = "delugefs/1"

// maxHaves bounds the "have" lines of one upload-pack request.
const maxHaves = 100_000

// openGit opens a private read-only view of a volume's repository, or
// answers 404 and returns nil when the volume has none (yet).
func openGit(w http.ResponseWriter, v *volume) *filesystem.Storage {
	if v.GitDir == "" {
		writeError(w, http.StatusNotFound, "api: no git repository for this volume")
		return nil
	}
	if _, err := os.Stat(filepath.Join(v.GitDir, "HEAD")); err != nil {
		writeError(w, http.StatusNotFound, "api: the volume's git repository is missing")
		return nil
	}
	return filesystem.NewStorage(osfs.New(v.GitDir), cache.NewObjectLRU(4<<20))
}

func (s *Server) handleInfoRefs(w http.ResponseWriter, r *http.Request, v *volume) {
	switch r.URL.Query().Get("service") {
	case "git-upload-pack":
	case "git-receive-pack":
		writeError(w, http.StatusForbidden, "api: the namespace is read-only: push is refused")
		return
	default:
		writeError(w, http.StatusForbidden, "api: only git's smart HTTP upload-pack is served")
		return
	}
	sto := openGit(w, v)
	if sto == nil {
		return
	}
	defer sto.Close()
	ar, err := advertise(sto)
	if err != nil {
		s.log.Warn("api: advertise refs", "volume", v.ID, "err", err)
		writeError(w, http.StatusInternalServerError, "api: read refs: "+err.Error())
		return
	}
	ar.Prefix = [][]byte{[]byte("# service=git-upload-pack"), pktline.Flush}
	var buf bytes.Buffer
	if err := ar.Encode(&buf); err != nil {
		writeError(w, http.StatusInternalServerError, "api: encode refs: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-git-upload-pack-advertisement")
	h.Set("Cache-Control", "no-cache")
	w.Write(buf.Bytes())
}

// advertise lists the repository's refs and our capabilities.
func advertise(sto *filesystem.Storage) (*packp.AdvRefs, error) {
	ar := packp.NewAdvRefs()
	c := ar.Capabilities
	for _, cp := range []capability.Capability{
		capability.MultiACKDetailed, capability.MultiACK,
		capability.Sideband64k, capability.Sideband,
		capability.OFSDelta, capability.NoProgress,
	} {
		if err := c.Set(cp); err != nil {
			return nil, err
		}
	}
	if err := c.Set(capability.Agent, Agent); err != nil {
		return nil, err
	}
	iter, err := sto.IterReferences()
	if err != nil {
		return nil, fmt.Errorf("list refs: %w", err)
	}
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() == plumbing.HashReference && strings.HasPrefix(ref.Name().String(), "refs/") {
			ar.References[ref.Name().String()] = ref.Hash()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list refs: %w", err)
	}
	head, err := sto.Reference(plumbing.HEAD)
	switch {
	case errors.Is(err, plumbing.ErrReferenceNotFound):
	case err != nil:
		return nil, fmt.Errorf("read HEAD: %w", err)
	case head.Type() == plumbing.SymbolicReference:
		if h, ok := ar.References[head.Target().String()]; ok {
			ar.Head = &h
			if err := c.Add(capability.SymRef, "HEAD:"+head.Target().String()); err != nil {
				return nil, err
			}
		}
	default:
		h := head.Hash()
		ar.Head = &h
	}
	return ar, nil
}

func (s *Server) handleReceivePack(w http.ResponseWriter, r *http.Request, v *volume) {
	writeError(w, http.StatusForbidden, "api: the namespace is read-only: push is refused")
}

// uploadRequest is one stateless upload-pack request (protocol v0/v1).
type uploadRequest struct {
	wants []plumbing.Hash
	haves []plumbing.Hash
	caps  map[string]bool // capability names, values dropped
	done  bool
}

// parseUploadRequest reads "want" lines, a flush, "have" lines, and a
// flush (a negotiation round) or "done" (send the pack).
func parseUploadRequest(r io.Reader) (*uploadRequest, error) {
	pr := &pktReader{r: bufio.NewReaderSize(r, 8<<10)}
	req := &uploadRequest{caps: map[string]bool{}}
	for {
		line, flush, err := pr.next()
		if err != nil {
			return nil, err
		}
		if flush {
			break
		}
		rest, ok := bytes.CutPrefix(line, []byte("want "))
		if !ok {
			word, _, _ := bytes.Cut(line, []byte(" "))
			switch string(word) {
			case "shallow", "deepen", "deepen-since", "deepen-not", "filter":
				return nil, fmt.Errorf("%q is not supported (shallow and partial clones)", word)
			}
			return nil, fmt.Errorf("expected a want line, got %.40q", line)
		}
		h, tail, err := parseHashPrefix(rest)
		if err != nil {
			return nil, fmt.Errorf("want: %w", err)
		}
		if len(req.wants) == 0 {
			for _, c := range strings.Fields(string(tail)) {
				name, _, _ := strings.Cut(c, "=")
				req.caps[name] = true
			}
		} else if len(bytes.TrimSpace(tail)) > 0 {
			return nil, errors.New("capabilities after the first want line")
		}
		if len(req.wants) >= maxHaves {
			return nil, errors.New("too many want lines")
		}
		req.wants = append(req.wants, h)
	}
	if len(req.wants) == 0 {
		return nil, errors.New("no want line")
	}
	for {
		line, flush, err := pr.next()
		if err == io.EOF && len(req.haves) == 0 {
			// go-git and git send "done" or a flush; a bare end after the
			// wants is treated as done.
			req.done = true
			return req, nil
		}
		if err != nil {
			return nil, err
		}
		if flush {
			return req, nil
		}
		if string(bytes.TrimSuffix(line, []byte("\n"))) == "done" {
			req.done = true
			return req, nil
		}
		rest, ok := bytes.CutPrefix(line, []byte("have "))
		if !ok {
			return nil, fmt.Errorf("expected a have line, got %.40q", line)
		}
		h, tail, err := parseHashPrefix(rest)
		if err != nil || len(bytes.TrimSpace(tail)) > 0 {
			return nil, fmt.Errorf("bad have line %.60q", line)
		}
		if len(req.haves) >= maxHaves {
			return nil, errors.New("too many have lines")
		}
		req.haves = append(req.haves, h)
	}
}

// parseHashPrefix parses 40 lower-case hex digits at the start of b.
func parseHashPrefix(b []byte) (plumbing.Hash, []byte, error) {
	if len(b) < 40 {
		return plumbing.ZeroHash, nil, errors.New("short object id")
	}
	for _, c := range b[:40] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return plumbing.ZeroHash, nil, errors.New("bad object id")
		}
	}
	tail := b[40:]
	if len(tail) > 0 && tail[0] != ' ' && tail[0] != '\n' {
		return plumbing.ZeroHash, nil, errors.New("bad object id")
	}
	return plumbing.NewHash(string(b[:40])), tail, nil
}

// pktReader reads git pkt-lines.
type pktReader struct {
	r   *bufio.Reader
	buf [65520]byte
}

// next returns the next payload (valid until the next call), or flush.
func (p *pktReader) next() (line []byte, flush bool, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(p.r, hdr[:]); err != nil {
		return nil, false, truncated(err)
	}
	n := 0
	for _, c := range hdr {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return nil, false, fmt.Errorf("bad pkt-line length %q", hdr[:])
		}
		n = n<<4 | int(d)
	}
	switch {
	case n == 0:
		return nil, true, nil
	case n < 4 || n > len(p.buf):
		return nil, false, fmt.Errorf("bad pkt-line length %d", n)
	}
	line = p.buf[:n-4]
	if _, err := io.ReadFull(p.r, line); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, false, truncated(err)
	}
	return line, false, nil
}

// truncated names an end of input inside a pkt-line; other errors (the
// size limit) pass through.
func truncated(err error) error {
	if err == io.ErrUnexpectedEOF {
		return errors.New("truncated pkt-line")
	}
	return err
}

// gitBody returns the request body, bounded, gunzipped when git sent it
// compressed.
func (s *Server) gitBody(w http.ResponseWriter, r *http.Request) (io.Reader, error) {
	body := io.Reader(http.MaxBytesReader(w, r.Body, s.opts.MaxGitBody))
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return &limitReader{r: zr, n: s.opts.MaxGitBody}, nil
	default:
		return nil, errUnsupportedEncoding
	}
}

var errUnsupportedEncoding = errors.New("unsupported content encoding")

// limitReader fails (instead of ending) after n bytes.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, &http.MaxBytesError{}
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func (s *Server) handleUploadPack(w http.ResponseWriter, r *http.Request, v *volume) {
	sto := openGit(w, v)
	if sto == nil {
		return
	}
	defer sto.Close()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/x-git-upload-pack-request" {
			writeError(w, http.StatusUnsupportedMediaType, "api: content type must be application/x-git-upload-pack-request")
			return
		}
	}
	body, err := s.gitBody(w, r)
	if errors.Is(err, errUnsupportedEncoding) {
		writeError(w, http.StatusUnsupportedMediaType, "api: "+err.Error())
		return
	}
	var req *uploadRequest
	if err == nil {
		req, err = parseUploadRequest(body)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("api: upload-pack request larger than %d bytes", s.opts.MaxGitBody))
			return
		}
		writeError(w, http.StatusBadRequest, "api: upload-pack request: "+err.Error())
		return
	}

	h := w.Header()
	h.Set("Content-Type", "application/x-git-upload-pack-result")
	h.Set("Cache-Control", "no-cache")
	dw := &deadlineWriter{w: w, rc: http.NewResponseController(w), d: s.opts.WriteTimeout}
	bw := bufio.NewWriterSize(dw, 64<<10)
	pkt := pktline.NewEncoder(bw)
	defer func() {
		if err := bw.Flush(); err != nil {
			s.log.Debug("api: upload-pack: write", "remote", r.RemoteAddr, "err", err)
		}
	}()

	for _, want := range req.wants {
		if _, err := sto.EncodedObject(plumbing.CommitObject, want); err != nil {
			// The namespace writer may have rewritten packs between the ref
			// advertisement (the previous request) and this one: look again
			// in a fresh view of the repository before refusing.
			fresh := filesystem.NewStorage(osfs.New(v.GitDir), cache.NewObjectLRU(4<<20))
			if _, err := fresh.EncodedObject(plumbing.CommitObject, want); err != nil {
				s.log.Debug("api: upload-pack: unknown want", "want", want, "err", err)
				pkt.Encodef("ERR upload-pack: not our ref %s\n", want)
				return
			}
			sto = fresh
		}
	}
	// Negotiation (upload-pack.c, stateless): acknowledge the haves we hold.
	detailed, multi := req.caps["multi_ack_detailed"], req.caps["multi_ack"]
	var common []plumbing.Hash
	for _, have := range req.haves {
		if sto.HasEncodedObject(have) != nil {
			continue
		}
		common = append(common, have)
		switch {
		case detailed:
			pkt.Encodef("ACK %s common\n", have)
		case multi:
			pkt.Encodef("ACK %s continue\n", have)
		case len(common) == 1:
			pkt.Encodef("ACK %s\n", have)
		}
	}
	if !req.done {
		// End of a round: the client sends more haves or "done" next.
		if len(common) == 0 || detailed || multi {
			pkt.Encodef("NAK\n")
		}
		return
	}
	switch {
	case len(common) == 0:
		pkt.Encodef("NAK\n")
	case detailed || multi:
		pkt.Encodef("ACK %s\n", common[len(common)-1])
	}

	select {
	case s.packs <- struct{}{}:
		defer func() { <-s.packs }()
	case <-r.Context().Done():
		return
	}
	sb := req.caps["side-band-64k"] || req.caps["side-band"]
	var out io.Writer = bw
	if sb {
		max := 65515
		if !req.caps["side-band-64k"] {
			max = 999
		}
		out = &sidebandWriter{w: bw, max: max}
	}
	cw := &countWriter{w: out}
	objs, err := objectsToSend(r.Context(), sto, req.wants, common)
	if err == nil {
		s.metrics.packObjects.Add(float64(len(objs)))
		_, err = packfile.NewEncoder(cw, sto, !req.caps["ofs-delta"]).Encode(objs, uint(s.opts.PackWindow))
	}
	s.metrics.packBytes.Add(float64(cw.n))
	if err != nil {
		s.log.Warn("api: upload-pack", "volume", v.ID, "remote", r.RemoteAddr, "err", err)
		if sb {
			(&sidebandWriter{w: bw, max: 999, band: 3}).Write([]byte("error: delugefs: " + err.Error() + "\n"))
		}
		return
	}
	if sb {
		pkt.Flush()
	}
}

// sidebandWriter frames data into side-band pkt-lines (band 1 unless
// set).
type sidebandWriter struct {
	w    io.Writer
	max  int // data bytes per pkt-line
	band byte
}

func (s *sidebandWriter) Write(p []byte) (int, error) {
	band := s.band
	if band == 0 {
		band = 1
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), s.max)
		var hdr [5]byte
		_ = fmt.Appendf(hdr[:0], "%04x", n+5)
		hdr[4] = band
		if _, err := s.w.Write(hdr[:]); err != nil {
			return written, err
		}
		if _, err := s.w.Write(p[:n]); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// countWriter counts bytes written.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// deadlineWriter pushes the connection's write deadline forward before
// each write, so a long pack is bounded per write, not in total.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
	d  time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.rc.SetWriteDeadline(time.Now().Add(d.d))
	return d.w.Write(p)
}
