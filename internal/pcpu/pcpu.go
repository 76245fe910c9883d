// Package pcpu shards hot counters by the P (logical processor) a goroutine
// runs on, so that writes from different cores land on different cache lines
// and no lookup writes a contended shared word.
package pcpu

import (
	"runtime"
	"sync/atomic"
	_ "unsafe" // for go:linkname
)

// procPin and procUnpin are the runtime's own per-P pinning, which
// sync.Pool uses. The runtime keeps them reachable by linkname on purpose
// (runtime/proc.go lists them among the symbols that widely used packages
// pull, whose signatures must not change), so the link does not break
// with a Go release.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// Counter names one counter of a Counters; its user declares the names.
type Counter uint8

// MaxCounters is how many counters a Counters holds.
const MaxCounters = 4

// cell is one P's counters, padded so that two cells never share a cache
// line (128 bytes also defeats the adjacent-line prefetcher).
type cell struct {
	v [MaxCounters]atomic.Int64
	_ [128 - MaxCounters*8]byte
}

// Counters is a set of per-P counters. The zero value is not usable; use
// New. A counter must be written only through Inc, or only through Local
// cells' atomic Add, never both.
type Counters struct {
	cells []cell
	mask  int
}

// New returns counters for at least as many Ps as the machine has.
func New() *Counters {
	n := 1
	for n < max(runtime.GOMAXPROCS(0), runtime.NumCPU()) {
		n <<= 1
	}
	return &Counters{cells: make([]cell, n), mask: n - 1}
}

// Inc adds one to counter k of the caller's P and returns the P's new
// count. While the goroutine is pinned to its P nothing else runs there,
// so when the cell is the P's own the increment needs no locked
// instruction: a plain load and store (see bump), where an atomic add is a
// locked instruction (~3 ns of a 31 ns hit, measured).
func (c *Counters) Inc(k Counter) int64 {
	id := procPin()
	var n int64
	if id < len(c.cells) {
		n = bump(&c.cells[id].v[k])
	} else { // GOMAXPROCS grew past the cells: Ps share them
		n = c.cells[id&c.mask].v[k].Add(1)
	}
	procUnpin()
	return n
}

// Cell is one P's counter k, for a caller that adds to it atomically and
// must later undo its add on the same cell (a guard: enter, then exit).
type Cell = atomic.Int64

// Local returns counter k of the P the caller runs on now. The goroutine
// may move to another P at once; the cell stays valid for Add.
func (c *Counters) Local(k Counter) *Cell {
	id := procPin()
	procUnpin()
	return &c.cells[id&c.mask].v[k]
}

// Sum returns the sum of counter k over all Ps. It is not a snapshot:
// cells written during the call may or may not be counted.
func (c *Counters) Sum(k Counter) int64 {
	var n int64
	for i := range c.cells {
		n += c.cells[i].v[k].Load()
	}
	return n
}

// Pin pins the calling goroutine to its P, so that nothing else runs there
// until Unpin, and returns the P's id. The caller must not block, allocate
// or call anything that might in between.
func Pin() int { return procPin() }

// Unpin ends Pin.
func Unpin() { procUnpin() }

// Ps returns how many Ps the counters have cells for.
func (c *Counters) Ps() int { return len(c.cells) }
