package meta

import "github.com/benbjohnson/immutable"

func newKidsBuilder() *immutable.SortedMapBuilder[string, *node] {
	return immutable.NewSortedMapBuilder[string, *node](nameCmp{})
}

// kidsBuilder builds a directory's children map.
type kidsBuilder = *immutable.SortedMapBuilder[string, *node]
