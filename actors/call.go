package actors

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrTimeout is returned by Call when the actor did not take the request or
// did not answer before the deadline.
var ErrTimeout = errors.New("actors: request timed out")

// Request is a message to an actor that wants an answer. The actor answers
// exactly once with Reply; the reply channel has capacity one, so answering
// never blocks, even if the caller has given up.
type Request[Q, A any] struct {
	Q     Q
	reply chan result[A]
}

type result[A any] struct {
	a   A
	err error
}

// Reply answers the request. Only the first answer counts.
func (r Request[Q, A]) Reply(a A, err error) {
	select {
	case r.reply <- result[A]{a, err}:
	default:
	}
}

// Call sends q to the actor reading mailbox and waits for its answer, for at
// most timeout and never past ctx. A timeout of 0 means no deadline of its
// own (ctx alone bounds the wait).
func Call[Q, A any](ctx context.Context, mailbox chan<- Request[Q, A], q Q, timeout time.Duration) (A, error) {
	var zero A
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req := Request[Q, A]{Q: q, reply: make(chan result[A], 1)}
	select {
	case mailbox <- req:
	case <-ctx.Done():
		return zero, deadlineErr(ctx, "send")
	}
	select {
	case r := <-req.reply:
		return r.a, r.err
	case <-ctx.Done():
		return zero, deadlineErr(ctx, "reply")
	}
}

func deadlineErr(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w waiting for %s", ErrTimeout, what)
	}
	return fmt.Errorf("actors: waiting for %s: %w", what, context.Cause(ctx))
}

// Signal is a coalesced wake-up: any number of Notify calls before the
// receiver looks become one wake-up. The zero value is not usable; make one
// with NewSignal.
type Signal struct{ c chan struct{} }

// NewSignal returns a Signal with nothing pending.
func NewSignal() Signal { return Signal{c: make(chan struct{}, 1)} }

// Notify marks a wake-up pending; it never blocks.
func (s Signal) Notify() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// C is the channel to select on.
func (s Signal) C() <-chan struct{} { return s.c }

// Backoff yields growing waits for retry loops: Min, doubling to Max, with
// up to 25% jitter taken from Jitter (which defaults to none). Reset after a
// success. Not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	Jitter   func(time.Duration) time.Duration
	cur      time.Duration
}

// Next returns the wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	} else {
		b.cur = min(2*b.cur, b.Max)
	}
	d := b.cur
	if b.Jitter != nil {
		d += b.Jitter(d / 4)
	}
	return d
}

// Reset starts the sequence again from Min.
func (b *Backoff) Reset() { b.cur = 0 }
