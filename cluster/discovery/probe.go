package discovery

import (
	"context"
	"errors"
	"time"
)

// ProbeResult is what Probe heard.
type ProbeResult struct {
	// Members are the live peers of the probed volume id, sorted by node
	// id: the ones to clone from.
	Members []Peer
	// Volumes holds every live node heard, by volume id (the probed one
	// included when in use).
	Volumes map[string][]Peer
}

// InUse reports whether live peers already serve the probed volume id
// (what --create refuses).
func (r *ProbeResult) InUse() bool { return len(r.Members) > 0 }

// Probe listens on the network for wait, asking for ServiceType every
// DefaultInterval, without announcing anything, and reports which live
// nodes use volumeID and which other volumes are around. It returns
// early only when ctx ends (with ctx's error and what it heard so far).
func Probe(ctx context.Context, volumeID string, wait time.Duration, n Network) (*ProbeResult, error) {
	ifs, err := n.pick()
	if err != nil {
		return nil, err
	}
	b, err := openBrowser(ifs, func(string, ...any) {})
	if err != nil {
		return nil, err
	}
	defer b.close()
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := newTable(volumeID, "", DefaultTTL, DefaultTTL)
	err = b.run(pctx, t, DefaultInterval, loopHooks{publish: func(*table, []Event) {}})
	res := &ProbeResult{Members: t.members(), Volumes: t.volumes()}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = nil
	}
	return res, err
}
