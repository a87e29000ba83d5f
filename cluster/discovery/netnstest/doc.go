// Package netnstest builds small networks of "hosts" for tests: Linux
// network namespaces joined by a bridge, with private addresses (Subnet,
// 10.77.0.0/24) used only inside them. Nothing is routed out: the bridge
// lives in a namespace of its own, the hosts have no default route, and
// the root namespace is not touched. Multicast works across the bridge
// (snooping off), so nodes find each other by real mDNS.
//
// New(t, n) makes the network and registers its removal in t.Cleanup:
// processes started through it are killed (their whole process group),
// then the namespaces are deleted, which takes the veths and the bridge
// with them. Namespace names carry the creating pid (Prefix +
// "<pid>-<n>-…"), so parallel runs do not collide and Clean, which New
// calls first, removes only leftovers of runs whose process is gone.
//
// Processes run inside a host through Host.Command (nsenter --net, so the
// file system and FUSE mounts are shared with the test) or, for Go test
// code, through Host.StartChild, which re-executes the test binary with
// ChildEnv set; the test's TestMain hands control to the child role with
// Main. A Proc's stdout lines can be waited for (WaitLine); closing its
// stdin (Stop) asks it to stop cleanly, Kill kills it. Host.Cut and
// Host.Restore take the host's bridge port down and up.
//
// It needs root and the ip and nsenter commands.
package netnstest
