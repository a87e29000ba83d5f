//go:build !unix

package piece

import (
	"errors"
	"os"
)

// mapFile is not supported here: Blob.Map reports false.
func mapFile(*os.File, int64) ([]byte, error) { return nil, errors.ErrUnsupported }

func unmapFile([]byte) {}
