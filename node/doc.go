// Package node is one disk's worth of a volume: a --root directory with its
// identity (node.json), its namespace (meta.Repo in meta.git) and its blobs
// (piece.Store), run as one supervised unit.
//
// Open checks the root before anything starts: a root made by --create for
// another volume, a root that is not a volume, a --create on a non-empty
// directory and a root already used by another process are refused with one
// clear error each. Serve runs the node's actors under its supervisor.
package node
