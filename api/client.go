package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/delugefs/delugefs/bt"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// Sentinels a client's errors match (errors.Is) by HTTP status.
var (
	ErrUnauthorized  = errors.New("api: unauthorized")    // 401: wrong or missing token
	ErrNotFound      = errors.New("api: not found")       // 404: unknown volume or endpoint
	ErrBadRequest    = errors.New("api: bad request")     // other 4xx
	ErrServer        = errors.New("api: server error")    // 5xx
	ErrUnimplemented = errors.New("api: not implemented") // 501
)

// StatusError is a non-2xx answer.
type StatusError struct {
	Code int    // HTTP status
	Msg  string // the server's error message
}

// Error returns the code and message.
func (e *StatusError) Error() string {
	return fmt.Sprintf("api: HTTP %d: %s", e.Code, e.Msg)
}

// Is matches the sentinel of e's status class.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Code == http.StatusUnauthorized
	case ErrNotFound:
		return e.Code == http.StatusNotFound
	case ErrUnimplemented:
		return e.Code == http.StatusNotImplemented
	case ErrBadRequest:
		return e.Code >= 400 && e.Code < 500 && e.Code != http.StatusUnauthorized && e.Code != http.StatusNotFound
	case ErrServer:
		return e.Code >= 500
	}
	return false
}

// DefaultTimeout bounds each Client call when Client.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// maxReply bounds a reply body (the have list is the largest: 64 MiB is
// about 1.5 million blobs).
const maxReply = 64 << 20

// Client calls another process's API. The zero value is not usable: set
// Base and Token (and Volume for the volume calls). A Client is safe for
// concurrent use.
type Client struct {
	// Base is the server's URL, "http://host:port".
	Base string
	// Token is Token(volume key).
	Token string
	// Volume is the volume id of Notify, Have, Space and GitURL.
	Volume string
	// User is the Basic auth user name; empty means DefaultUser (nodes
	// send their node id).
	User string
	// HTTP is the client used; nil means one without proxies.
	HTTP *http.Client
	// Timeout bounds each call (on top of ctx); zero means DefaultTimeout.
	Timeout time.Duration
}

var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:                 nil, // peers are on the LAN: never through a proxy
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	MaxIdleConnsPerHost:   4,
	IdleConnTimeout:       90 * time.Second,
	ResponseHeaderTimeout: 30 * time.Second,
}}

// NewClient returns a client of the server at base for volume, with the
// token derived from the volume key.
func NewClient(base, volume, volumeKey string) (*Client, error) {
	tok, err := Token(volumeKey)
	if err != nil {
		return nil, err
	}
	return &Client{Base: strings.TrimRight(base, "/"), Token: tok, Volume: volume}, nil
}

// Notify tells the peer this node's head is now n.Head.
func (c *Client) Notify(ctx context.Context, n Notice) error {
	body := noticeJSON{Node: n.Node, Head: n.Head.String(), Addr: n.Addr}
	return c.call(ctx, http.MethodPost, c.volumePath("notify"), body, nil)
}

// Have returns the peer's complete blobs, per node.
func (c *Client) Have(ctx context.Context) ([]NodeHave, error) {
	var reply struct {
		Volume string `json:"volume"`
		Nodes  []struct {
			Node   string   `json:"node"`
			Hashes []string `json:"hashes"`
		} `json:"nodes"`
	}
	if err := c.call(ctx, http.MethodPost, c.volumePath("have"), struct{}{}, &reply); err != nil {
		return nil, err
	}
	out := make([]NodeHave, 0, len(reply.Nodes))
	for _, n := range reply.Nodes {
		nh := NodeHave{Node: n.Node, Hashes: make([]bt.InfoHash, 0, len(n.Hashes))}
		for _, s := range n.Hashes {
			h, err := bt.ParseInfoHash(s)
			if err != nil {
				return nil, fmt.Errorf("api: have: node %s: %w", n.Node, err)
			}
			nh.Hashes = append(nh.Hashes, h)
		}
		out = append(out, nh)
	}
	return out, nil
}

// Space returns the peer's disks.
func (c *Client) Space(ctx context.Context) ([]Disk, error) {
	var reply spaceReply
	if err := c.call(ctx, http.MethodPost, c.volumePath("space"), struct{}{}, &reply); err != nil {
		return nil, err
	}
	return reply.Disks, nil
}

// Status returns every volume the token opens on the server (GET
// /status).
func (c *Client) Status(ctx context.Context) (*StatusReport, error) {
	var reply StatusReport
	if err := c.call(ctx, http.MethodGet, "/status", nil, &reply); err != nil {
		return nil, err
	}
	return &reply, nil
}

// VolumeStatus returns the state of c.Volume on the server.
func (c *Client) VolumeStatus(ctx context.Context) (*VolumeStatus, error) {
	var reply VolumeStatus
	if err := c.call(ctx, http.MethodGet, c.volumePath("status"), nil, &reply); err != nil {
		return nil, err
	}
	return &reply, nil
}

// GitURL returns the URL of the volume's namespace repository, without
// credentials (go-git: use with GitAuth).
func (c *Client) GitURL() string {
	return c.Base + "/git/" + url.PathEscape(c.Volume)
}

// CloneURL returns the repository URL with the credentials in it, for
// stock git: git clone "$(CloneURL)". Treat it as a secret.
func (c *Client) CloneURL() string {
	u, err := url.Parse(c.GitURL())
	if err != nil {
		return c.GitURL()
	}
	u.User = url.UserPassword(c.user(), c.Token)
	return u.String()
}

// GitAuth returns the credentials for go-git's HTTP transport
// (git.FetchOptions.Auth).
func (c *Client) GitAuth() *githttp.BasicAuth {
	return &githttp.BasicAuth{Username: c.user(), Password: c.Token}
}

func (c *Client) user() string {
	if c.User == "" {
		return DefaultUser
	}
	return c.User
}

func (c *Client) volumePath(call string) string {
	return "/v1/" + url.PathEscape(c.Volume) + "/" + call
}

// call sends one request with a JSON body (unless nil) and decodes a JSON
// reply into out (unless nil).
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("api: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Base, "/")+path, body)
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(c.user(), c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	lr := io.LimitReader(resp.Body, maxReply+1)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e errorReply
		data, _ := io.ReadAll(io.LimitReader(lr, 64<<10))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return fmt.Errorf("%s %s: %w", method, path, &StatusError{Code: resp.StatusCode, Msg: e.Error})
	}
	if out == nil {
		io.Copy(io.Discard, lr)
		return nil
	}
	data, err := io.ReadAll(lr)
	if err != nil {
		return fmt.Errorf("api: %s %s: read reply: %w", method, path, err)
	}
	if len(data) > maxReply {
		return fmt.Errorf("api: %s %s: reply larger than %d bytes", method, path, maxReply)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("api: %s %s: decode reply: %w", method, path, err)
	}
	return nil
}
