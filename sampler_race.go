//go:build race

package geocache

import (
	"sync"

	"github.com/geocache/geocache/internal/pcpu"
)

// raceBufMu serializes every sampler buffer in race builds.
var raceBufMu sync.Mutex

// push adds r to the buffer of the caller's P, under a lock: the race
// detector cannot see that pinning serializes the P's goroutines.
func (s *sampler) push(r sampleRef) {
	id := pcpu.Pin()
	pcpu.Unpin()
	b := &s.bufs[id%len(s.bufs)]
	raceBufMu.Lock()
	b.add(s, r)
	raceBufMu.Unlock()
}
