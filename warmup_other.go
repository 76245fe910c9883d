//go:build !linux

package geocache

import (
	"errors"
	"os"
	"sync/atomic"
)

// populate faults b in by reading one byte per page.
func populate(b []byte) (fallback bool, err error) {
	page := os.Getpagesize()
	var s byte
	for i := 0; i < len(b); i += page {
		s += b[i]
	}
	sink.Store(uint32(s))
	return true, nil
}

// sink keeps the reads of touch from being optimized away.
var sink atomic.Uint32

func residentPages(b []byte) ([]bool, error) { return nil, errors.ErrUnsupported }

func lockMemory(b []byte) error {
	return &MlockError{Size: int64(len(b)), Limit: -1, Err: errors.ErrUnsupported}
}
