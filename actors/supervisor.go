package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/thejerf/suture/v4"
)

// Service is anything a Supervisor can run: Serve runs until ctx ends or it
// fails.
type Service = suture.Service

// Supervisor runs services and restarts them as their class says.
type Supervisor = suture.Supervisor

// NewSupervisor returns a supervisor with DelugeFS defaults: failures decay
// over 30 s, more than 5 recent failures back off for 2 s (with jitter), a
// child gets 10 s to stop, and every event is logged to log.
func NewSupervisor(name string, log *slog.Logger) *Supervisor {
	if log == nil {
		log = slog.Default()
	}
	return suture.New(name, suture.Spec{
		FailureDecay:     30,
		FailureThreshold: 5,
		FailureBackoff:   2 * time.Second,
		Timeout:          10 * time.Second,
		EventHook: func(e suture.Event) {
			switch e.Type() {
			case suture.EventTypeServicePanic, suture.EventTypeServiceTerminate, suture.EventTypeStopTimeout:
				log.Warn("supervisor event", "supervisor", name, "event", e.String())
			default:
				log.Info("supervisor event", "supervisor", name, "event", e.String())
			}
		},
	})
}

// named is a Service with a name for the supervisor's log.
type named struct {
	name string
	fn   func(ctx context.Context) error
}

func (n *named) Serve(ctx context.Context) error { return n.fn(ctx) }
func (n *named) String() string                  { return n.name }

// Func makes a permanent Service named name out of fn.
func Func(name string, fn func(ctx context.Context) error) Service {
	return &named{name: name, fn: fn}
}

// Transient wraps s so that it is done when Serve returns nil (or the context
// ends) and restarted only when it fails.
func Transient(s Service) Service {
	return &named{name: fmt.Sprint(s), fn: func(ctx context.Context) error {
		err := s.Serve(ctx)
		if err == nil || ctx.Err() != nil {
			return suture.ErrDoNotRestart
		}
		return err
	}}
}

// Temporary wraps s so that it is never restarted, whatever it returns.
func Temporary(s Service) Service {
	return &named{name: fmt.Sprint(s), fn: func(ctx context.Context) error {
		if err := s.Serve(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("%w: %w", suture.ErrDoNotRestart, err)
		}
		return suture.ErrDoNotRestart
	}}
}

// Critical wraps s so that its failure terminates its supervisor's tree:
// the error reaches whoever runs the root.
func Critical(s Service) Service {
	return &named{name: fmt.Sprint(s), fn: func(ctx context.Context) error {
		err := s.Serve(ctx)
		if ctx.Err() != nil {
			return err
		}
		if err == nil {
			err = errors.New("stopped")
		}
		return &criticalError{name: fmt.Sprint(s), err: err}
	}}
}

// criticalError carries a critical service's failure up the tree.
type criticalError struct {
	name string
	err  error
}

func (e *criticalError) Error() string { return e.name + ": " + e.err.Error() }
func (e *criticalError) Unwrap() []error {
	return []error{suture.ErrTerminateSupervisorTree, e.err}
}

// Run serves sup until ctx ends and returns nil then, or returns the error
// of a Critical service whose failure brought the tree down.
func Run(ctx context.Context, sup *Supervisor) error {
	err := sup.Serve(ctx)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	var crit *criticalError
	if errors.As(err, &crit) {
		return crit
	}
	return err
}
