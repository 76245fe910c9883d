package hitpath

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/oschwald/geoip2-golang/v2"

	"github.com/geocache/geocache"
	"github.com/geocache/geocache/internal/workload"
	"github.com/geocache/geocache/lab/internal/envdb"
)

// BenchmarkLookupOneProcess times geocache's Lookup on the whole zipf
// stream (IPv4 and IPv6), its hot set cached at 512 MiB, against the map
// the library's benchmarks call map24 (a record per /24 or /48 block of
// the stream), both built once in this process and timed in turn: the
// same heap, the same caches, the same order in every round, which
// separately opened benchmark variants do not share.
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
	impls := []struct {
		name   string
		lookup func(netip.Addr) *geoip2.City
	}{
		{"map24", m.Get},
		{"geocache", func(a netip.Addr) *geoip2.City {
			res, _ := c.Lookup(a)
			return res.Record
		}},
	}
	const mask = 1<<20 - 1
	for _, im := range impls {
		b.Run("mode=single/impl="+im.name, func(b *testing.B) {
			var last *geoip2.City
			i := 0
			for b.Loop() {
				last = im.lookup(stream[i&mask])
				i++
			}
			cities.Store(last)
		})
		b.Run("mode=parallel/impl="+im.name, func(b *testing.B) {
			var g atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				var last *geoip2.City
				i := int(g.Add(1)) * 7919 * 4099
				for pb.Next() {
					last = im.lookup(stream[i&mask])
					i++
				}
				cities.Store(last)
			})
		})
	}
	st := c.Stats()
	if hits, misses := st.Hits-primed.Hits, st.Misses-primed.Misses; misses*100 > hits+misses {
		b.Errorf("%d of %d timed lookups missed: the hot set was not cached", misses, hits+misses)
	}
}

var cities atomic.Pointer[geoip2.City]
