package pcpu

import (
	"runtime"
	"sync"
	"testing"
)

const (
	first Counter = iota
	second
	unused
	guard
)

// Concurrent pinned increments lose nothing, on every P.
func TestIncCountsEverything(t *testing.T) {
	c := New()
	const g, n = 8, 20000
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for i := range n {
				c.Inc(first)
				c.Inc(second)
				if i%100 == 0 {
					runtime.Gosched() // move between Ps
				}
			}
		})
	}
	wg.Wait()
	if a, b, u := c.Sum(first), c.Sum(second), c.Sum(unused); a != g*n || b != g*n || u != 0 {
		t.Fatalf("sums %d %d %d, want %d %d 0", a, b, u, g*n, g*n)
	}
}

// A guard adds and removes on the cell it got, wherever it runs by then.
func TestLocalGuard(t *testing.T) {
	c := New()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 10000 {
				cell := c.Local(guard)
				cell.Add(1)
				if i%100 == 0 {
					runtime.Gosched()
				}
				cell.Add(-1)
			}
		})
	}
	cell := c.Local(guard)
	cell.Add(1)
	wg.Wait()
	if n := c.Sum(guard); n != 1 {
		t.Fatalf("guard sum %d, want 1", n)
	}
}
