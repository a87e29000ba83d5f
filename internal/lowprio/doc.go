// Package lowprio runs background work at the lowest CPU priority, so that
// on a machine with few CPUs it uses the time the latency-bound threads
// (FUSE requests, commits waiting for the disk) leave idle instead of
// delaying them.
package lowprio
