package hitpath

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/oschwald/geoip2-golang/v2"

	"github.com/geocache/geocache"
	"github.com/geocache/geocache/internal/pcpu"
	"github.com/geocache/geocache/internal/workload"
	"github.com/geocache/geocache/lab/internal/envdb"
)

// BenchmarkLookupOneProcess times geocache's Lookup on the whole zipf
// stream (IPv4 and IPv6), its hot set cached at 512 MiB, against the map
// the library's benchmarks call map24 (a record per /24 or /48 block of
// the stream), both built once in this process and timed in turn: the
// same heap, the same caches, the same order in every round, which
// separately opened benchmark variants do not share.
//
// Beside them, the map doing step by step what Lookup must do on a hit:
// hold each block's prefix length too (map24-wide), build the Result
// from it (map24-result), and count the hit per P as Stats does
// (map24-same-work).
func BenchmarkLookupOneProcess(b *testing.B) {
	path, r := envdb.Open(b)
	stream := workload.Zipf(workload.Networks(r), 1<<20, 42)
	c, err := geocache.Open[geoip2.City](path, &geocache.Options{MaxCost: 512 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for range 3 { // ristretto admits asynchronously: later passes fill what it dropped
		for _, a := range stream {
			c.Lookup(a)
		}
	}
	primed := c.Stats()
	m, err := workload.NewBlockMap[geoip2.City](r, stream)
	if err != nil {
		b.Fatal(err)
	}
	w, err := workload.BlockMapOf(r, stream, func(rec *geoip2.City, n netip.Prefix) wide { return wide{rec, n.Bits()} })
	if err != nil {
		b.Fatal(err)
	}
	hits := pcpu.New()
	type result = geocache.Result[geoip2.City]
	impls := []struct {
		name   string
		lookup func(netip.Addr) result
	}{
		{"map24", func(a netip.Addr) result { return result{Record: m.Get(a)} }},
		{"map24-wide", func(a netip.Addr) result { return result{Record: w.Get(a).rec} }},
		{"map24-result", func(a netip.Addr) result { return buildResult(w, a) }},
		{"map24-same-work", func(a netip.Addr) result {
			res := buildResult(w, a)
			hits.Inc(0)
			return res
		}},
		{"geocache", func(a netip.Addr) result {
			res, _ := c.Lookup(a)
			return res
		}},
	}
	const mask = 1<<20 - 1
	for _, im := range impls {
		b.Run("mode=single/impl="+im.name, func(b *testing.B) {
			var last result
			i := 0
			for b.Loop() {
				last = im.lookup(stream[i&mask])
				i++
			}
			results.Store(&last)
		})
		b.Run("mode=parallel/impl="+im.name, func(b *testing.B) {
			var g atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				var last result
				i := int(g.Add(1)) * 7919 * 4099
				for pb.Next() {
					last = im.lookup(stream[i&mask])
					i++
				}
				results.Store(&last)
			})
		})
	}
	st := c.Stats()
	if hits, misses := st.Hits-primed.Hits, st.Misses-primed.Misses; misses*100 > hits+misses {
		b.Errorf("%d of %d timed lookups missed: the hot set was not cached", misses, hits+misses)
	}
}

// results keeps each loop's last result, so that the compiler keeps the
// work of every lookup.
var results atomic.Pointer[geocache.Result[geoip2.City]]

// wide is what map24-wide holds for a block: its record, and the length
// of its network (of one of them, in a block the database splits: the map
// is timed, not checked).
type wide struct {
	rec  *geoip2.City
	bits int
}

// buildResult builds the Result that Lookup returns from w's value for a:
// the record, and the network masked from the address.
func buildResult(w *workload.BlockMap[wide], a netip.Addr) (res geocache.Result[geoip2.City]) {
	v := w.Get(a)
	if v.rec != nil {
		res.Record, res.Found = v.rec, true
	}
	res.Prefix, _ = a.Prefix(v.bits)
	return res
}
