//go:build !linux

package geocache

import (
	"errors"
	"os"
)

// populate faults b in by reading one byte per page.
func populate(b []byte) error {
	page := os.Getpagesize()
	var s byte
	for i := 0; i < len(b); i += page {
		s += b[i]
	}
	sink = s
	return nil
}

var sink byte

func residentPages(b []byte) ([]bool, error) { return nil, errors.ErrUnsupported }

func lockMemory(b []byte) error {
	return &MlockError{Size: int64(len(b)), Limit: -1, Err: errors.ErrUnsupported}
}
