package geocache

import (
	"context"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocache/geocache/internal/mmdbtest"
	"github.com/geocache/geocache/internal/workload"
)

// Benchmarks run on the database at GEOCACHE_MMDB (the real GeoLite2-City
// for the published figures) or else on a generated one, over seeded
// streams of 2^20 addresses:
//
//   - zipf: networks of the database drawn with Zipf s=1.1 (a random
//     permutation ranks them), a random address inside each: the skew of
//     real traffic. Caches are primed with it, so the stream replays.
//   - fresh: new draws from the same ranking, after priming with 2^21
//     other draws: the steady state of traffic with a long tail, where
//     networks never seen before keep coming.
//   - uniform: uniformly random IPv4 addresses, each in a different /24
//     block: every lookup a miss.
//   - flood: addresses that never repeat (workload.Flood), against a cache
//     filled by the zipf stream.
//
// Every benchmark runs its references in the same run: geoip2-golang's
// City; a bare maxminddb Lookup+Decode into a fresh record (what a miss
// must do anyway); on the steady state, walk, the bare tree walk (what a
// new network whose record is cached must do anyway); and map24 for hits:
// a prebuilt Go map from each /24 (IPv4) or /48 (IPv6) block of the zipf
// stream to its record, the fastest structure that holds the same data.
// Compare with benchstat -col /impl; docs/measurements.md has the
// commands.

const streamLen = 1 << 20

type benchData struct {
	path                 string
	zipf, prime, uniform []netip.Addr
	ranking              *workload.Ranking
}

var (
	benchOnce sync.Once
	bench     benchData
)

func loadBench(b *testing.B) *benchData {
	benchOnce.Do(func() {
		path := os.Getenv("GEOCACHE_MMDB")
		if path == "" {
			data, err := mmdbtest.Generate(mmdbtest.Spec{Seed: 42, Networks: 200_000})
			if err != nil {
				panic(err)
			}
			f, err := os.CreateTemp("", "geocache-bench-*.mmdb")
			if err != nil {
				panic(err)
			}
			f.Write(data)
			f.Close()
			path = f.Name()
		}
		r, err := maxminddb.Open(path)
		if err != nil {
			panic(err)
		}
		defer r.Close()
		nets := workload.Networks(r)
		bench.path = path
		bench.zipf = workload.Zipf(nets, streamLen, 42)
		bench.ranking = workload.Popularity(nets, 42)
		bench.prime = bench.ranking.Draw(2*streamLen, 43)
		bench.uniform = workload.Uniform(streamLen, 42)
	})
	if bench.path == "" {
		b.Fatal("benchmark data failed to load")
	}
	return &bench
}

// lookupFunc looks one address up; variants differ in what they call.
type lookupFunc func(netip.Addr) bool

// A variant opens an implementation and primes it (caches only) with the
// stream's priming traffic.
type variant struct {
	name string
	open func(b *testing.B, d *benchData, prime []netip.Addr) (lookupFunc, func())
}

const hotSetBudget = 512 << 20 // holds the whole hot set of GeoLite2-City's zipf stream

var (
	geoip2Variant = variant{"impl=geoip2", func(b *testing.B, d *benchData, _ []netip.Addr) (lookupFunc, func()) {
		r, err := geoip2.Open(d.path)
		if err != nil {
			b.Fatal(err)
		}
		return func(a netip.Addr) bool {
			_, err := r.City(a)
			return err == nil
		}, func() { r.Close() }
	}}
	maxminddbVariant = variant{"impl=maxminddb", func(b *testing.B, d *benchData, _ []netip.Addr) (lookupFunc, func()) {
		r, err := maxminddb.Open(d.path)
		if err != nil {
			b.Fatal(err)
		}
		return func(a netip.Addr) bool {
			var c geoip2.City
			return r.Lookup(a).Decode(&c) == nil
		}, func() { r.Close() }
	}}
	walkVariant = variant{"impl=walk", func(b *testing.B, d *benchData, _ []netip.Addr) (lookupFunc, func()) {
		r, err := maxminddb.Open(d.path)
		if err != nil {
			b.Fatal(err)
		}
		return func(a netip.Addr) bool {
			return r.Lookup(a).Err() == nil
		}, func() { r.Close() }
	}}
	map24Variant = variant{"impl=map24", func(b *testing.B, d *benchData, prime []netip.Addr) (lookupFunc, func()) {
		r, err := maxminddb.Open(d.path)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		m, err := workload.NewBlockMap[geoip2.City](r, prime)
		if err != nil {
			b.Fatal(err)
		}
		return func(a netip.Addr) bool { return m.Get(a) != nil }, func() {}
	}}
	geocacheVariant = func(name string, budget int64) variant {
		return variant{name, func(b *testing.B, d *benchData, prime []netip.Addr) (lookupFunc, func()) {
			return openGeocache(b, d, prime, &Options{MaxCost: budget})
		}}
	}
)

// primeCache looks stream up twice: the first pass fills the cache, the
// second admits what ristretto dropped from the first's bursts (and, in a
// full cache, what the doorkeeper held back on its first sighting).
func primeCache[T any](c *Cache[T], stream []netip.Addr) {
	for range 2 {
		for _, a := range stream {
			c.Lookup(a)
		}
		waitCache(c)
	}
}

// openGeocache opens a cache and primes it with stream.
func openGeocache(b *testing.B, d *benchData, prime []netip.Addr, o *Options) (lookupFunc, func()) {
	c, err := Open[geoip2.City](d.path, o)
	if err != nil {
		b.Fatal(err)
	}
	primeCache(c, prime)
	start := c.Stats()
	return func(a netip.Addr) bool {
			_, err := c.Lookup(a)
			return err == nil
		}, func() {
			reportShares(b, start, c.Stats())
			b.ReportMetric(float64(c.cur.Load().front.bytes.Load())/(1<<20), "front-MiB")
			c.Close()
		}
}

// reportShares reports the share of the lookups between start and st that
// hit, and that decoded a record.
func reportShares(b *testing.B, start, st Stats) {
	lookups := float64(max(st.Hits-start.Hits+st.Misses-start.Misses, 1))
	b.ReportMetric(100*float64(st.Hits-start.Hits)/lookups, "hit%")
	b.ReportMetric(100*float64(st.Decodes-start.Decodes)/lookups, "decode%")
}

// A scenario is a stream to measure, the traffic that primes the caches
// first, and the variants it compares.
type scenario struct {
	name     string
	prime    func(*benchData) []netip.Addr
	variants []variant
	// A replayed stream, read straight from memory; or gen, which returns
	// goroutine g's stream of addresses that must not repeat (fresh
	// draws, floods), generated as it goes.
	stream   func(*benchData) []netip.Addr
	gen      func(b *testing.B, d *benchData, g int) func() netip.Addr
	parallel bool // whether BenchmarkLookupParallel runs it
}

func scenarios() []scenario {
	zipf := func(d *benchData) []netip.Addr { return d.zipf }
	return []scenario{
		// Hits: the hot set cached, a replayed stream.
		{name: "stream=zipf", prime: zipf, stream: zipf, parallel: true, variants: []variant{
			geoip2Variant, maxminddbVariant, map24Variant,
			geocacheVariant("impl=geocache", DefaultMaxCost), geocacheVariant("impl=geocache-hotset", hotSetBudget)}},
		// Steady state: new draws from the same popularity, after priming
		// with 2^21 draws. Single goroutine: the draws are made as it goes.
		{name: "stream=fresh", prime: func(d *benchData) []netip.Addr { return d.prime }, gen: freshDraws, variants: []variant{
			geoip2Variant, maxminddbVariant, walkVariant,
			geocacheVariant("impl=geocache", DefaultMaxCost), geocacheVariant("impl=geocache-hotset", hotSetBudget)}},
		// Misses: every address in a new network, a 1 MiB cache.
		{name: "stream=uniform", prime: func(*benchData) []netip.Addr { return nil },
			stream: func(d *benchData) []netip.Addr { return d.uniform }, parallel: true, variants: []variant{
				geoip2Variant, maxminddbVariant, geocacheVariant("impl=geocache-1MiB", 1<<20)}},
		// A flood of never-repeating addresses against a default cache full
		// of the zipf stream.
		{name: "stream=flood", prime: zipf, gen: flood, parallel: true, variants: []variant{
			maxminddbVariant, geocacheVariant("impl=geocache", DefaultMaxCost)}},
	}
}

// freshDraws yields new Zipf draws from the benchmark's ranking, a chunk
// of 2^20 at a time (made with b's timer stopped), never the same twice.
func freshDraws(b *testing.B, d *benchData, _ int) func() netip.Addr {
	var chunk []netip.Addr
	seed := uint64(1000)
	return func() netip.Addr {
		if len(chunk) == 0 {
			b.StopTimer()
			seed++
			chunk = d.ranking.Draw(streamLen, seed)
			b.StartTimer()
		}
		a := chunk[0]
		chunk = chunk[1:]
		return a
	}
}

// flood yields never-repeating addresses, from a start of goroutine g's.
func flood(_ *testing.B, _ *benchData, g int) func() netip.Addr {
	var f workload.Flood
	for range g * 1_000_003 {
		f.Next()
	}
	return f.Next
}

// BenchmarkLookup: one goroutine, ns per lookup.
func BenchmarkLookup(b *testing.B) {
	d := loadBench(b)
	for _, sc := range scenarios() {
		for _, v := range sc.variants {
			b.Run(sc.name+"/"+v.name, func(b *testing.B) {
				lookup, done := v.open(b, d, sc.prime(d))
				defer done()
				runtime.GC() // not during the loop: the garbage of priming
				b.ReportAllocs()
				b.ResetTimer()
				if sc.stream != nil {
					s, i := sc.stream(d), 0
					for b.Loop() {
						if !lookup(s[i&(streamLen-1)]) {
							b.Fatal("lookup failed")
						}
						i++
					}
					return
				}
				next := sc.gen(b, d, 0)
				for b.Loop() {
					lookup(next()) // a flood's IPv6 fails in an IPv4-only database
				}
			})
		}
	}
}

// BenchmarkLookupParallel: b.RunParallel, ns per lookup across all
// goroutines; compare with BenchmarkLookup for the scaling.
func BenchmarkLookupParallel(b *testing.B) {
	d := loadBench(b)
	for _, sc := range scenarios() {
		if !sc.parallel {
			continue
		}
		for _, v := range sc.variants {
			b.Run(sc.name+"/"+v.name, func(b *testing.B) {
				lookup, done := v.open(b, d, sc.prime(d))
				defer done()
				runtime.GC()
				var g atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					n := int(g.Add(1))
					if sc.stream != nil {
						s, i := sc.stream(d), n*7919*4099
						for pb.Next() {
							if !lookup(s[i&(streamLen-1)]) {
								b.Error("lookup failed")
								return
							}
							i++
						}
						return
					}
					next := sc.gen(b, d, n)
					for pb.Next() {
						lookup(next())
					}
				})
			})
		}
	}
}

// BenchmarkReload: parallel lookups on the primed zipf stream, with no
// reloads, with a reload every 100 ms alternating between the database and
// a copy whose metadata says another build time (mode=changed: a full
// reload each time, which warms the new file and looks the hot set up
// again, paced to the default Options.ReloadCPU; changed-unpaced: as fast
// as it can, on the same 2 cores), and with a reload of the unchanged file
// every 100 ms (mode=unchanged: one comparison, no swap). A reload that
// takes longer than 100 ms makes the next one start right after it.
func BenchmarkReload(b *testing.B) {
	d := loadBench(b)
	other := rebuiltCopy(b, d.path)
	for _, mode := range []string{"none", "changed", "changed-unpaced", "unchanged"} {
		b.Run("reload-every-100ms="+mode, func(b *testing.B) {
			every := 100 * time.Millisecond
			if mode == "none" {
				every = 0
			}
			paths := []string{d.path, d.path}
			o := &Options{}
			if strings.HasPrefix(mode, "changed") {
				paths[1] = other
			}
			if mode == "changed-unpaced" {
				o.ReloadCPU = 1
			}
			c, err := Open[geoip2.City](d.path, o)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			primeCache(c, d.zipf)
			stop, stopped := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(stopped)
				if every == 0 {
					return
				}
				t := time.NewTicker(every)
				defer t.Stop()
				for i := 1; ; i++ {
					select {
					case <-stop:
						return
					case <-t.C:
						if err := c.Reload(paths[i%2]); err != nil {
							b.Error(err)
							return
						}
					}
				}
			}()
			var seed atomic.Uint64
			start := c.Stats()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(1) * 7919 * 4099)
				for pb.Next() {
					c.Lookup(d.zipf[i&(streamLen-1)])
					i++
				}
			})
			b.StopTimer()
			close(stop)
			<-stopped
			st := c.Stats()
			reportShares(b, start, st)
			b.ReportMetric(float64(st.Reloads-start.Reloads+st.Unchanged-start.Unchanged), "reloads")
		})
	}
}

// BenchmarkReloadMissSpike: the miss rate over the first 100,000 lookups
// of the zipf stream after a reload, which looks the hot set up again
// before the swap (hotset=on), and after opening the new file in a fresh
// cache instead (hotset=off: a reload without pre-population). Run with
// -benchtime=1x; each iteration is one reload.
func BenchmarkReloadMissSpike(b *testing.B) {
	d := loadBench(b)
	paths := []string{d.path, rebuiltCopy(b, d.path)}
	for _, hot := range []bool{true, false} {
		b.Run(fmt.Sprintf("hotset=%v", hot), func(b *testing.B) {
			c, err := Open[geoip2.City](d.path, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { c.Close() }()
			primeCache(c, d.zipf)
			first100k := func() float64 {
				s0 := c.Stats()
				for _, a := range d.zipf[:100_000] {
					c.Lookup(a)
				}
				return 100 * float64(c.Stats().Misses-s0.Misses) / 100_000
			}
			var missPct, steady float64
			var took time.Duration
			i := 0
			for b.Loop() {
				steady = first100k()
				t0 := time.Now()
				i++
				if hot {
					err = c.Reload(paths[i%2])
				} else {
					c.Close()
					c, err = Open[geoip2.City](paths[i%2], &Options{Warmup: WarmupWait})
				}
				if err != nil {
					b.Fatal(err)
				}
				took = time.Since(t0)
				missPct = first100k()
				if !hot {
					primeCache(c, d.zipf) // the next round's steady state
				}
			}
			b.ReportMetric(missPct, "miss%-after")
			b.ReportMetric(steady, "miss%-before")
			b.ReportMetric(took.Seconds(), "reload-s")
		})
	}
}

// BenchmarkRestartMissSpike: the miss rate over the first 100,000 lookups
// after a restart, with the hot set saved by the previous process's Close
// (Options.HotSetFile) and without. The previous process served the zipf
// stream past its first 100,000 addresses; the restarted one is measured
// on those first 100,000: other requests from the same traffic. Run with
// -benchtime=1x; each iteration is one restart.
func BenchmarkRestartMissSpike(b *testing.B) {
	d := loadBench(b)
	for _, hot := range []bool{true, false} {
		b.Run(fmt.Sprintf("hotset=%v", hot), func(b *testing.B) {
			file := filepath.Join(b.TempDir(), "hotset")
			o := &Options{HotSetFile: file}
			if !hot {
				o = nil
			}
			var missPct, fileKB, ready float64
			for b.Loop() {
				os.Remove(file)
				prev, err := Open[geoip2.City](d.path, o)
				if err != nil {
					b.Fatal(err)
				}
				primeCache(prev, d.zipf[100_000:])
				if err := prev.Close(); err != nil {
					b.Fatal(err)
				}
				if fi, err := os.Stat(file); err == nil {
					fileKB = float64(fi.Size()) / 1024
				}
				t0 := time.Now()
				c, err := Open[geoip2.City](d.path, o)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.WaitReady(context.Background()); err != nil {
					b.Fatal(err)
				}
				ready = time.Since(t0).Seconds()
				for _, a := range d.zipf[:100_000] {
					c.Lookup(a)
				}
				missPct = 100 * float64(c.Stats().Misses) / 100_000
				c.Close()
			}
			b.ReportMetric(missPct, "miss%-first100k")
			b.ReportMetric(ready, "ready-s")
			b.ReportMetric(fileKB, "hotset-KB")
		})
	}
}

// BenchmarkTailLatency: b.RunParallel on the zipf stream with every lookup
// timed (the clock's ~20 ns included), reporting p50, p99 and p99.9 in ns.
// Run with -cpu 1,2,4,8: a lock convoy would show as tails that grow with
// GOMAXPROCS faster than bare maxminddb's.
func BenchmarkTailLatency(b *testing.B) {
	d := loadBench(b)
	for _, v := range []variant{maxminddbVariant, geocacheVariant("impl=geocache", DefaultMaxCost),
		geocacheVariant("impl=geocache-hotset", hotSetBudget)} {
		b.Run("stream=zipf/"+v.name, func(b *testing.B) {
			lookup, done := v.open(b, d, d.zipf)
			defer done()
			var seed atomic.Uint64
			var mu sync.Mutex
			var all latencies
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var h latencies
				i := int(seed.Add(1) * 7919 * 4099)
				for pb.Next() {
					t := time.Now()
					lookup(d.zipf[i&(streamLen-1)])
					h.record(time.Since(t))
					i++
				}
				mu.Lock()
				all.merge(&h)
				mu.Unlock()
			})
			b.StopTimer()
			for _, q := range []float64{50, 99, 99.9} {
				b.ReportMetric(float64(all.quantile(q/100)), fmt.Sprintf("p%g-ns", q))
			}
		})
	}
}

// latencies is a log-linear histogram of durations: 32 buckets per power
// of two, so a quantile is within 3% of the true one, in fixed memory and
// without allocating while it records.
type latencies struct {
	counts [64 * 32]uint64
	n      uint64
}

func (h *latencies) record(d time.Duration) {
	h.counts[latencyBucket(uint64(max(d, 1)))]++
	h.n++
}

// latencyBucket: values below 32 have a bucket each; above, the power of
// two (its top bit) and the next 5 bits pick the bucket.
func latencyBucket(v uint64) int {
	if v < 32 {
		return int(v)
	}
	top := 63 - bits.LeadingZeros64(v)
	return (top-4)*32 + int(v>>(top-5)&31)
}

func (h *latencies) merge(o *latencies) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the lower bound of the bucket that holds quantile q.
func (h *latencies) quantile(q float64) time.Duration {
	rank := uint64(q * float64(h.n))
	for i, c := range h.counts {
		if rank < c {
			if i < 32 {
				return time.Duration(i)
			}
			top, sub := i/32+4, uint64(i%32)
			return time.Duration((32 + sub) << (top - 5))
		}
		rank -= c
	}
	return 0
}
