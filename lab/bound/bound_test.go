// Package bound measures how fast any cache in front of the reader could
// serve the library's benchmark streams at the hit and decode shares
// geocache reaches: an ideal cache whose hits cost a prebuilt map's probe
// and whose misses cost exactly the reader's own work on the addresses
// that missed, with nothing around them.
package bound

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocache/geocache"
	"github.com/geocache/geocache/internal/workload"
	"github.com/geocache/geocache/lab/internal/envdb"
)

// What a lookup did in the cache, as Stats counted it.
type outcome uint8

const (
	hit     outcome = iota
	walked          // missed, found its record cached
	decoded         // missed and decoded its record
)

var sink *geoip2.City

// BenchmarkBound reports, per stream and budget, ns per lookup of
// geocache (ns-cache), of the ideal cache (ns-ideal) and of the reader's
// Lookup + Decode into a fresh record (ns-reader), with the ideal's
// shares (hit%, decode%) and its miss costs alone (ns-walk and ns-decode:
// the missed addresses of each kind looked up on their own). The streams
// and budgets are the library's BenchmarkLookup's: the zipf stream
// replayed, and fresh draws from the same popularity after priming with
// 2^21 of them.
//
// One iteration is one round: a pass through the cache that records what
// each lookup did (not timed: reading Stats per lookup would time it), a
// timed pass through the cache (the replayed stream again, or new fresh
// draws), then the ideal cache and the reader over the recorded pass's
// addresses. Run with -benchtime 1x, once per process.
func BenchmarkBound(b *testing.B) {
	path, r := envdb.Open(b)
	nets := workload.Networks(r)
	zipf := workload.Zipf(nets, 1<<20, 42)
	ranking := workload.Popularity(nets, 42)
	for _, fresh := range []bool{false, true} {
		for _, budget := range []int64{64 << 20, 512 << 20} {
			name := "stream=zipf"
			prime, next := zipf, func(int) []netip.Addr { return zipf }
			if fresh {
				name = "stream=fresh"
				prime = ranking.Draw(2<<20, 43)
				next = func(i int) []netip.Addr { return ranking.Draw(1<<20, uint64(5000+i)) }
			}
			b.Run(fmt.Sprintf("%s/budget=%dMiB", name, budget>>20), func(b *testing.B) {
				c, err := geocache.Open[geoip2.City](path, &geocache.Options{MaxCost: budget})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				for range 2 {
					for _, a := range prime {
						c.Lookup(a)
					}
				}
				var m metrics
				i := 0
				for b.Loop() {
					m.add(round(b, c, r, next(2*i), next(2*i+1)))
					i++
				}
				m.report(b, float64(i))
			})
		}
	}
}

type metrics struct{ cache, ideal, reader, walk, decode, hits, decodes float64 }

func (m *metrics) add(o metrics) {
	m.cache += o.cache
	m.ideal += o.ideal
	m.reader += o.reader
	m.walk += o.walk
	m.decode += o.decode
	m.hits += o.hits
	m.decodes += o.decodes
}

func (m *metrics) report(b *testing.B, n float64) {
	b.ReportMetric(m.cache/n, "ns-cache")
	b.ReportMetric(m.ideal/n, "ns-ideal")
	b.ReportMetric(m.reader/n, "ns-reader")
	b.ReportMetric(m.walk/n, "ns-walk")
	b.ReportMetric(m.decode/n, "ns-decode")
	b.ReportMetric(m.hits/n, "hit%")
	b.ReportMetric(m.decodes/n, "decode%")
	b.ReportMetric(0, "ns/op")
}

// round records what the cache does with recorded, times the cache on
// timed, then the ideal cache and the reader on recorded.
func round(b *testing.B, c *geocache.Cache[geoip2.City], r *maxminddb.Reader, recorded, timed []netip.Addr) (m metrics) {
	b.StopTimer()
	defer b.StartTimer()
	out := make([]outcome, len(recorded))
	var walks, decodes []netip.Addr
	for i, a := range recorded {
		before := c.Stats()
		if _, err := c.Lookup(a); err != nil {
			b.Fatal(err)
		}
		after := c.Stats()
		switch {
		case after.Decodes != before.Decodes:
			out[i] = decoded
			decodes = append(decodes, a)
		case after.Hits != before.Hits:
			out[i] = hit
		default:
			out[i] = walked
			walks = append(walks, a)
		}
	}
	n := float64(len(recorded))
	m.hits = 100 * float64(len(recorded)-len(walks)-len(decodes)) / n
	m.decodes = 100 * float64(len(decodes)) / n

	blocks, err := workload.NewBlockMap[geoip2.City](r, recorded)
	if err != nil {
		b.Fatal(err)
	}
	m.cache = perLookup(timed, lookupIn(c))
	start := time.Now()
	for i, a := range recorded {
		ok := false
		switch out[i] {
		case hit:
			ok = blocks.Get(a) != nil
		case walked:
			ok = walk(r, a)
		case decoded:
			ok = decode(r, a)
		}
		if !ok {
			b.Fatalf("%s: the reader failed", a)
		}
	}
	m.ideal = float64(time.Since(start).Nanoseconds()) / n
	m.reader = perLookup(recorded, func(a netip.Addr) bool { return decode(r, a) })
	m.walk = perLookup(walks, func(a netip.Addr) bool { return walk(r, a) })
	m.decode = perLookup(decodes, func(a netip.Addr) bool { return decode(r, a) })
	return m
}

// lookupIn, walk and decode look a up in the cache, in the reader's tree
// only, and in the reader with a decode into a fresh record; false on an
// error.
func lookupIn(c *geocache.Cache[geoip2.City]) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		_, err := c.Lookup(a)
		return err == nil
	}
}

func walk(r *maxminddb.Reader, a netip.Addr) bool { return r.Lookup(a).Err() == nil }

func decode(r *maxminddb.Reader, a netip.Addr) bool {
	v := new(geoip2.City)
	sink = v
	return r.Lookup(a).Decode(v) == nil
}

func perLookup(addrs []netip.Addr, f func(netip.Addr) bool) float64 {
	if len(addrs) == 0 {
		return 0
	}
	start := time.Now()
	for _, a := range addrs {
		if !f(a) {
			panic(fmt.Sprintf("%s: lookup failed", a))
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(len(addrs))
}

// BenchmarkWholeDatabase caches every network of the database and its
// record (through Prewarm, at a budget that holds them all) and times
// fresh draws, as BenchmarkBound's fresh stream does, against the reader
// on the same draws: what a cache that never misses a network with data
// costs when its entries spread over the whole table. One iteration is
// one round; run with -benchtime 3x.
func BenchmarkWholeDatabase(b *testing.B) {
	path, r := envdb.Open(b)
	nets := workload.Networks(r)
	ranking := workload.Popularity(nets, 42)
	c, err := geocache.Open[geoip2.City](path, &geocache.Options{MaxCost: 3 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	err = c.Prewarm(b.Context(), func(yield func(netip.Addr) bool) {
		for _, p := range nets {
			if !yield(p.Addr()) {
				return
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	prewarm := time.Since(start)
	st := c.Stats()
	var cache, reader, hits float64
	i := 0
	for b.Loop() {
		b.StopTimer()
		draws := ranking.Draw(1<<20, uint64(9000+i))
		before := c.Stats()
		cache += perLookup(draws, lookupIn(c))
		hits += 100 * float64(c.Stats().Hits-before.Hits) / float64(len(draws))
		reader += perLookup(draws, func(a netip.Addr) bool { return decode(r, a) })
		b.StartTimer()
		i++
	}
	n := float64(i)
	b.ReportMetric(cache/n, "ns-cache")
	b.ReportMetric(reader/n, "ns-reader")
	b.ReportMetric(hits/n, "hit%")
	b.ReportMetric(prewarm.Seconds(), "s-prewarm")
	b.ReportMetric(float64(st.Entries), "entries")
	b.ReportMetric(float64(st.Records), "records")
	b.ReportMetric(float64(st.Cost)/(1<<20), "cost-MiB")
	b.ReportMetric(0, "ns/op")
}
