package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// An operations record (Repo.UpdateLogged) holds updates as the operations
// their Tx made, in order, so that a replay can apply them again on the
// commit they were made on: each is a tag byte and length-prefixed (u32)
// fields:
//
//	'M' msg               an update's message; its operations follow
//	'P' kind path data    Put: data is the manifest (file), the marker
//	                      (directory) or the target (symlink)
//	'R' path              Remove
//	'N' from to           Rename
const (
	opMsg    = 'M'
	opPut    = 'P'
	opRemove = 'R'
	opRename = 'N'
)

func appendField(b []byte, f string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

func appendOp(b []byte, tag byte, fields ...string) []byte {
	b = append(b, tag)
	for _, f := range fields {
		b = appendField(b, f)
	}
	return b
}

// appendPut encodes a Put: its kind byte precedes the fields.
func appendPut(b []byte, k Kind, path string, data []byte) []byte {
	b = append(b, opPut, byte(k))
	b = appendField(b, path)
	return appendField(b, string(data))
}

// loggedUpdate is one update read back from an operations record.
type loggedUpdate struct {
	msg string
	ops []loggedOp
}

type loggedOp struct {
	tag      byte
	kind     Kind
	path, to string
	data     []byte
}

var errBadOps = errors.New("meta: malformed operations record")

// parseOps decodes the operations of a record.
func parseOps(p []byte) ([]loggedUpdate, error) {
	var out []loggedUpdate
	field := func() ([]byte, bool) {
		f, rest := cut(p)
		if f == nil {
			return nil, false
		}
		p = rest
		return f, true
	}
	for len(p) > 0 {
		tag := p[0]
		p = p[1:]
		if tag != opMsg && len(out) == 0 {
			return nil, errBadOps
		}
		var ok bool
		var a, b []byte
		switch tag {
		case opMsg:
			if a, ok = field(); !ok {
				return nil, errBadOps
			}
			out = append(out, loggedUpdate{msg: string(a)})
			continue
		case opPut:
			if len(p) < 1 {
				return nil, errBadOps
			}
			kind := Kind(p[0])
			p = p[1:]
			if a, ok = field(); !ok {
				return nil, errBadOps
			}
			if b, ok = field(); !ok {
				return nil, errBadOps
			}
			u := &out[len(out)-1]
			u.ops = append(u.ops, loggedOp{tag: tag, kind: kind, path: string(a), data: b})
		case opRemove:
			if a, ok = field(); !ok {
				return nil, errBadOps
			}
			u := &out[len(out)-1]
			u.ops = append(u.ops, loggedOp{tag: tag, path: string(a)})
		case opRename:
			if a, ok = field(); !ok {
				return nil, errBadOps
			}
			if b, ok = field(); !ok {
				return nil, errBadOps
			}
			u := &out[len(out)-1]
			u.ops = append(u.ops, loggedOp{tag: tag, path: string(a), to: string(b)})
		default:
			return nil, errBadOps
		}
	}
	return out, nil
}

// apply makes the operation again in tx.
func (o loggedOp) apply(tx *Tx) error {
	switch o.tag {
	case opPut:
		var e *Entry
		var err error
		switch o.kind {
		case KindFile, KindDir:
			e, err = decodeManifest(o.data, o.kind)
		case KindSymlink:
			e = &Entry{Kind: KindSymlink, Mode: 0o777, Target: string(o.data)}
		default:
			err = fmt.Errorf("%w: kind %d", ErrInvalid, o.kind)
		}
		if err != nil {
			return fmt.Errorf("put %q: %w", o.path, err)
		}
		return tx.Put(o.path, e)
	case opRemove:
		return tx.Remove(o.path)
	case opRename:
		return tx.Rename(o.path, o.to)
	}
	return errBadOps
}
