package api

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/go-git/go-git/v5/plumbing"
)

// ErrNotImplemented is what a Handler returns for a call it does not
// serve; the client sees 501.
var ErrNotImplemented = errors.New("api: not implemented")

// Handler is what a node gives the Server for its volume: the seams of the
// control calls. Methods are called concurrently, from request goroutines,
// with a context that ends when the client goes away; they must not block
// for long (Notify should queue the fetch and return).
type Handler interface {
	// Notify is called when a peer says its namespace head is now n.Head
	// (the namespace-sync seam).
	Notify(ctx context.Context, n Notice) error
	// Have returns the complete blobs of this process's nodes of the
	// volume.
	Have(ctx context.Context) ([]NodeHave, error)
	// Space returns the free and total bytes of each disk.
	Space(ctx context.Context) ([]Disk, error)
	// Status returns the state of the volume on this process (the server
	// fills in Volume).
	Status(ctx context.Context) (*VolumeStatus, error)
}

// HandlerFuncs is a Handler made of functions; a nil one answers
// ErrNotImplemented (501).
type HandlerFuncs struct {
	NotifyFunc func(ctx context.Context, n Notice) error
	HaveFunc   func(ctx context.Context) ([]NodeHave, error)
	SpaceFunc  func(ctx context.Context) ([]Disk, error)
	StatusFunc func(ctx context.Context) (*VolumeStatus, error)
}

// Notify calls NotifyFunc.
func (h HandlerFuncs) Notify(ctx context.Context, n Notice) error {
	if h.NotifyFunc == nil {
		return ErrNotImplemented
	}
	return h.NotifyFunc(ctx, n)
}

// Have calls HaveFunc.
func (h HandlerFuncs) Have(ctx context.Context) ([]NodeHave, error) {
	if h.HaveFunc == nil {
		return nil, ErrNotImplemented
	}
	return h.HaveFunc(ctx)
}

// Space calls SpaceFunc.
func (h HandlerFuncs) Space(ctx context.Context) ([]Disk, error) {
	if h.SpaceFunc == nil {
		return nil, ErrNotImplemented
	}
	return h.SpaceFunc(ctx)
}

// Status calls StatusFunc.
func (h HandlerFuncs) Status(ctx context.Context) (*VolumeStatus, error) {
	if h.StatusFunc == nil {
		return nil, ErrNotImplemented
	}
	return h.StatusFunc(ctx)
}

// Notice is a peer's "my head is now Head".
type Notice struct {
	// Node is the sending node's id.
	Node string `json:"node"`
	// Head is the sender's namespace commit.
	Head plumbing.Hash `json:"-"`
	// Addr is the sender's API address ("host:port") where /git/<volume>
	// serves Head; the server replaces an empty or unspecified host by the
	// connection's remote address. Empty when the sender did not say.
	Addr string `json:"addr,omitempty"`
	// Remote is the connection's remote address, set by the server.
	Remote string `json:"-"`
}

// noticeJSON is the wire form of a Notice.
type noticeJSON struct {
	Node string `json:"node"`
	Head string `json:"head"` // 40 hex digits
	Addr string `json:"addr,omitempty"`
}

// NodeHave is one node's complete blobs.
type NodeHave struct {
	Node   string        `json:"node"`
	Hashes []bt.InfoHash `json:"-"`
}

// Disk is the space of one node's disk.
type Disk struct {
	Node  string `json:"node"`
	Root  string `json:"root,omitempty"`
	Total uint64 `json:"total"`
	Free  uint64 `json:"free"`
}

// StatusReport is the answer of GET /status: every volume the caller's
// credentials open on this process.
type StatusReport struct {
	Time    time.Time      `json:"time"`
	Volumes []VolumeStatus `json:"volumes"`
}

// VolumeStatus is the state of one volume on this process.
type VolumeStatus struct {
	Volume string `json:"volume"`
	// Head is the namespace commit (hex) this process serves.
	Head string `json:"head,omitempty"`
	// Files is the number of files in the namespace.
	Files int `json:"files"`
	// Bytes is the total size of the files.
	Bytes int64         `json:"bytes"`
	Nodes []NodeStatus  `json:"nodes"`
	Peers []PeerStatus  `json:"peers"`
	Swarm []SwarmStatus `json:"swarms"`
	// Copies lists files by copy count, as the node chooses (e.g. the
	// under-replicated ones, or all of them when few).
	Copies []FileCopies `json:"copies,omitempty"`
	// Error is set (by the server, in /status) when the node could not
	// report on the volume; the other fields are then empty.
	Error string `json:"error,omitempty"`
}

// NodeStatus is one local node (one disk) of the volume.
type NodeStatus struct {
	ID    string `json:"id"`
	Root  string `json:"root,omitempty"`
	Head  string `json:"head,omitempty"`
	Blobs int    `json:"blobs"` // complete blobs on this disk
	Total uint64 `json:"total"`
	Free  uint64 `json:"free"`
	// BT is the node's BitTorrent listen address (host:port, the host
	// empty when it listens on every address): peers given by hand learn
	// where to fetch blobs from it.
	BT string `json:"bt,omitempty"`
	// Error says why the node refuses changes (its namespace journal's
	// barrier failed: the disk is failing; restart the node).
	Error string `json:"error,omitempty"`
}

// PeerStatus is a remote node as this process sees it.
type PeerStatus struct {
	Node     string    `json:"node"`
	Addr     string    `json:"addr"`         // API address
	BTAddr   string    `json:"bt,omitempty"` // BitTorrent address
	Host     string    `json:"host,omitempty"`
	Alive    bool      `json:"alive"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Head     string    `json:"head,omitempty"`
	Total    uint64    `json:"total"`
	Free     uint64    `json:"free"`
}

// SwarmStatus is one active blob download or seed.
type SwarmStatus struct {
	InfoHash string  `json:"infohash"`
	Path     string  `json:"path,omitempty"`
	Size     int64   `json:"size"`
	Pieces   int     `json:"pieces"`
	Have     int     `json:"have"`     // verified pieces
	Progress float64 `json:"progress"` // Have/Pieces, 0..1
	Peers    int     `json:"peers"`
	Seeding  bool    `json:"seeding"`
	Down     int64   `json:"down_bps"` // bytes per second
	Up       int64   `json:"up_bps"`
}

// FileCopies is a file's replication state.
type FileCopies struct {
	Path     string   `json:"path"`
	InfoHash string   `json:"infohash,omitempty"`
	Size     int64    `json:"size"`
	Copies   int      `json:"copies"`
	Holders  []string `json:"holders,omitempty"`
}

// emptyRequest is the body of have and space: nothing, or {}.
type emptyRequest struct{}

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (s *Server) handleNotify(w http.ResponseWriter, r *http.Request, v *volume) {
	var in noticeJSON
	if !s.decodeJSON(w, r, &in, false) {
		return
	}
	n, err := parseNotice(in, r.RemoteAddr)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := v.Handler.Notify(r.Context(), n); err != nil {
		s.handlerError(w, r, "notify", err)
		return
	}
	s.metrics.notices.Inc()
	w.WriteHeader(http.StatusNoContent)
}

// parseNotice checks a notice from the wire.
func parseNotice(in noticeJSON, remote string) (Notice, error) {
	if !nodeIDPattern.MatchString(in.Node) {
		return Notice{}, errors.New("api: notice: invalid node id")
	}
	if len(in.Head) != 40 {
		return Notice{}, errors.New("api: notice: head must be 40 hex digits")
	}
	if _, err := hex.DecodeString(in.Head); err != nil {
		return Notice{}, errors.New("api: notice: head must be 40 hex digits")
	}
	n := Notice{Node: in.Node, Head: plumbing.NewHash(in.Head), Remote: remote}
	if in.Addr != "" {
		addr, err := fillHost(in.Addr, remote)
		if err != nil {
			return Notice{}, fmt.Errorf("api: notice: addr: %w", err)
		}
		n.Addr = addr
	}
	return n, nil
}

// fillHost checks a "host:port" and replaces an empty or unspecified host
// by remote's.
func fillHost(addr, remote string) (string, error) {
	if len(addr) > 300 {
		return "", errors.New("too long")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return "", fmt.Errorf("bad port %q", port)
	}
	ip := net.ParseIP(host)
	if host == "" || (ip != nil && ip.IsUnspecified()) {
		rh, _, err := net.SplitHostPort(remote)
		if err != nil {
			return "", fmt.Errorf("no remote host: %w", err)
		}
		host = rh
	} else if ip == nil && !hostnamePattern.MatchString(host) {
		return "", fmt.Errorf("bad host %q", host)
	}
	return net.JoinHostPort(host, port), nil
}

var hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)

func (s *Server) handleHave(w http.ResponseWriter, r *http.Request, v *volume) {
	var in emptyRequest
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	haves, err := v.Handler.Have(r.Context())
	if err != nil {
		s.handlerError(w, r, "have", err)
		return
	}
	// Streamed: {"volume":"v","nodes":[{"node":"n","hashes":["hex",...]},...]}
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 32<<10)
	vol, _ := json.Marshal(v.ID)
	fmt.Fprintf(bw, `{"volume":%s,"nodes":[`, vol)
	var hx [2 * len(bt.InfoHash{})]byte
	for i, nh := range haves {
		if i > 0 {
			bw.WriteByte(',')
		}
		node, _ := json.Marshal(nh.Node)
		fmt.Fprintf(bw, `{"node":%s,"hashes":[`, node)
		for j, h := range nh.Hashes {
			if j > 0 {
				bw.WriteByte(',')
			}
			hex.Encode(hx[:], h[:])
			bw.WriteByte('"')
			bw.Write(hx[:])
			bw.WriteByte('"')
		}
		bw.WriteString("]}")
	}
	bw.WriteString("]}\n")
	if err := bw.Flush(); err != nil {
		s.log.Debug("api: have: write", "remote", r.RemoteAddr, "err", err)
	}
}

// spaceReply is the answer of /v1/<volume>/space.
type spaceReply struct {
	Volume string `json:"volume"`
	Disks  []Disk `json:"disks"`
}

func (s *Server) handleSpace(w http.ResponseWriter, r *http.Request, v *volume) {
	var in emptyRequest
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	disks, err := v.Handler.Space(r.Context())
	if err != nil {
		s.handlerError(w, r, "space", err)
		return
	}
	if disks == nil {
		disks = []Disk{}
	}
	writeJSON(w, http.StatusOK, spaceReply{Volume: v.ID, Disks: disks})
}

func (s *Server) volumeStatus(ctx context.Context, v *volume) (VolumeStatus, error) {
	st, err := v.Handler.Status(ctx)
	if err != nil {
		return VolumeStatus{}, err
	}
	if st == nil {
		st = &VolumeStatus{}
	}
	out := *st
	out.Volume = v.ID
	if out.Nodes == nil {
		out.Nodes = []NodeStatus{}
	}
	if out.Peers == nil {
		out.Peers = []PeerStatus{}
	}
	if out.Swarm == nil {
		out.Swarm = []SwarmStatus{}
	}
	return out, nil
}

func (s *Server) handleVolumeStatus(w http.ResponseWriter, r *http.Request, v *volume) {
	st, err := s.volumeStatus(r.Context(), v)
	if err != nil {
		s.handlerError(w, r, "status", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	rep := StatusReport{Time: time.Now().UTC(), Volumes: []VolumeStatus{}}
	for _, v := range s.authorized(r) {
		st, err := s.volumeStatus(r.Context(), v)
		if err != nil {
			// One volume that cannot answer does not hide the others.
			st = VolumeStatus{Volume: v.ID, Nodes: []NodeStatus{}, Peers: []PeerStatus{}, Swarm: []SwarmStatus{}, Error: err.Error()}
		}
		rep.Volumes = append(rep.Volumes, st)
	}
	writeJSON(w, http.StatusOK, rep)
}

// decodeJSON reads r's body into v strictly: bounded size, JSON content
// type, no unknown fields, one value. An empty body is accepted (as {})
// when emptyOK. It writes the 4xx and returns false on failure.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "api: content type must be application/json")
			return false
		}
	}
	if r.Header.Get("Content-Encoding") != "" {
		writeError(w, http.StatusUnsupportedMediaType, "api: content encoding not supported")
		return false
	}
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == io.EOF && emptyOK {
		return true
	}
	if err == nil {
		// Exactly one value: anything but white space after it is an error.
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("trailing data after the JSON value")
			if err2 != nil && !isSyntaxOrEOF(err2) {
				err = err2
			}
		}
	}
	if err == nil {
		return true
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("api: request body larger than %d bytes", mbe.Limit))
	case err == io.EOF:
		writeError(w, http.StatusBadRequest, "api: empty request body")
	default:
		writeError(w, http.StatusBadRequest, "api: malformed request: "+err.Error())
	}
	return false
}

func isSyntaxOrEOF(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF)
}

// handlerError answers a Handler's error.
func (s *Server) handlerError(w http.ResponseWriter, r *http.Request, call string, err error) {
	switch {
	case errors.Is(err, ErrNotImplemented):
		writeError(w, http.StatusNotImplemented, "api: "+call+" not implemented by this node")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "api: "+call+": "+err.Error())
	default:
		s.log.Warn("api: handler failed", "call", call, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusInternalServerError, "api: "+call+": "+err.Error())
	}
}

// errorReply is the body of every error answer.
type errorReply struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorReply{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		data, _ = json.Marshal(errorReply{Error: "api: encode reply: " + err.Error()})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)+1))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(data, '\n'))
}
