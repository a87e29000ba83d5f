package actors

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// echo is an actor that doubles numbers.
func echo(ctx context.Context, mailbox chan Request[int, int]) error {
	for {
		select {
		case r := <-mailbox:
			if r.Q < 0 {
				r.Reply(0, errors.New("negative"))
				continue
			}
			r.Reply(2*r.Q, nil)
		case <-ctx.Done():
			return nil
		}
	}
}

func TestCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		mb := make(chan Request[int, int])
		go echo(ctx, mb)
		got, err := Call(ctx, mb, 21, time.Second)
		if err != nil || got != 42 {
			t.Fatalf("Call = %d, %v; want 42", got, err)
		}
		if _, err := Call(ctx, mb, -1, time.Second); err == nil || err.Error() != "negative" {
			t.Fatalf("error not passed through: %v", err)
		}
	})
}

func TestCallTimesOutOnDeadActor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb := make(chan Request[int, int]) // nobody reads it
		start := time.Now()
		_, err := Call(t.Context(), mb, 1, 3*time.Second)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("gave up after %v, want 3s", d)
		}
		// An actor that takes the request but never answers.
		mb2 := make(chan Request[int, int], 1)
		if _, err := Call(t.Context(), mb2, 1, time.Second); !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		// A late answer does not block the actor.
		(<-mb2).Reply(5, nil)
	})
}

func TestSignalCoalesces(t *testing.T) {
	s := NewSignal()
	for range 10 {
		s.Notify()
	}
	<-s.C()
	select {
	case <-s.C():
		t.Fatal("ten notifies gave two wake-ups")
	default:
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 5 * time.Second}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{1, 2, 4, 5, 5}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("waits %v, want %v s", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Fatalf("after Reset: %v", d)
	}
}

func TestPermanentRestartsTransientDoesNot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		sup := NewSupervisor("test", quiet)
		var perm, trans, temp atomic.Int32
		permDone := make(chan struct{})
		sup.Add(Func("perm", func(ctx context.Context) error {
			if perm.Add(1) == 3 {
				close(permDone)
				<-ctx.Done()
				return nil
			}
			return errors.New("boom")
		}))
		sup.Add(Transient(Func("trans", func(ctx context.Context) error {
			trans.Add(1)
			return nil
		})))
		sup.Add(Temporary(Func("temp", func(ctx context.Context) error {
			temp.Add(1)
			return errors.New("boom")
		})))
		sup.Add(Func("panicky", func(ctx context.Context) error {
			if perm.Load() < 2 {
				panic("a bug")
			}
			<-ctx.Done()
			return nil
		}))
		errc := make(chan error, 1)
		go func() { errc <- Run(ctx, sup) }()
		<-permDone
		synctest.Wait()
		if trans.Load() != 1 || temp.Load() != 1 {
			t.Fatalf("transient ran %d times, temporary %d; want 1 each", trans.Load(), temp.Load())
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	})
}

func TestCriticalStopsTheTree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sup := NewSupervisor("root", quiet)
		child := NewSupervisor("node", quiet)
		sup.Add(child)
		siblingStopped := make(chan struct{})
		child.Add(Func("sibling", func(ctx context.Context) error {
			<-ctx.Done()
			close(siblingStopped)
			return nil
		}))
		child.Add(Critical(Func("meta", func(ctx context.Context) error {
			return errors.New("repository unreadable")
		})))
		err := Run(t.Context(), sup)
		if err == nil {
			t.Fatal("Run = nil, want the critical failure")
		}
		if want := "meta: repository unreadable"; err.Error() != want {
			t.Fatalf("Run = %q, want %q", err, want)
		}
		<-siblingStopped
	})
}

func TestChildren(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		sup := NewSupervisor("swarms", quiet)
		go sup.Serve(ctx)
		synctest.Wait() // the supervisor is up and idle
		kids := NewChildren[string](sup)
		stopped := make(chan string, 2)
		mk := func(name string) func() Service {
			return func() Service {
				return Func(name, func(ctx context.Context) error {
					<-ctx.Done()
					stopped <- name
					return nil
				})
			}
		}
		if _, created := kids.Ensure("a", mk("a")); !created {
			t.Fatal("first Ensure did not create")
		}
		if _, created := kids.Ensure("a", mk("a2")); created {
			t.Fatal("second Ensure created again")
		}
		kids.Ensure("b", mk("b"))
		if kids.Len() != 2 {
			t.Fatalf("Len = %d", kids.Len())
		}
		if err := kids.Remove("a", time.Second); err != nil {
			t.Fatal(err)
		}
		if got := <-stopped; got != "a" {
			t.Fatalf("stopped %q, want a", got)
		}
		if _, ok := kids.Get("a"); ok || kids.Len() != 1 {
			t.Fatal("a still present")
		}
	})
}
