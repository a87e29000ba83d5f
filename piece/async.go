package piece

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/internal/lowprio"
)

// pendingBlob is a small blob PutSmallAsync accepted and has not written
// yet.
type pendingBlob struct {
	info *bt.Info
	data []byte
	done chan struct{} // closed once written (or failed: err)
	err  error
	// claimed is set by whoever writes it: the background writer, or a
	// reader or Flush that needs it now (await), which so never waits for
	// the low-priority writer to reach it (only, at most, for the one blob
	// the writer is in the middle of).
	claimed atomic.Bool
}

// asyncWriter writes small blobs in the background, in order, on a
// goroutine that runs while there is work and lingers a moment after
// (asyncLinger) for more, so that a stream of closes does not start one
// goroutine each. The goroutine runs on its own OS thread at the lowest
// CPU priority (lowprio.Lower): creating a blob file costs more CPU than
// the close that queued it, and on a machine with few CPUs it ran in the
// way of the next close's FUSE requests instead of in the time the close
// spends waiting for the disk.
type asyncWriter struct {
	pend    sync.Map // bt.InfoHash -> *pendingBlob, until written
	mu      sync.Mutex
	queue   []*pendingBlob
	running bool
	wake    chan struct{}  // 1-buffered: the queue grew while running
	failed  []*pendingBlob // written with an error: Flush retries them
	// beforeWrite, when set (tests), runs on the writer before it takes
	// each blob.
	beforeWrite func()
}

// asyncLinger is how long the writer waits for more work before it ends.
const asyncLinger = 50 * time.Millisecond

// HashSmall returns the info dictionary of data as a blob: the canonical
// piece length for its size.
func HashSmall(data []byte) *bt.Info {
	return hashBytes(data, Length(int64(len(data))))
}

// PutSmallAsync is PutSmall without the wait: data (at most MaxSmallBlob
// bytes, not empty; info is HashSmall(data)) becomes a blob the store
// counts as complete at once (Has, Open, OpenBlob and Complete see it;
// Open waits for its file), and its file is written in the background.
// The caller's journal must carry data (meta.Tx.AttachBlob) and call Flush
// before it retires that record (meta.Options.BeforeCheckpoint), exactly
// as for PutSmall, whose durability this shares. The caller must not
// change data.
func (s *Store) PutSmallAsync(info *bt.Info, data []byte) error {
	if len(data) == 0 || len(data) > MaxSmallBlob || info == nil || info.Length != int64(len(data)) {
		return fmt.Errorf("put small blob: %d bytes: want 1 to %d with its info", len(data), MaxSmallBlob)
	}
	p := &pendingBlob{info: info, data: data, done: make(chan struct{})}
	if old, loaded := s.async.pend.LoadOrStore(info.Hash(), p); loaded {
		s.await(old.(*pendingBlob)) // the same bytes are on their way already
		if old.(*pendingBlob).err == nil {
			return nil
		}
		s.async.pend.Store(info.Hash(), p)
	}
	w := &s.async
	w.mu.Lock()
	w.queue = append(w.queue, p)
	start := !w.running
	w.running = true
	if w.wake == nil {
		w.wake = make(chan struct{}, 1)
	}
	wake := w.wake
	w.mu.Unlock()
	if start {
		go s.writePending() // ends when the queue stays empty for asyncLinger
	} else {
		select {
		case wake <- struct{}{}:
		default: // a wake is pending already
		}
	}
	return nil
}

// writePending writes queued blobs until the queue stays empty for
// asyncLinger.
func (s *Store) writePending() {
	lowprio.Lower() // its thread ends with it
	w := &s.async
	w.mu.Lock()
	wake := w.wake
	w.mu.Unlock()
	idle := time.NewTimer(asyncLinger)
	defer idle.Stop()
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.mu.Unlock()
			idle.Reset(asyncLinger)
			select {
			case <-wake:
				continue
			case <-idle.C:
			}
			w.mu.Lock()
			if len(w.queue) == 0 {
				w.running = false
				w.mu.Unlock()
				return
			}
		}
		p := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		hook := w.beforeWrite
		w.mu.Unlock()
		if hook != nil {
			hook()
		}
		if p.claimed.CompareAndSwap(false, true) {
			s.finishPending(p)
		}
	}
}

// await writes p now unless someone else has begun to, then waits until
// it is written.
func (s *Store) await(p *pendingBlob) {
	if p.claimed.CompareAndSwap(false, true) {
		s.finishPending(p)
	}
	<-p.done
}

// finishPending writes p's file and releases its waiters.
func (s *Store) finishPending(p *pendingBlob) {
	_, err := s.PutSmall(p.data)
	p.err = err
	if err != nil {
		s.async.mu.Lock()
		s.async.failed = append(s.async.failed, p)
		s.async.mu.Unlock()
	}
	s.async.pend.CompareAndDelete(p.info.Hash(), p)
	close(p.done)
}

// waitPending waits until blob h, if PutSmallAsync accepted it, is written.
func (s *Store) waitPending(h bt.InfoHash) {
	if v, ok := s.async.pend.Load(h); ok {
		s.await(v.(*pendingBlob))
	}
}

// isPending reports whether blob h waits to be written.
func (s *Store) isPending(h bt.InfoHash) bool {
	_, ok := s.async.pend.Load(h)
	return ok
}

// Flush waits until every blob PutSmallAsync accepted before the call is
// written, retrying those that failed (a full disk, say); it returns the
// error of those that still fail.
func (s *Store) Flush() error {
	var waits []*pendingBlob
	s.async.pend.Range(func(_, v any) bool {
		waits = append(waits, v.(*pendingBlob))
		return true
	})
	for _, p := range waits {
		s.await(p)
	}
	s.async.mu.Lock()
	failed := s.async.failed
	s.async.failed = nil
	s.async.mu.Unlock()
	var errs []error
	for _, p := range failed {
		if _, err := s.PutSmall(p.data); err != nil {
			errs = append(errs, err)
			s.async.mu.Lock()
			s.async.failed = append(s.async.failed, p)
			s.async.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}
