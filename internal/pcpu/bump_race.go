//go:build race

package pcpu

import "sync/atomic"

// bump increments v, which only the pinned caller's P writes, with an
// atomic load and store, so that the race detector sees Sum's loads
// ordered against it.
func bump(v *atomic.Int64) int64 {
	n := v.Load() + 1
	v.Store(n)
	return n
}
