//go:build !unix

package geocache

import (
	"errors"
	"os"
)

// Without mmap the file is read into memory.
func mmapFile(*os.File, int) ([]byte, error) { return nil, errors.ErrUnsupported }

func munmap([]byte) error { return nil }
