package volume

import (
	"sync"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/node"
)

// infoIndex finds a blob's info dictionary by info-hash in a node's
// namespace: the map is built from a snapshot when asked for a hash the
// current one may hold, and kept until the namespace changes.
type infoIndex struct {
	n *node.Node

	mu   sync.Mutex
	snap *meta.Snapshot
	m    map[bt.InfoHash]*bt.Info
}

// lookup returns the info of h, or nil when no file of the namespace has
// that blob.
func (x *infoIndex) lookup(h bt.InfoHash) *bt.Info {
	s := x.n.Repo.Snapshot()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.snap != s {
		m := make(map[bt.InfoHash]*bt.Info, s.Len())
		s.Walk(func(_ string, e *meta.Entry) bool {
			if e.Kind == meta.KindFile && e.Info != nil {
				m[e.Hash] = e.Info
			}
			return true
		})
		x.snap, x.m = s, m
	}
	return x.m[h]
}
