package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/piece"
)

// ErrNoData is wrapped by Get's error when no peer delivered anything for
// GetConfig.Timeout: none could be reached, none has the missing pieces, or
// every one chokes us.
var ErrNoData = errors.New("client: no peer has the data")

// Source is what Get downloads: a torrent, or a magnet link whose info
// dictionary is fetched from the peers (BEP 9).
type Source struct {
	MetaInfo *bt.MetaInfo // nil for a magnet link
	Magnet   bt.Magnet    // InfoHash always set; Peers from x.pe
}

// InfoHash returns the info-hash of the source.
func (s Source) InfoHash() bt.InfoHash {
	if s.MetaInfo != nil {
		return s.MetaInfo.Info.Hash()
	}
	return s.Magnet.InfoHash
}

// ParseSource reads arg as a magnet link when it starts with "magnet:",
// and as the path of a .torrent file otherwise.
func ParseSource(arg string) (Source, error) {
	if strings.HasPrefix(arg, "magnet:") {
		m, err := bt.ParseMagnet(arg)
		if err != nil {
			return Source{}, err
		}
		return Source{Magnet: m}, nil
	}
	mi, err := ReadTorrent(arg)
	if err != nil {
		return Source{}, err
	}
	return Source{MetaInfo: mi, Magnet: MagnetOf(mi, nil)}, nil
}

// ReadTorrent reads and parses a .torrent file.
func ReadTorrent(path string) (*bt.MetaInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read torrent: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read torrent: %w", err)
	}
	if fi.Size() > bt.MaxMetaInfoSize {
		return nil, fmt.Errorf("read torrent %s: %d bytes, more than %d", path, fi.Size(), bt.MaxMetaInfoSize)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("read torrent %s: %w", path, err)
	}
	mi, err := bt.ParseMetaInfo(data)
	if err != nil {
		return nil, fmt.Errorf("read torrent %s: %w", path, err)
	}
	return mi, nil
}

// MagnetOf returns the magnet link of a torrent, with peers as x.pe.
func MagnetOf(mi *bt.MetaInfo, peers []string) bt.Magnet {
	return bt.Magnet{InfoHash: mi.Info.Hash(), Name: mi.Info.Name, Peers: peers}
}

// Progress is the state of a download, reported to GetConfig.Progress.
type Progress struct {
	swarm.Progress
	Name    string        // the torrent's name, "" while a magnet's info is fetched
	Elapsed time.Duration // since Get started
	Done    bool          // every piece verified
}

// GetConfig says what Get downloads, from whom, and where to.
type GetConfig struct {
	Source Source
	// Out is the file to write. The download runs in a directory beside
	// it (".<name>.delugefs-part"), kept when Get fails so that a second
	// run resumes; on success the data is renamed to Out.
	Out string
	// Peers to dial, besides the magnet link's x.pe addresses.
	Peers []string
	// Listen, when set, accepts peers on that address too.
	Listen string
	// Timeout is how long Get waits while no piece arrives before it
	// fails with ErrNoData (default 30 s).
	Timeout time.Duration
	// Progress, when set, is called every ProgressEvery (default 250 ms)
	// and once at the end, from Get's goroutine.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// Logger receives the swarm's warnings (default slog.Default()).
	Logger *slog.Logger
	// Swarm tunes the swarm; its Store is set by Get.
	Swarm swarm.Config
}

// Get downloads the source into cfg.Out. It returns nil only when every
// piece is verified and Out is complete; it fails with ErrNoData when no
// peer sends anything for cfg.Timeout, and with ctx's error when ctx ends.
func Get(ctx context.Context, cfg GetConfig) error {
	start := time.Now()
	if cfg.Out == "" {
		return errors.New("client: get: no output file")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	peers := append(append([]string(nil), cfg.Source.Magnet.Peers...), cfg.Peers...)
	if len(peers) == 0 && cfg.Listen == "" {
		return fmt.Errorf("get: %w: no peer given", ErrNoData)
	}
	out, err := filepath.Abs(cfg.Out)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		return fmt.Errorf("get: output %s is a directory", out)
	}
	part := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".delugefs-part")
	st, err := piece.OpenStore(part)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	scfg := cfg.Swarm
	scfg.Store = st
	scfg.Logger = cfg.Logger
	var ln net.Listener
	if cfg.Listen != "" {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("get: %w", err)
		}
		scfg.ListenPort = tcpPort(ln.Addr())
	}
	var sw *swarm.Swarm
	if cfg.Source.MetaInfo != nil {
		sw, err = swarm.New(cfg.Source.MetaInfo.Info, scfg)
	} else {
		sw, err = swarm.NewMagnet(cfg.Source.Magnet.InfoHash, scfg)
	}
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return fmt.Errorf("get: %w", err)
	}
	reg := swarm.NewRegistry()
	reg.Add(sw)

	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(sctx, sw, reg, ln, cfg.Logger, peers) }() // ends with stop()
	got, err := watch(ctx, sw, cfg, peers, start, served)
	stop()
	if serr := <-served; err == nil {
		err = serr
	}
	if ln != nil {
		ln.Close()
	}
	if cerr := sw.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if got == 0 {
			os.RemoveAll(part) // nothing worth resuming
		}
		return fmt.Errorf("get %v: %w", sw.InfoHash(), err)
	}
	if err := os.Rename(blobPath(part, sw.InfoHash()), out); err != nil {
		return fmt.Errorf("get %v: move into place: %w", sw.InfoHash(), err)
	}
	if err := os.Chmod(out, 0o644); err != nil {
		return fmt.Errorf("get %v: %w", sw.InfoHash(), err)
	}
	if err := os.RemoveAll(part); err != nil {
		return fmt.Errorf("get %v: %w", sw.InfoHash(), err)
	}
	return nil
}

// watch waits until sw is complete, reporting progress, and fails when
// nothing arrives for cfg.Timeout, when ctx ends, or when the swarm stops.
// It returns the bytes verified last it looked (-1: never).
func watch(ctx context.Context, sw *swarm.Swarm, cfg GetConfig, peers []string, start time.Time, served <-chan error) (last int64, err error) {
	tick := time.NewTicker(cfg.ProgressEvery)
	defer tick.Stop()
	last = -1
	lastChange := time.Now()
	report := func(done bool) (swarm.Progress, error) {
		p, err := sw.Progress(ctx)
		if err != nil {
			return p, err
		}
		if cfg.Progress != nil {
			name := ""
			if info := sw.Info(); info != nil {
				name = cfg.nameOf(info)
			}
			cfg.Progress(Progress{Progress: p, Name: name, Elapsed: time.Since(start), Done: done})
		}
		return p, nil
	}
	for {
		select {
		case <-sw.Done():
			p, err := report(true)
			return p.Bytes, err
		case err := <-served:
			if err == nil {
				err = swarm.ErrStopped
			}
			return last, err
		case <-ctx.Done():
			return last, ctx.Err()
		case now := <-tick.C:
			p, err := report(false)
			if err != nil {
				return last, err
			}
			if p.Bytes != last {
				last, lastChange = p.Bytes, now
				continue
			}
			if now.Sub(lastChange) >= cfg.Timeout {
				return last, noData(ctx, sw, peers, cfg.Timeout, p)
			}
		}
	}
}

// nameOf names the torrent in progress reports.
func (cfg GetConfig) nameOf(info *bt.Info) string {
	if cfg.Source.MetaInfo != nil || cfg.Source.Magnet.Name == "" {
		return info.Name
	}
	return cfg.Source.Magnet.Name
}

// noData explains why nothing arrived from the peers given.
func noData(ctx context.Context, sw *swarm.Swarm, given []string, d time.Duration, p swarm.Progress) error {
	peers, _ := sw.Peers(ctx)
	what := "no piece"
	if p.Total == 0 {
		what = "not even the info dictionary"
	}
	switch {
	case len(peers) == 0:
		return fmt.Errorf("%w: %s arrived in %v and no peer is connected: %s", ErrNoData, what, d, probe(ctx, given))
	case p.Total == 0:
		return fmt.Errorf("%w: %s arrived in %v from %d connected peers", ErrNoData, what, d, len(peers))
	}
	useful, unchoked := 0, 0
	for _, pi := range peers {
		if pi.Have > 0 {
			useful++
			if !pi.PeerChoking {
				unchoked++
			}
		}
	}
	switch {
	case useful == 0:
		return fmt.Errorf("%w: %d connected peers have none of the %d missing pieces (%v without progress)", ErrNoData, len(peers), p.Total-p.Pieces, d)
	case unchoked == 0:
		return fmt.Errorf("%w: the %d peers with pieces all choke us (%v without progress)", ErrNoData, useful, d)
	}
	return fmt.Errorf("%w: %d of %d pieces verified, none more in %v from %d peers", ErrNoData, p.Pieces, p.Total, d, len(peers))
}

// probe says why each address is not a peer: unreachable, or reachable
// but not trading this torrent.
func probe(ctx context.Context, addrs []string) string {
	if len(addrs) == 0 {
		return "none was given and none connected to us"
	}
	var why []string
	for _, a := range addrs {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", a)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		c.Close()
		why = append(why, a+" accepts connections but not for this torrent (or it closed ours)")
	}
	return strings.Join(why, "; ")
}
