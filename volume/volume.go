package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/delugefs/delugefs/actors"
	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/dht"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/cluster/discovery"
	"github.com/delugefs/delugefs/cluster/nsync"
	"github.com/delugefs/delugefs/node"
)

// Errors callers branch on (each wrapped with the details).
var (
	// ErrUsage marks errors caused by how the volume was asked for
	// (flags): the command exits 2 on them.
	ErrUsage = errors.New("volume: wrong use")
	// ErrInUse is returned by Open with Create when live nodes already
	// use the volume id.
	ErrInUse = errors.New("volume: volume id in use")
	// ErrNoPeer is returned when a new node has no peer to clone from.
	ErrNoPeer = errors.New("volume: no peer to clone the volume from")
	// ErrNeedKey is returned when a new node is given no volume key.
	ErrNeedKey = errors.New("volume: a new node needs the volume key")
)

// Options configure a Volume.
type Options struct {
	// ID is the volume id (--id).
	ID string
	// Roots are the nodes' directories, one per disk (--root, repeated).
	Roots []string
	// Create makes a new volume: the first root must be empty or
	// missing, and no live node may use ID.
	Create bool
	// Key is the volume key for roots that join an existing volume
	// (base64, node.json's volume_key on any node); not needed when a
	// root of this process already belongs to the volume.
	Key string

	// Listen is the BitTorrent listen address (default ":0").
	Listen string
	// API is the HTTP API listen address (default ":0").
	API string
	// Peers are API addresses (host:port) of peers given by hand.
	Peers []string
	// MDNS enables discovery by multicast DNS on Network.
	MDNS    bool
	Network discovery.Network
	// ProbeWait is how long --create and a joining node listen for
	// peers on mDNS before they decide (default 2 s).
	ProbeWait time.Duration
	// JoinTimeout bounds the first fetch of a joining node (default 2 min).
	JoinTimeout time.Duration
	// AntiEntropy is the period of the fetch from every peer that
	// catches lost notices (default 5 s).
	AntiEntropy time.Duration
	// PeerPoll is the period at which peers' status and have-lists are
	// refreshed (default 5 s).
	PeerPoll time.Duration
	// NoPeerWait bounds a read no live peer can serve (default 10 s).
	NoPeerWait time.Duration
	// NoDHT turns off the mainline DHT server (UDP, on the BitTorrent
	// port), which finds peers of a blob beyond the volume's nodes and
	// bootstraps from the volume's peers only.
	NoDHT bool
	// PublicDHT also bootstraps the DHT from the public mainline routers:
	// opt-in, never in tests.
	PublicDHT bool
	// Log receives events; nil means slog.Default().
	Log *slog.Logger
}

// Volume is one volume's part of a process. Open it, Start it, Stop it.
type Volume struct {
	opts  Options
	log   *slog.Logger
	Nodes []*node.Node // Nodes[0] is the primary

	reg     *swarm.Registry
	ln      *swarm.Listener
	btPort  int
	srv     *api.Server
	apiAddr net.Addr
	// advertised is the API address sent in notices (":port" when the
	// API listens on every address: the peer fills in where it came from).
	advertised string
	disc       *discovery.Discovery
	dht        *dht.Server // nil with NoDHT
	peers      *peerTable
	syncers    []*nsync.Syncer
	infos      []*infoIndex // per node: blobs by info-hash, from its snapshot

	joining  bool     // the primary is new: Start clones the namespace first
	joinFrom []string // API addresses of the peers found for the clone

	runMu   sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	stopped bool
}

// Open checks the roots, opens or creates their nodes and binds the
// process's ports. It starts nothing: call Start.
func Open(ctx context.Context, o Options) (_ *Volume, err error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Listen == "" {
		o.Listen = ":0"
	}
	if o.API == "" {
		o.API = ":0"
	}
	if o.ProbeWait <= 0 {
		o.ProbeWait = 2 * time.Second
	}
	if o.JoinTimeout <= 0 {
		o.JoinTimeout = 2 * time.Minute
	}
	if o.AntiEntropy <= 0 {
		o.AntiEntropy = 5 * time.Second
	}
	if o.PeerPoll <= 0 {
		o.PeerPoll = 5 * time.Second
	}
	if err := node.CheckVolumeID(o.ID); err != nil {
		return nil, usagef("%w", err)
	}
	if len(o.Roots) == 0 {
		return nil, usagef("no --root")
	}
	roots, err := cleanRoots(o.Roots)
	if err != nil {
		return nil, err
	}
	for _, p := range o.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, usagef("--peer %q: want host:port of the peer's API", p)
		}
	}

	// The primary is the first root that already holds a node; with
	// none, the first root (made by --create, or cloned from a peer).
	existing := -1
	for i, r := range roots {
		if node.HasConfig(r) {
			existing = i
			break
		}
	}
	if o.Create && node.HasConfig(roots[0]) {
		return nil, usagef("%w: %s already holds a node; --create needs an empty or missing directory", node.ErrNotEmpty, roots[0])
	}
	if existing > 0 && !o.Create {
		roots[0], roots[existing] = roots[existing], roots[0]
	}
	v := &Volume{opts: o, log: o.Log, reg: swarm.NewRegistry(), peers: newPeerTable()}
	defer func() {
		if err != nil {
			v.closeAll()
		}
	}()

	// Decide how the primary comes to be before touching any disk.
	key := o.Key
	if o.MDNS {
		if err := o.Network.Usable(); err != nil {
			if len(o.Network.Interfaces) > 0 {
				return nil, usagef("--mdns-iface: %w", err)
			}
			// A machine with no multicast interface (a container, a
			// laptop offline) still runs; peers come from --peer.
			o.Log.Warn("mDNS discovery is off: no multicast-capable interface is up; other nodes are found through --peer only", "err", err)
			o.MDNS = false
			v.opts.MDNS = false
		}
	}
	switch {
	case o.Create:
		if ents, err := os.ReadDir(roots[0]); err == nil && len(ents) > 0 {
			return nil, usagef("%w: %s holds %d entries; --create needs an empty or missing directory", node.ErrNotEmpty, roots[0], len(ents))
		}
		if o.MDNS {
			res, err := discovery.Probe(ctx, o.ID, o.ProbeWait, o.Network)
			if err != nil {
				return nil, fmt.Errorf("volume: look for nodes of %q on the network: %w", o.ID, err)
			}
			if res.InUse() {
				return nil, usagef("%w: %q is used by %d live node(s) (e.g. %s at %s); pick another --id, or join it without --create",
					ErrInUse, o.ID, len(res.Members), res.Members[0].NodeID, res.Members[0].APIAddr())
			}
		}
	case existing < 0:
		if key == "" {
			return nil, usagef("%w: %s holds no node of %q; to add this disk to the volume give --key (volume_key in node.json of any of its nodes), or use --create to make a new volume",
				ErrNeedKey, roots[0], o.ID)
		}
		cands := slices.Clone(o.Peers)
		if o.MDNS {
			res, err := discovery.Probe(ctx, o.ID, o.ProbeWait, o.Network)
			if err != nil {
				return nil, fmt.Errorf("volume: look for nodes of %q on the network: %w", o.ID, err)
			}
			for _, m := range res.Members {
				cands = append(cands, m.APIAddr())
			}
		}
		if len(cands) == 0 {
			how := "none answered on mDNS within " + o.ProbeWait.String()
			if !o.MDNS {
				how = "mDNS is off and no --peer was given"
			}
			return nil, usagef("%w %q (%s): start this node where a node of the volume runs, or give --peer HOST:PORT of one's API",
				ErrNoPeer, o.ID, how)
		}
		v.joining = true
		v.joinFrom = cands
	default:
		c, err := node.LoadConfig(roots[0], o.ID)
		if err != nil {
			return nil, usage(err)
		}
		if key != "" && key != c.VolumeKey {
			return nil, usagef("--key differs from the volume key in %s", filepath.Join(roots[0], node.ConfigFile))
		}
		key = c.VolumeKey
	}

	sock, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, usagef("--listen %s: %w", o.Listen, err)
	}
	v.ln = swarm.NewListener(sock, v.reg, v.log)
	_, port, _ := net.SplitHostPort(v.ln.Addr().String())
	v.btPort, _ = strconv.Atoi(port)
	if !o.NoDHT {
		host, _, _ := net.SplitHostPort(o.Listen)
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(v.btPort)))
		if err != nil {
			sock.Close()
			v.ln = nil
			return nil, fmt.Errorf("volume: DHT on udp port %d (the BitTorrent port; --no-dht turns it off): %w", v.btPort, err)
		}
		if v.dht, err = dht.New(dht.Config{Conn: udp, PublicBootstrap: o.PublicDHT}); err != nil {
			udp.Close()
			sock.Close()
			v.ln = nil
			return nil, fmt.Errorf("volume: DHT: %w", err)
		}
	}
	v.srv = api.New(api.Options{Addr: o.API, Logger: v.log})
	if v.apiAddr, err = v.srv.Listen(); err != nil {
		sock.Close()
		v.ln = nil
		return nil, usagef("--api %s: %w", o.API, err)
	}

	for i, r := range roots {
		no := node.Options{
			Create: i == 0 && o.Create,
			Log:    v.log,
			Swarms: node.SwarmOptions{Registry: v.reg, ListenPort: v.btPort, NoPeerWait: o.NoPeerWait},
		}
		if v.dht != nil {
			no.Swarms.DHT = v.dht
		}
		if !no.Create && !node.HasConfig(r) {
			no.JoinKey = key
		}
		n, err := node.Open(r, o.ID, no)
		if err != nil {
			return nil, usage(err)
		}
		v.Nodes = append(v.Nodes, n)
		v.infos = append(v.infos, &infoIndex{n: n})
		if i == 0 {
			key = n.Config.VolumeKey
		} else if n.Config.VolumeKey != key {
			return nil, usagef("%s belongs to another volume %q (its key differs from %s's)", r, o.ID, roots[0])
		}
	}
	v.reg.SetResolver(v.resolve)

	if err := v.srv.Register(api.Volume{
		ID:      o.ID,
		Key:     key,
		GitDir:  filepath.Join(v.Nodes[0].Root, "meta.git"),
		Handler: v,
	}); err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	if o.MDNS {
		_, ap, _ := net.SplitHostPort(v.apiAddr.String())
		apiPort, _ := strconv.Atoi(ap)
		v.disc, err = discovery.New(discovery.Config{
			Info: discovery.Info{
				VolumeID: o.ID,
				NodeID:   v.Nodes[0].Config.NodeID,
				BTPort:   uint16(v.btPort),
				APIPort:  uint16(apiPort),
			},
			Network:     o.Network,
			StaticPeers: o.Peers,
			Logf: func(format string, args ...any) {
				v.log.Debug("discovery: " + fmt.Sprintf(format, args...))
			},
		})
		if err != nil {
			return nil, fmt.Errorf("volume: discovery: %w", err)
		}
	}
	if err := v.newSyncers(); err != nil {
		return nil, err
	}
	return v, nil
}

// usageError marks an error caused by how the volume was asked for; its
// text is the error's own.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// Is makes errors.Is(err, ErrUsage) true.
func (e usageError) Is(target error) bool { return target == ErrUsage }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// usage marks node.Open's errors that come from the command line.
func usage(err error) error {
	for _, e := range []error{node.ErrNotVolume, node.ErrWrongID, node.ErrNotEmpty, node.ErrBadID, node.ErrLocked, node.ErrBadKey} {
		if errors.Is(err, e) {
			return usagef("%w", err)
		}
	}
	return err
}

func cleanRoots(in []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, r := range in {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, usagef("--root %s: %w", r, err)
		}
		if seen[abs] {
			return nil, usagef("--root %s given twice", abs)
		}
		seen[abs] = true
		out = append(out, abs)
	}
	return out, nil
}

// Primary returns the node the mount shows.
func (v *Volume) Primary() *node.Node { return v.Nodes[0] }

// Key returns the volume key.
func (v *Volume) Key() string { return v.Nodes[0].Config.VolumeKey }

// APIAddr returns the bound API address.
func (v *Volume) APIAddr() net.Addr { return v.apiAddr }

// BTAddr returns the bound BitTorrent address.
func (v *Volume) BTAddr() net.Addr { return v.ln.Addr() }

// API returns the process's API server.
func (v *Volume) API() *api.Server { return v.srv }

// localAPI is the URL of this process's own API over loopback.
func (v *Volume) localAPI() string {
	_, port, _ := net.SplitHostPort(v.apiAddr.String())
	return "http://127.0.0.1:" + port
}

// Start runs the volume's actors in the background. A joining primary
// first fetches the namespace from a peer; Start returns when the volume
// is ready to mount, or with the error that stopped it.
func (v *Volume) Start(ctx context.Context) error {
	v.runMu.Lock()
	if v.done != nil {
		v.runMu.Unlock()
		return errors.New("volume: started twice")
	}
	sup := actors.NewSupervisor("volume "+v.opts.ID, v.log)
	for _, n := range v.Nodes {
		sup.Add(actors.Critical(actors.Func("node "+n.Config.NodeID, n.Serve)))
	}
	sup.Add(actors.Func("bittorrent listener", v.ln.Serve))
	sup.Add(actors.Func("api", v.srv.Serve))
	for i, s := range v.syncers {
		sup.Add(actors.Func("nsync "+v.Nodes[i].Config.NodeID, s.Serve))
	}
	sup.Add(actors.Func("peers", v.runPeers))
	sup.Add(actors.Func("follow primary", v.followPrimary))
	if v.disc != nil {
		sup.Add(actors.Func("discovery", v.disc.Serve))
	}
	if v.dht != nil {
		// A Server with a Conn serves once: if it fails, the volume goes
		// on without it.
		sup.Add(actors.Temporary(actors.Func("dht", v.dht.Serve)))
	}
	rctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	v.done = make(chan struct{})
	v.runMu.Unlock()
	go func() {
		err := actors.Run(rctx, sup)
		v.runMu.Lock()
		if v.err == nil && rctx.Err() == nil {
			v.err = err
			if err == nil {
				v.err = errors.New("volume: stopped")
			}
		}
		v.runMu.Unlock()
		close(v.done)
	}()
	for _, p := range v.opts.Peers {
		v.peers.add(p, "", true)
	}
	if v.joining {
		if err := v.clone(ctx); err != nil {
			v.Stop()
			return err
		}
	}
	return nil
}

// Done is closed when the volume's actors stop (after Stop, or when a
// critical one fails: see Err).
func (v *Volume) Done() <-chan struct{} {
	v.runMu.Lock()
	defer v.runMu.Unlock()
	return v.done
}

// Err returns the error that stopped the volume by itself, if any.
func (v *Volume) Err() error {
	v.runMu.Lock()
	defer v.runMu.Unlock()
	return v.err
}

// Stop stops the actors, waits for them and closes the nodes. It is safe to
// call more than once and without Start.
func (v *Volume) Stop() error {
	v.runMu.Lock()
	if v.stopped {
		v.runMu.Unlock()
		return nil
	}
	v.stopped = true
	cancel, done := v.cancel, v.done
	v.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return v.closeAll()
}

func (v *Volume) closeAll() error {
	var errs []error
	for _, n := range v.Nodes {
		errs = append(errs, n.Close())
	}
	if v.ln != nil && v.done == nil {
		// Never served: the listener and the DHT still own their sockets.
		errs = append(errs, v.ln.Close())
		if v.dht != nil {
			v.dht.Close()
		}
	}
	return errors.Join(errs...)
}

// resolve is the swarm registry's resolver: an inbound connection (or a
// read on another disk) for a blob no swarm runs for starts a seed on the
// disk that holds it complete.
func (v *Volume) resolve(h bt.InfoHash) *swarm.Swarm {
	for i, n := range v.Nodes {
		if !n.Store.Has(h) {
			continue
		}
		// The holder's namespace may not name the blob yet (it follows
		// the primary's): any local node's will do.
		info := v.infos[i].lookup(h)
		for j := 0; info == nil && j < len(v.infos); j++ {
			info = v.infos[j].lookup(h)
		}
		if info == nil {
			continue
		}
		sw, err := n.Swarms.Ensure(info)
		if err != nil {
			v.log.Warn("seed on demand", "infohash", h, "err", err)
			return nil
		}
		return sw
	}
	return nil
}

// removeIfEmpty removes dir when it holds nothing.
func removeIfEmpty(dir string) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
		os.Remove(dir)
	}
}
