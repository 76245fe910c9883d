package geocache

import (
	"context"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
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
// for the published figures) or else on a generated one, over two seeded
// streams of 2^20 addresses:
//
//   - zipf: networks of the database drawn with Zipf s=1.1 (a random
//     permutation ranks them), a random address inside each: the skew of
//     real traffic.
//   - uniform: uniformly random IPv4 addresses, each in a different /24
//     block: a miss-heavy stream.
//
// Compare variants with benchstat; the README has the commands.

const streamLen = 1 << 20

type benchData struct {
	path    string
	zipf    []netip.Addr
	uniform []netip.Addr
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
		bench.uniform = workload.Uniform(streamLen, 42)
	})
	if bench.path == "" {
		b.Fatal("benchmark data failed to load")
	}
	return &bench
}

// lookupFunc looks one address up; variants differ in what they call.
type lookupFunc func(netip.Addr) bool

type variant struct {
	name string
	open func(b *testing.B, d *benchData, stream []netip.Addr) (lookupFunc, func())
}

var variants = []variant{
	{"impl=geoip2", func(b *testing.B, d *benchData, _ []netip.Addr) (lookupFunc, func()) {
		r, err := geoip2.Open(d.path)
		if err != nil {
			b.Fatal(err)
		}
		return func(a netip.Addr) bool {
			_, err := r.City(a)
			return err == nil
		}, func() { r.Close() }
	}},
	{"impl=maxminddb", func(b *testing.B, d *benchData, _ []netip.Addr) (lookupFunc, func()) {
		r, err := maxminddb.Open(d.path)
		if err != nil {
			b.Fatal(err)
		}
		return func(a netip.Addr) bool {
			var c geoip2.City
			return r.Lookup(a).Decode(&c) == nil
		}, func() { r.Close() }
	}},
	// Primed with one pass over the stream, at the default 64 MiB budget
	// and at 512 MiB, which holds the whole hot set of GeoLite2-City's
	// stream (175k networks, 85k records, ~250 MB accounted).
	{"impl=geocache", func(b *testing.B, d *benchData, stream []netip.Addr) (lookupFunc, func()) {
		return openGeocache(b, d, stream, nil)
	}},
	{"impl=geocache-512MiB", func(b *testing.B, d *benchData, stream []netip.Addr) (lookupFunc, func()) {
		return openGeocache(b, d, stream, &Options{MaxCost: 512 << 20})
	}},
	// Every lookup a miss (nearly): a 1 MiB budget against a stream of
	// distinct /24 blocks.
	{"impl=geocache-miss", func(b *testing.B, d *benchData, _ []netip.Addr) (lookupFunc, func()) {
		return openGeocache(b, d, nil, &Options{MaxCost: 1 << 20})
	}},
}

// primeCache looks stream up twice: the first pass fills the cache, the
// second admits what ristretto dropped from the first's bursts.
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
			st := c.Stats()
			hits, misses := st.Hits-start.Hits, st.Misses-start.Misses
			b.ReportMetric(100*float64(hits)/float64(max(hits+misses, 1)), "hit%")
			c.Close()
		}
}

func streams(d *benchData) []struct {
	name  string
	addrs []netip.Addr
} {
	return []struct {
		name  string
		addrs []netip.Addr
	}{{"stream=zipf", d.zipf}, {"stream=uniform", d.uniform}}
}

// BenchmarkLookup: one goroutine, ns per lookup.
func BenchmarkLookup(b *testing.B) {
	d := loadBench(b)
	for _, s := range streams(d) {
		for _, v := range variants {
			if skipVariant(s.name, v.name) {
				continue
			}
			b.Run(s.name+"/"+v.name, func(b *testing.B) {
				lookup, done := v.open(b, d, s.addrs)
				defer done()
				b.ReportAllocs()
				b.ResetTimer()
				i := 0
				for b.Loop() {
					if !lookup(s.addrs[i&(streamLen-1)]) {
						b.Fatal("lookup failed")
					}
					i++
				}
			})
		}
	}
}

// BenchmarkLookupParallel: b.RunParallel, ns per lookup across all
// goroutines; compare with BenchmarkLookup for the scaling.
func BenchmarkLookupParallel(b *testing.B) {
	d := loadBench(b)
	for _, s := range streams(d) {
		for _, v := range variants {
			if skipVariant(s.name, v.name) {
				continue
			}
			b.Run(s.name+"/"+v.name, func(b *testing.B) {
				lookup, done := v.open(b, d, s.addrs)
				defer done()
				var seed atomic.Uint64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := int(seed.Add(1) * 7919 * 4099)
					for pb.Next() {
						if !lookup(s.addrs[i&(streamLen-1)]) {
							b.Error("lookup failed")
							return
						}
						i++
					}
				})
			})
		}
	}
}

// skipVariant leaves out pairs that measure nothing new: the miss-only
// variant is meant for the uniform stream, the primed cache for zipf.
func skipVariant(stream, v string) bool {
	if stream == "stream=zipf" {
		return v == "impl=geocache-miss"
	}
	return strings.HasPrefix(v, "impl=geocache") && v != "impl=geocache-miss"
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
			hits, misses := st.Hits-start.Hits, st.Misses-start.Misses
			b.ReportMetric(100*float64(hits)/float64(max(hits+misses, 1)), "hit%")
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
	for _, v := range variants {
		if v.name == "impl=geoip2" || v.name == "impl=geocache-miss" {
			continue
		}
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
