//go:build race

package geocache

import "github.com/geocache/geocache/internal/pcpu"

// push adds r to the buffer of the caller's P, under the buffer's lock: the
// race detector cannot see that pinning serializes the P's goroutines.
func (s *sampler) push(r sampleRef) {
	id := pcpu.Pin()
	pcpu.Unpin()
	b := &s.bufs[id%len(s.bufs)]
	b.mu.Lock()
	b.add(s, r)
	b.mu.Unlock()
}
