//go:build !race

package pcpu

import (
	"sync/atomic"
	"unsafe"
)

// bump increments v with a plain load and store: only its own P writes it
// (the caller is pinned), and Sum's concurrent atomic loads of a word see
// either the old or the new value (the Go memory model guarantees that
// for word-sized locations; amd64 and arm64 store a word in one
// instruction). The race detector cannot know that the writer is alone,
// so race builds use bump_race.go.
func bump(v *atomic.Int64) int64 {
	p := (*int64)(unsafe.Pointer(v))
	*p++
	return *p
}
