package pcpu

import (
	"runtime"
	"sync"
	"testing"
)

// Concurrent pinned increments lose nothing, on every P.
func TestIncCountsEverything(t *testing.T) {
	c := New()
	const g, n = 8, 20000
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for i := range n {
				c.Inc(0)
				c.Inc(1)
				if i%100 == 0 {
					runtime.Gosched() // move between Ps
				}
			}
		})
	}
	wg.Wait()
	a, b, cc := c.Sum()
	if a != g*n || b != g*n || cc != 0 {
		t.Fatalf("sums %d %d %d, want %d %d 0", a, b, cc, g*n, g*n)
	}
}

// Atomic users (the generation guard) see their own adds.
func TestLocalAtomic(t *testing.T) {
	c := New()
	cell := c.Local()
	cell.A.Add(1)
	if a, _, _ := c.Sum(); a != 1 {
		t.Fatal(a)
	}
	cell.A.Add(-1)
	if a, _, _ := c.Sum(); a != 0 {
		t.Fatal(a)
	}
}
