package geocache

import "github.com/geocache/geocache/internal/pcpu"

// Stats is a snapshot of a Cache's counters, a plain value. Hits and
// Misses count Lookup calls only (not Prewarm, Reload or hot-set loads);
// the sizes are those of the database being served, and read 0 after
// Close. Each field is read atomically, but not all at one instant.
type Stats struct {
	Hits        uint64 // lookups answered from the cache
	SlowHits    uint64 // the part of Hits answered on the miss path: the entry was being written as the lookup read it
	Misses      uint64 // lookups that asked the database
	Decodes     uint64 // records decoded by lookups: the other misses found their record cached
	Warmup      WarmupStats
	Reloads     uint64 // successful reloads
	ReloadFails uint64 // failed reloads (the previous database kept serving)
	Unchanged   uint64 // reloads that found the file byte-identical and kept the database serving
	Entries     int64  // cached networks
	Records     int64  // cached decoded records
	Cost        int64  // accounted bytes: entries, records and the cache's tables
	MaxCost     int64  // the budget Cost stays within
	Evictions   uint64 // entries and records evicted to make room
	Rejections  uint64 // new entries and records the admission policy turned away
	DroppedSets uint64 // new entries and records answered but not cached: the write buffer was full
}

// The per-P counters of Cache.stats.
const (
	statHits pcpu.Counter = iota
	statMisses
	statSlowHits
	statDecodes
)

// Stats returns a snapshot of the cache's counters.
func (c *Cache[T]) Stats() Stats {
	st := Stats{
		Hits:        uint64(c.stats.Sum(statHits)),
		Misses:      uint64(c.stats.Sum(statMisses)),
		SlowHits:    uint64(c.stats.Sum(statSlowHits)),
		Decodes:     uint64(c.stats.Sum(statDecodes)),
		Reloads:     c.reloads.Load(),
		ReloadFails: c.reloadFailures.Load(),
		Unchanged:   c.unchanged.Load(),
	}
	if g := c.cur.Load(); g != nil {
		g.store.stats(&st)
		st.Warmup = g.warm.stats()
	}
	return st
}
