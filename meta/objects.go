package meta

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// objWriter writes loose git objects without fsync; the caller makes a
// whole batch durable with one barrier (sync). Owned by the actor.
type objWriter struct {
	dir     string          // the bare repository
	haveDir map[string]bool // objects/xx directories known to exist
	written []string        // files and directories made since the last sync
	// pending holds the loose-object files of the current commit, made
	// (compressed) but not yet written: they go into the commit's journal
	// record first, then to their files (flush) after the callers are
	// answered, off the latency path.
	pending      []journalObj
	pendingBytes int
	zw           *zlib.Writer // BestSpeed, for small objects
	zwBig        *zlib.Writer // NoCompression, for trees and objects over bigObject
	buf          bytes.Buffer
	n            int // objects written since the last sync (for tests and stats)
}

// bigObject is the size above which objects are stored without
// compression. Trees are never compressed: mostly SHA-1s, they gain
// little, and deflating a large directory's tree on every commit was a
// fifth of the CPU of a small-file close. git gc compresses them later.
const bigObject = 256 << 10

func newObjWriter(gitDir string) *objWriter {
	zw, _ := zlib.NewWriterLevel(nil, zlib.BestSpeed)
	zwBig, _ := zlib.NewWriterLevel(nil, zlib.NoCompression)
	return &objWriter{dir: gitDir, haveDir: make(map[string]bool), zw: zw, zwBig: zwBig}
}

// write makes data a pending loose object of the given type unless an
// object with that id already exists loose. (A packed
// copy is not looked for: a duplicate loose object is harmless.)
func (w *objWriter) write(h plumbing.Hash, typ string, data []byte) error {
	hex := h.String()
	sub := filepath.Join(w.dir, "objects", hex[:2])
	final := filepath.Join(sub, hex[2:])
	if _, err := os.Lstat(final); err == nil {
		return nil
	}
	w.buf.Reset()
	zw := w.zw
	if len(data) > bigObject || typ == "tree" {
		zw = w.zwBig
	}
	zw.Reset(&w.buf)
	zw.Write([]byte(typ))
	zw.Write([]byte{' '})
	zw.Write(strconv.AppendInt(nil, int64(len(data)), 10))
	zw.Write([]byte{0})
	zw.Write(data)
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compress object %s: %w", hex, err)
	}
	w.pending = append(w.pending, journalObj{id: h, file: bytes.Clone(w.buf.Bytes())})
	w.pendingBytes += w.buf.Len()
	return nil
}

// flush writes the pending objects to their files (without fsync). With
// direct set, each is created in place (O_EXCL) rather than through a temp
// file and a rename: one metadata operation instead of two. Only for
// objects a journal record holds, since replay rewrites any that a crash
// left half-written.
func (w *objWriter) flush(direct bool) error {
	for len(w.pending) > 0 {
		o := w.pending[0]
		write := w.writeFile
		if direct {
			write = w.createFile
		}
		if err := write(o.id, o.file); err != nil {
			return err
		}
		w.pendingBytes -= len(o.file)
		w.pending[0] = journalObj{}
		w.pending = w.pending[1:]
	}
	w.pending, w.pendingBytes = nil, 0
	return nil
}

// createFile creates the loose-object file of h in place; an existing file
// is left alone.
func (w *objWriter) createFile(h plumbing.Hash, file []byte) error {
	hex := h.String()
	sub := filepath.Join(w.dir, "objects", hex[:2])
	if err := w.mkdir(sub); err != nil {
		return fmt.Errorf("write object %s: %w", hex, err)
	}
	final := filepath.Join(sub, hex[2:])
	f, err := os.OpenFile(final, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write object %s: %w", hex, err)
	}
	_, err = f.Write(file)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(final)
		return fmt.Errorf("write object %s: %w", hex, err)
	}
	w.written = append(w.written, final)
	w.n++
	return nil
}

func (w *objWriter) mkdir(sub string) error {
	if w.haveDir[sub] {
		return nil
	}
	if err := os.Mkdir(sub, 0o755); err == nil {
		w.written = append(w.written, sub)
	} else if !errors.Is(err, os.ErrExist) {
		return err
	}
	w.haveDir[sub] = true
	return nil
}

// writeFile stores the loose-object file bytes of object h (temp file and
// rename), replacing any file there.
func (w *objWriter) writeFile(h plumbing.Hash, file []byte) error {
	hex := h.String()
	sub := filepath.Join(w.dir, "objects", hex[:2])
	if err := w.mkdir(sub); err != nil {
		return fmt.Errorf("write object %s: %w", hex, err)
	}
	final := filepath.Join(sub, hex[2:])
	tmp := filepath.Join(sub, "tmp_obj_"+hex[2:])
	if err := os.WriteFile(tmp, file, 0o444); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write object %s: %w", hex, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write object %s: %w", hex, err)
	}
	w.written = append(w.written, final)
	w.n++
	return nil
}

// treeEnt is one entry of a git tree being encoded.
type treeEnt struct {
	name string // git (escaped) name
	mode filemode.FileMode
	oid  plumbing.Hash
}

// gitLess orders tree entries as git does: by name, a tree's name compared
// as if followed by '/'.
func gitLess(a, b treeEnt) int {
	an, bn := a.name, b.name
	if a.mode == filemode.Dir {
		an += "/"
	}
	if b.mode == filemode.Dir {
		bn += "/"
	}
	switch {
	case an < bn:
		return -1
	case an > bn:
		return 1
	}
	return 0
}

func encodeTree(ents []treeEnt) []byte {
	sorted := true
	for i := 1; i < len(ents); i++ {
		if gitLess(ents[i-1], ents[i]) >= 0 {
			sorted = false
			break
		}
	}
	if !sorted {
		slices.SortFunc(ents, gitLess)
	}
	size := 0
	for _, e := range ents {
		size += len(e.name) + 28
	}
	b := make([]byte, 0, size)
	for _, e := range ents {
		b = append(b, modeString(e.mode)...)
		b = append(b, ' ')
		b = append(b, e.name...)
		b = append(b, 0)
		b = append(b, e.oid[:]...)
	}
	return b
}

func modeString(m filemode.FileMode) string {
	switch m {
	case filemode.Dir:
		return "40000"
	case filemode.Executable:
		return "100755"
	case filemode.Symlink:
		return "120000"
	case filemode.Submodule:
		return "160000"
	}
	return "100644"
}

// writeTrees writes the git trees of every changed directory under n
// (bottom-up) and returns n with its tree id filled in; unchanged subtrees
// are not visited. New nodes are returned rather than modified, since n
// may be shared with a published snapshot.
func (w *objWriter) writeTrees(n *node) (*node, error) {
	if !n.oid.IsZero() {
		return n, nil
	}
	kids := n.kids
	cp := *n
	if cp.marker.IsZero() {
		m := encodeManifest(n.e)
		cp.marker = blobHash(m)
		if err := w.write(cp.marker, "blob", m); err != nil {
			return nil, err
		}
	}
	ents := make([]treeEnt, 0, kids.Len()+1)
	ents = append(ents, treeEnt{markerName, filemode.Regular, cp.marker})
	it := n.kids.Iterator()
	for !it.Done() {
		name, c, _ := it.Next()
		var mode filemode.FileMode
		switch c.e.Kind {
		case KindDir:
			if c.oid.IsZero() {
				nc, err := w.writeTrees(c)
				if err != nil {
					return nil, err
				}
				kids = kids.Set(name, nc)
				c = nc
			}
			mode = filemode.Dir
		case KindSymlink:
			mode = filemode.Symlink
		default:
			mode = filemode.Regular
			if c.e.Mode&0o111 != 0 {
				mode = filemode.Executable
			}
		}
		ents = append(ents, treeEnt{escapeName(name), mode, c.oid})
	}
	data := encodeTree(ents)
	cp.oid = objectHash("tree", data)
	cp.kids = kids
	if err := w.write(cp.oid, "tree", data); err != nil {
		return nil, err
	}
	return &cp, nil
}
