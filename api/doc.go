// Package api is the HTTP side of a DelugeFS process: one port (--api
// ADDR) serving, for every volume the process runs, the namespace over
// git's smart HTTP protocol (read-only), the JSON control calls between
// nodes, a status document and Prometheus metrics; and the Client that
// nodes and `delugefs status` use to call it.
//
// # Wiring
//
//	srv := api.New(api.Options{Addr: *apiAddr, Logger: log})
//	err := srv.Register(api.Volume{
//		ID:      cfg.VolumeID,
//		Key:     cfg.VolumeKey,               // base64, from node.json
//		GitDir:  filepath.Join(root, "meta.git"),
//		Handler: node,                         // implements api.Handler
//	})
//	addr, err := srv.Listen()                  // bind now, print addr
//	supervisor.Add(srv)                        // srv.Serve(ctx) until ctx ends
//
// Register may be called before or after Serve, once per volume; a volume
// whose nodes run on several disks of this process registers once, with a
// Handler that answers for all of them (Have and Space are per node or
// per disk). Serve prints nothing; the caller prints the address Listen
// returns. A restarted Serve binds the same address again. Register the
// node's own collectors on srv.Registry().
//
// meta.Repo writes a commit's objects and branch just after Update returns
// and then signals Watch: notify peers from Watch (or after Repo.Sync), so
// that a peer's fetch finds the commit in the repository served here.
//
// Peers call it with a Client:
//
//	c, err := api.NewClient("http://10.0.0.2:7450", volumeID, volumeKey)
//	c.User = nodeID
//	err = c.Notify(ctx, api.Notice{Node: nodeID, Head: head, Addr: myAPIAddr})
//	remote.FetchContext(ctx, &git.FetchOptions{Auth: c.GitAuth(), ...})  // URL c.GitURL()
//
// # Endpoints
//
//	GET  /git/<volume>/info/refs?service=git-upload-pack   ref advertisement (v0)
//	POST /git/<volume>/git-upload-pack                     negotiation and pack
//	*    /git/<volume>/...git-receive-pack                 403: push is refused
//	POST /v1/<volume>/notify   {"node","head","addr"} -> 204; calls Handler.Notify
//	POST /v1/<volume>/have     {} -> {"volume","nodes":[{"node","hashes":[hex...]}]}
//	POST /v1/<volume>/space    {} -> {"volume","disks":[{"node","root","total","free"}]}
//	GET  /v1/<volume>/status   -> VolumeStatus
//	GET  /status               -> StatusReport: every volume the credentials open
//	GET  /metrics              Prometheus text format
//	GET  /debug/pprof/...      Go profiles (net/http/pprof): heap, profile, goroutine, trace
//
// Errors are JSON {"error": "..."} with a 4xx or 5xx status: 400
// malformed (bad JSON, unknown fields, trailing data, bad head or node
// id), 404 unknown volume or endpoint (or a volume without a repository
// under /git), 405 wrong method (checked after authentication), 413 body
// too large, 415 wrong content type or encoding, 501 a call the node does
// not implement, 503 the handler's context ended. Control bodies are
// bounded (Options.MaxBody, 64 KiB); replies are bounded by the client
// (64 MiB). /status reports a volume whose node cannot answer in place,
// with its Error set.
//
// # Security
//
// Every endpoint requires HTTP Basic authentication. The password is the
// volume's token, Token(key) = base64url(HMAC-SHA256(key,
// "delugefs-api-v1")) with no padding, where key is the volume key from
// node.json (decoded from base64); the user name is free (DefaultUser,
// "delugefs", or the node id) and is not checked. Tokens are compared in
// constant time, against every registered volume.
//
// A request without credentials that open the named volume gets 401 with
// the body {"error":"unauthorized"} and a `WWW-Authenticate: Basic
// realm="delugefs"` challenge, whether or not the volume exists, so a host
// without the key learns nothing from the API (mDNS already tells it that
// a volume exists). Only a caller holding some volume's token can tell an
// unknown volume (404) from a known one. /status and /metrics need a token
// of any registered volume; /status shows only the volumes that token
// opens.
//
// Stock git carries the token in the URL or gets it from a credential
// helper:
//
//	git clone http://delugefs:TOKEN@HOST:PORT/git/bigstore
//
// The token is a bearer secret: it does not travel encrypted (plain HTTP
// on the LAN, like the BitTorrent traffic); whoever sees it can read the
// namespace. Knowing it never allows a write through the API: git push is
// refused and the control calls only inform the node.
//
// # Untrusted input
//
// Volume and node ids are checked against their patterns; heads must be 40
// hex digits; notice addresses must be host:port (an empty or unspecified
// host is replaced by the connection's remote address). JSON is decoded
// strictly (DisallowUnknownFields, one value, bounded size). Upload-pack
// requests are bounded (Options.MaxGitBody, also after gunzip), parsed as
// pkt-lines with checked lengths, and refuse shallow and filter requests;
// every want must be a commit the repository holds. The http.Server has
// read-header, read, write and idle timeouts (a pack response pushes its
// write deadline forward at each write) and the default header size
// limit. Handlers never panic the process: a panic is a 500.
//
// # Git
//
// The namespace is served from go-git's storage, protocol v0/v1 with
// side-band-64k, multi_ack_detailed and ofs-delta (a v2 request falls back
// to v0), stateless as smart HTTP is: each POST carries the wants and the
// haves the client knows are common. The server acknowledges the haves it
// holds (ACK common / NAK at the end of a round; ACK or NAK before the
// pack after "done"); it never sends "ready", so the client stops by
// running out of haves. go-git's client (no multi_ack) sends everything
// with "done" in one POST and gets the single-ACK form. Each request
// opens its own read-only go-git storage on Volume.GitDir, so serving
// shares no go-git state with meta.Repo (go-git's filesystem storage is
// not safe for concurrent use) and sees packs fetched since.
//
// The pack holds the commits from the wants down to the commits the
// client has, found by a walk in committer-time order that stops when only
// commits the client has remain queued (git's algorithm, so a fetch reads
// the commits since the merge base, not the whole history), and of each
// commit's tree only what differs from its parents' trees at the same path
// (work in the size of the change, not of the namespace). At most
// Options.MaxPacks packs are built at once.
//
// # Concurrency
//
// Server methods are safe for concurrent use. Serve owns the http.Server;
// the volume table is guarded by a mutex (see Server). Handler methods are
// called from request goroutines concurrently.
package api
