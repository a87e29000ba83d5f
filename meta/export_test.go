package meta

import (
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// PackStorer is a read-only object storer over the packs of the
// repository at gitDir, for tests that integrate from many sources (go-git's
// storage loads pack indexes slowly). Only EncodedObject and
// HasEncodedObject are implemented.
func PackStorer(gitDir string) (storer.EncodedObjectStorer, func(), error) {
	ps := newPackSet(gitDir)
	if err := ps.refresh(1); err != nil {
		return nil, nil, err
	}
	return packStorer{ps: ps}, ps.close, nil
}

type packStorer struct {
	storer.EncodedObjectStorer // nil: the other methods panic
	ps                         *packSet
}

func (s packStorer) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	typ, data, err := s.ps.read(h, 0)
	if err != nil {
		return nil, plumbing.ErrObjectNotFound
	}
	if t != plumbing.AnyObject && t != typ {
		return nil, plumbing.ErrObjectNotFound
	}
	o := &plumbing.MemoryObject{}
	o.SetType(typ)
	o.Write(data)
	return o, nil
}

func (s packStorer) HasEncodedObject(h plumbing.Hash) error {
	if !s.ps.has(h) {
		return plumbing.ErrObjectNotFound
	}
	return nil
}
