// Package actors is the thin layer DelugeFS puts around
// github.com/thejerf/suture/v4: supervisors with our defaults and logging,
// restart classes, request/reply with deadlines, coalesced wake-ups, maps of
// children started and stopped by key, and backoff for reconnect loops.
//
// # Structure
//
// An actor is a value with a Serve(ctx) error method: one goroutine, one
// select loop, state owned by that loop. Other goroutines talk to it through
// channels: a request struct carries a reply channel of capacity one, so the
// actor never blocks answering (see Call and Reply). Actors are started,
// watched and restarted by a Supervisor: a failed or panicking child is
// restarted under backoff with a decaying failure count, without taking its
// siblings down.
//
// # Restart classes
//
// A plain Service is permanent: restarted whenever it returns. Transient
// wraps a service that is done when it returns nil and restarted only on
// failure; Temporary is never restarted; Critical takes its supervisor down
// (and the tree above, unless a supervisor stops the propagation) when it
// fails, for a part without which the process has no point.
//
// # Deadlines
//
// Every Call carries a deadline, so a caller without a context of its own
// (the FUSE layer) never waits forever on a dead actor.
//
// This package holds no domain types.
package actors
