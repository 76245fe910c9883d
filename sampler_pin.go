//go:build !race

package geocache

import "github.com/geocache/geocache/internal/pcpu"

// push adds r to the buffer of the caller's P. While the goroutine is
// pinned nothing else runs on its P, so the buffer needs no lock (the race
// detector cannot know that: race builds lock, see sampler_race.go).
func (s *sampler) push(r sampleRef) {
	id := pcpu.Pin()
	if id < len(s.bufs) {
		s.bufs[id].add(s, r)
	}
	pcpu.Unpin()
}
