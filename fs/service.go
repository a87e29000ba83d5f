package fs

import (
	"context"
	"errors"
)

// ErrUnmounted is returned by Service.Serve when the mount went away while
// the service was running (umount from outside, a killed connection).
var ErrUnmounted = errors.New("fs: unmounted from outside")

// Service keeps an FS mounted while it runs: a suture.Service for the
// mount actor of the supervision tree. Serve mounts (recovering a stale
// mount point first), and unmounts when ctx ends; if the mount disappears
// on its own Serve returns ErrUnmounted, so the supervisor mounts again.
type Service struct {
	FS      *FS
	Dir     string
	Options MountOptions
	// OnMount, if set, is called each time the mount is ready for use.
	OnMount func()
}

// Serve mounts s.FS at s.Dir until ctx ends.
func (s *Service) Serve(ctx context.Context) error {
	pt, err := Mount(s.Dir, s.FS, s.Options)
	if err != nil {
		return err
	}
	if s.OnMount != nil {
		s.OnMount()
	}
	select {
	case <-ctx.Done():
		if err := pt.Unmount(); err != nil {
			return err
		}
		return ctx.Err()
	case <-pt.Done():
		return ErrUnmounted
	}
}
