// Package geocache puts a prefix-aware cache in front of a MaxMind DB
// (.mmdb) reader.
//
// # Usage
//
//	c, err := geocache.Open[geoip2.City]("GeoLite2-City.mmdb", nil)
//	if err != nil { ... }
//	defer c.Close()
//	res, err := c.Lookup(netip.MustParseAddr("81.2.69.160"))
//	if err == nil && res.Found {
//		fmt.Println(res.Record.City.Names.English, res.Prefix)
//	}
//
// The record type T is anything the maxminddb decoder fills: a
// geoip2-golang model, a struct with `maxminddb` tags, or any.
//
// # How it caches
//
// Every address of a network has the same answer, so one miss caches the
// network the database answered with, and later addresses in it are hits
// that never touch the file. A hit reads one bucket of a lock-free table
// indexed by the address's /24 (IPv4) or /48 (IPv6) block, or two in a
// block the database splits into many longer networks. Decoded records
// are cached on their own and shared by every network that points at the
// same data, so a new network whose record is cached costs a tree walk,
// not a decode. Cached answers are exactly the reader's: Result.Prefix is
// the reader's network, and an IPv4-mapped IPv6 address gets the answer
// the reader gives it (see Cache.Lookup).
//
// Because records are shared, the per-address fields that
// geoip2.Reader.City fills in (Traits.IPAddress, Traits.Network) stay
// empty: Result.Prefix carries the network. Never modify a Result.Record.
//
// # Concurrency
//
// All methods are safe for concurrent use. A hit takes no lock, reads only
// the cache, allocates nothing and writes no shared word (counters are per
// P). Close waits for lookups that are reading the file, then unmaps it;
// lookups after Close return ErrClosed.
//
// # Warmup
//
// A mapped file is pre-faulted in the background (Options.Warmup) so that
// lookups do not take page faults, which hold a P while the disk is read.
// Ready, WaitReady and ReadyHandler tell a service when it can take
// traffic; Residency measures what is in memory.
//
// # Reload
//
// Reload (or Options.Watch) swaps in a new file without a pause: the new
// database is opened, warmed and filled with the current hot set before
// one atomic swap; lookups in flight finish on the old one, which is
// unmapped when its last reader is done. A failed reload leaves the old
// database serving; a byte-identical file leaves it serving too, with its
// warm cache.
//
// # Hot set
//
// Options.HotSetFile keeps the blocks that are hot across restarts (Close
// writes them, Open looks them up again before Ready); SaveHotSet,
// ReadHotSet and Prewarm do the same by hand. Metrics for Prometheus are
// in the geocacheprom module.
//
// # Performance
//
// A hit allocates nothing and costs about one memory access for the
// table's line; a miss costs the reader's tree walk, and a decode unless
// the record is cached. Hits scale
// with cores: nothing on the hit path is written by more than one P.
// docs/measurements.md has the figures and the commands that make them.
//
// # Budget
//
// Options.MaxCost bounds the bytes the cache accounts: entries, decoded
// records (each once, while anything holds it) and the fixed tables.
// HitRatioAt estimates, from the traffic being served, the hit ratio
// another budget would give.
package geocache
