package actors

import (
	"sync"
	"time"

	"github.com/thejerf/suture/v4"
)

// Children is a map from keys to services running under one supervisor: one
// swarm per info-hash, one peer per address. It is safe for concurrent use.
type Children[K comparable] struct {
	sup *Supervisor

	mu sync.Mutex // guards m
	m  map[K]child
}

type child struct {
	svc   Service
	token suture.ServiceToken
}

// NewChildren returns an empty map whose services run under sup.
func NewChildren[K comparable](sup *Supervisor) *Children[K] {
	return &Children[K]{sup: sup, m: make(map[K]child)}
}

// Ensure returns the service for k, starting the one mk makes if there is
// none; created says whether it did.
func (c *Children[K]) Ensure(k K, mk func() Service) (svc Service, created bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.m[k]; ok {
		return ch.svc, false
	}
	s := mk()
	c.m[k] = child{svc: s, token: c.sup.Add(s)}
	return s, true
}

// Get returns the service for k, if any.
func (c *Children[K]) Get(k K) (Service, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.m[k]
	return ch.svc, ok
}

// Remove stops the service for k and waits up to timeout for it to end.
func (c *Children[K]) Remove(k K, timeout time.Duration) error {
	c.mu.Lock()
	ch, ok := c.m[k]
	delete(c.m, k)
	c.mu.Unlock()
	if !ok {
		return nil
	}
	return c.sup.RemoveAndWait(ch.token, timeout)
}

// Keys returns the keys present now, in no particular order.
func (c *Children[K]) Keys() []K {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]K, 0, len(c.m))
	for k := range c.m {
		keys = append(keys, k)
	}
	return keys
}

// Len returns the number of children.
func (c *Children[K]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
