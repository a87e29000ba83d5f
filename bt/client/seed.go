package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/bt/swarm"
	"github.com/delugefs/delugefs/piece"
)

// SeedConfig says what a Seeder serves and how.
type SeedConfig struct {
	// MetaInfo is the torrent of the data.
	MetaInfo *bt.MetaInfo
	// Data is the file the torrent describes; it must not change while
	// it is seeded.
	Data string
	// Listen is the address to accept peers on (default 127.0.0.1:0, a
	// free port on loopback).
	Listen string
	// Peers are dialled as well: peers that cannot be told about us (a
	// stock client that takes no peer address) learn of us this way.
	Peers []string
	// NoVerify skips the hash check of Data (it is checked by default).
	NoVerify bool
	// Logger receives the swarm's warnings (default slog.Default()).
	Logger *slog.Logger
	// Swarm tunes the swarm; its Store is set by the Seeder.
	Swarm swarm.Config
}

// Seeder serves one file to BitTorrent peers. Make it with NewSeeder, run it
// with Serve, and Close it after Serve has returned.
type Seeder struct {
	mi    *bt.MetaInfo
	dir   string // the private store that links to the data
	log   *slog.Logger
	peers []string
	sw    *swarm.Swarm
	reg   *swarm.Registry
	ln    net.Listener // closed by Serve when its ctx ends, or by Close

	closeOnce sync.Once
	closeErr  error
}

// NewSeeder checks the data against the torrent (every piece, unless
// cfg.NoVerify), and listens. The data stays where it is: the seeder's
// private store, in a temporary directory, holds a symbolic link to it.
func NewSeeder(ctx context.Context, cfg SeedConfig) (*Seeder, error) {
	if cfg.MetaInfo == nil || cfg.MetaInfo.Info == nil {
		return nil, errors.New("client: seed: no torrent")
	}
	info := cfg.MetaInfo.Info
	data, err := filepath.Abs(cfg.Data)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	if !cfg.NoVerify {
		if err := Verify(ctx, info, data); err != nil {
			return nil, fmt.Errorf("seed: %w", err)
		}
	} else if fi, err := os.Stat(data); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	} else if fi.Size() != info.Length {
		return nil, fmt.Errorf("seed %s: %w: %d bytes, the torrent says %d", data, ErrData, fi.Size(), info.Length)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	dir, err := os.MkdirTemp("", "delugefs-seed-")
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	s := &Seeder{mi: cfg.MetaInfo, dir: dir, log: cfg.Logger, peers: cfg.Peers, reg: swarm.NewRegistry()}
	if err := s.open(info, data, cfg); err != nil {
		s.Close()
		return nil, fmt.Errorf("seed: %w", err)
	}
	return s, nil
}

func (s *Seeder) open(info *bt.Info, data string, cfg SeedConfig) error {
	st, err := piece.OpenStore(s.dir)
	if err != nil {
		return err
	}
	// A complete blob in a store is a data file with no .have beside it;
	// the store opens it through the link.
	link := blobPath(s.dir, info.Hash())
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(data, link); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	s.ln = ln
	scfg := cfg.Swarm
	scfg.Store = st
	scfg.Logger = cfg.Logger
	scfg.ListenPort = tcpPort(ln.Addr())
	sw, err := swarm.New(info, scfg)
	if err != nil {
		return err
	}
	s.sw = sw
	s.reg.Add(sw)
	return nil
}

// Addr returns the address peers connect to.
func (s *Seeder) Addr() string { return s.ln.Addr().String() }

// Swarm returns the seeder's swarm.
func (s *Seeder) Swarm() *swarm.Swarm { return s.sw }

// Magnet returns the magnet link of the torrent with the seeder's address
// as x.pe.
func (s *Seeder) Magnet() bt.Magnet {
	return bt.Magnet{InfoHash: s.mi.Info.Hash(), Name: s.mi.Info.Name, Peers: []string{s.Addr()}}
}

// Serve seeds until ctx ends. It returns nil then, or the error that
// stopped the swarm or the listener.
func (s *Seeder) Serve(ctx context.Context) error {
	return serve(ctx, s.sw, s.reg, s.ln, s.log, s.peers)
}

// Close releases the swarm and removes the private store (never the
// data). Call it after Serve has returned; it is idempotent.
func (s *Seeder) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.ln != nil {
			if err := s.ln.Close(); !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		if s.sw != nil {
			errs = append(errs, s.sw.Close())
		}
		errs = append(errs, os.RemoveAll(s.dir))
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("close seeder: %w", err)
		}
	})
	return s.closeErr
}
