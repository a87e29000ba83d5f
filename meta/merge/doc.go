// Package merge is the three-way merge of DelugeFS namespace trees: a pure,
// deterministic function over plain data (no I/O, no clock, no goroutines),
// in the way etcd-io/raft keeps its core apart from its I/O. Package meta
// flattens the merge base and the two heads into Trees, calls Trees, and
// writes the Result as a merge commit; this package knows nothing of git.
//
// # Trees
//
// A Tree is a sorted slice of Entry{Path, Leaf}. A Leaf is a file, a
// symlink or a directory marker, with a content id (Hash: the git object id
// of the manifest, link target or marker blob) and a mode. A directory
// exists when it has a marker or any leaf below it. Paths are sorted by
// Compare, component by component ('/' before any other byte), which is the
// order of a depth-first walk over directories whose children are sorted by
// name; FromMap builds a Tree from a map. The merge is one linear walk over
// the three sorted slices, plus a binary search per conflict: merging two
// heads that differ in 10,000 of 100,000 paths takes about 10 ms of CPU
// (BenchmarkTrees).
//
// # Rules
//
// Each path is decided against the merge base:
//
//   - a change on one side wins (a change is anything that makes the leaf
//     differ: kind, content id or mode; adding and deleting are changes);
//   - the same change on both sides is no conflict;
//   - a modification beats a delete (ModifyDelete);
//   - both sides changed a file or symlink differently, or added different
//     ones at one path: both are kept (Conflict). The winner stays at the
//     path: the greater leaf by content id (then kind, then mode), never
//     the side that happens to be "ours", so every peer picks the same. The
//     loser moves to ConflictName(path, loser's node, loser's time);
//   - a file or symlink against a directory at one path keeps both: the
//     directory stays and the file moves to its conflict name (FileDir).
//     This covers a file and a directory marker at one path, and a file
//     that ends up with entries below it (one side deleted a directory and
//     made a file of its name, the other added a file inside);
//   - both sides changed a directory's marker differently: the greater
//     marker is kept (DirAttrs); attributes are lost, never contents;
//   - a directory deleted on one side in which the other side added or
//     modified something stays, with its marker (DirKept), and so do the
//     added or modified entries (a modification beats a delete); what was
//     only deleted below it stays deleted. (A side that removed only a
//     directory's marker and kept entries below it made a change like any
//     other: the marker is not put back.)
//
// A rename is a delete plus an add, so it never loses data: a file renamed
// on one side and modified on the other is kept at both names.
//
// # Conflict names
//
// The losing version of "dir/film.mkv" becomes
// "dir/film.conflict-<node>-<time>.mkv": the extension stays last so the
// copy still opens with the same application (as Syncthing's
// name.sync-conflict-<date>-<time>-<by>.ext); a name without one gets the
// suffix at its end ("README.conflict-n1-20261125T154700Z"). If that name
// is already taken (by an entry of the merged tree, a directory, or another
// conflict copy) a counter is added: "...-20261125T154700Z-2.mkv". Copies
// are named in path order, so the counters are the same on every peer.
//
// # Determinism and convergence
//
// Trees(base, a, b) and Trees(base, b, a) return the same Result, byte for
// byte. For two peers that merge the same heads to make the same merge
// commit, and so converge instead of merging each other's merges forever,
// the caller must make everything else a function of the merged commits:
//
//   - parents sorted by commit id;
//   - base: a common ancestor chosen the same way on every peer when there
//     are several (any common ancestor keeps the no-loss guarantee below;
//     the latest one gives the fewest conflicts);
//   - Head.Node and Head.Time from the commits themselves, never from the
//     merging node or its clock: for a commit made by a node, its node id
//     and commit time; for a merge commit, the greatest (time, node) of its
//     parents' identities;
//   - a fixed author and committer (name, e-mail), the commit time taken as
//     the latest of the parents' commit times, and a message built from
//     the sorted parents and the Events only.
//
// That is not enough when merges themselves are broadcast. Merging heads
// pairwise (each node merges its head with each head it receives and tells
// the others) converges in the tests with two or three nodes, but with
// four or more and random delays it makes merge storms: A merges X with Y
// while B merges Y with Z, then each merges the other's merge, and so on,
// each merge a new head that needs merging (thousands of merge commits for
// a hundred changes). What converges for any number of nodes (tested with
// up to seven) is one canonical merge commit per set of joined changes:
//
//   - the frontier of two heads is the set of non-merge commits among their
//     ancestors that no other such commit descends from;
//   - a node that receives a head does nothing if the head is its own or an
//     ancestor of it; otherwise its new head is the frontier's only commit,
//     or the canonical merge of the frontier: parents the frontier sorted
//     by id, tree the fold of Trees over the frontier in that order, each
//     step against the latest common ancestor of what is merged so far and
//     the next commit; it announces the head only when it made a new merge.
//
// Every node that knows the same changes then builds the same commit, and
// once every change has reached every node all heads are equal. A
// canonical merge superseded before anyone committed on top of it is no
// head's ancestor any more and can be collected; every change stays in
// history.
//
// No file version is lost by either protocol: a version that a side holds
// disappears from a merge only when the other side, after the merge base,
// deleted or overwrote it (a later, deliberate change) or when it moves to
// a conflict name.
//
// # Errors
//
// Trees refuses (ErrInvalid, wrapped with the tree and path) unsorted or
// repeated paths, malformed paths, unknown kinds, a non-directory at the
// root and node ids that are empty, longer than 64 bytes or hold '/' or
// NUL. A side that holds a file and entries below it is accepted and
// repaired like a file/dir clash.
//
// # Concurrency
//
// Trees is safe for concurrent use; it does not modify its inputs. The
// Result's Tree may share its Path strings with the inputs.
package merge
