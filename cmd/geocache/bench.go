package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/schollz/progressbar/v3"

	"github.com/geocache/geocache"
	"github.com/geocache/geocache/internal/workload"
)

// `geocache bench` runs, in one process, the comparison of bench_test.go
// that users ask for: geoip2-golang City, bare maxminddb Lookup+Decode and
// geocache, all decoding geoip2.City, on the Zipf and uniform streams of
// internal/workload, with 1 and N goroutines. Each variant runs twice:
// untimed lookups for throughput and allocations, then lookups timed one
// by one into an HDR histogram for the percentiles (these include the
// clock's own cost, printed in the header). -json writes the rows with
// their percentiles for plotting.

type benchImpl struct {
	name string
	open func(path string, primeWith []netip.Addr) (lookup func(netip.Addr) bool, c cacheStats, done func(), err error)
}

// cacheStats is what bench reads of a cache: nil for the readers.
type cacheStats interface {
	Stats() geocache.Stats
	HitRatioAt(maxCost int64) (float64, bool)
}

func benchImpls(maxCost int64) []benchImpl {
	return []benchImpl{
		{"geoip2", func(path string, _ []netip.Addr) (func(netip.Addr) bool, cacheStats, func(), error) {
			r, err := geoip2.Open(path)
			if err != nil {
				return nil, nil, nil, err
			}
			return func(a netip.Addr) bool { _, err := r.City(a); return err == nil }, nil, func() { r.Close() }, nil
		}},
		{"maxminddb", func(path string, _ []netip.Addr) (func(netip.Addr) bool, cacheStats, func(), error) {
			r, err := maxminddb.Open(path)
			if err != nil {
				return nil, nil, nil, err
			}
			return func(a netip.Addr) bool {
				var c geoip2.City
				return r.Lookup(a).Decode(&c) == nil
			}, nil, func() { r.Close() }, nil
		}},
		{"geocache", func(path string, prime []netip.Addr) (func(netip.Addr) bool, cacheStats, func(), error) {
			c, err := geocache.Open[geoip2.City](path, &geocache.Options{MaxCost: maxCost, Warmup: geocache.WarmupWait})
			if err != nil {
				return nil, nil, nil, err
			}
			// Twice: the first pass fills the cache, the second
			// admits what the first's bursts had dropped.
			for range 2 {
				c.Prewarm(context.Background(), slices.Values(prime))
			}
			return func(a netip.Addr) bool { _, err := c.Lookup(a); return err == nil },
				c, func() { c.Close() }, nil
		}},
	}
}

type benchRow struct {
	stream, impl      string
	goroutines        int
	nsPerOp, opsPerS  float64
	allocsPerOp, hitP float64 // hitP < 0: not a cache
	hist              *hdrhistogram.Histogram
}

func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "", "MaxMind DB file (default: the embedded test database)")
	dur := fs.Duration("time", time.Second, "how long each variant runs for throughput")
	latN := fs.Int("latency-lookups", 200_000, "lookups timed one by one, per variant and goroutine")
	par := fs.Int("goroutines", runtime.GOMAXPROCS(0), "goroutines of the parallel runs")
	maxCost := fs.Int64("maxcost", geocache.DefaultMaxCost, "geocache's budget in bytes")
	streamLen := fs.Int("stream", 1<<20, "addresses per stream (rounded up to a power of two)")
	jsonPath := fs.String("json", "", "also write the rows, with latency percentiles, to FILE as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "geocache bench: %v\n", err); return 1 }
	path := *db
	if path == "" {
		dir, err := os.MkdirTemp("", "geocache-bench-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "default.mmdb")
		if err := os.WriteFile(path, defaultDB, 0o644); err != nil {
			return fail(err)
		}
	}
	r, err := maxminddb.Open(path)
	if err != nil {
		return fail(err)
	}
	nets := workload.Networks(r)
	r.Close()
	if len(nets) == 0 {
		return fail(fmt.Errorf("%s has no networks", path))
	}
	n := 1 << max(0, int(math.Ceil(math.Log2(float64(max(*streamLen, 1024))))))
	streams := []struct {
		name  string
		addrs []netip.Addr
	}{{"zipf", workload.Zipf(nets, n, 42)}, {"uniform", workload.Uniform(min(n, 1<<24), 42)}}
	gs := []int{1}
	if *par > 1 {
		gs = append(gs, *par)
	}
	impls := benchImpls(*maxCost)

	fmt.Fprintf(stdout, "# geocache bench: %s (%d networks), %s/%s, GOMAXPROCS=%d, %d CPUs\n",
		path, len(nets), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Fprintf(stdout, "# streams of %d addresses; throughput over %v per row; percentiles over %d timed lookups per goroutine (clock cost %v each, included)\n\n",
		n, *dur, *latN, clockCost().Round(time.Nanosecond))

	bar := progressbar.NewOptions(len(streams)*len(gs)*len(impls),
		progressbar.OptionSetWriter(stderr), progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
	var rows []benchRow
	var predictions string
	for _, s := range streams {
		for _, im := range impls {
			bar.Describe(fmt.Sprintf("%s/%s", s.name, im.name))
			lookup, cs, done, err := im.open(path, streams[0].addrs)
			if err != nil {
				return fail(err)
			}
			for _, g := range gs {
				row := benchRow{stream: s.name, impl: im.name, goroutines: g, hitP: -1}
				var st0 geocache.Stats
				if cs != nil {
					st0 = cs.Stats()
				}
				ops, wall, allocs := throughput(lookup, s.addrs, g, *dur)
				row.nsPerOp = float64(wall.Nanoseconds()) / float64(ops)
				row.opsPerS = float64(ops) / wall.Seconds()
				row.allocsPerOp = float64(allocs) / float64(ops)
				if cs != nil {
					st := cs.Stats()
					hits, misses := st.Hits-st0.Hits, st.Misses-st0.Misses
					row.hitP = 100 * float64(hits) / float64(max(hits+misses, 1))
				}
				row.hist = latencies(lookup, s.addrs, g, *latN)
				rows = append(rows, row)
				bar.Add(1)
			}
			if cs != nil && s.name == "zipf" {
				predictions = predict(cs, *maxCost)
			}
			done()
		}
	}
	bar.Finish()
	printBench(stdout, rows)
	fmt.Fprint(stdout, predictions)
	if *jsonPath != "" {
		if err := writeBenchJSON(*jsonPath, filepath.Base(path), rows); err != nil {
			return fail(err)
		}
	}
	return 0
}

// BenchFile is what -json writes: the run and its rows, each with its
// latency percentiles (ns, keyed by percentile).
type BenchFile struct {
	Database   string     `json:"database"`
	GOMAXPROCS int        `json:"gomaxprocs"`
	Rows       []BenchRow `json:"rows"`
}

type BenchRow struct {
	Stream       string             `json:"stream"`
	Impl         string             `json:"impl"`
	Goroutines   int                `json:"goroutines"`
	NsPerOp      float64            `json:"ns_per_op"`
	AllocsPerOp  float64            `json:"allocs_per_op"`
	HitPct       float64            `json:"hit_pct"` // -1: not a cache
	PercentileNs map[string]float64 `json:"percentile_ns"`
}

// jsonQuantiles are the percentiles -json writes.
var jsonQuantiles = []float64{50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99}

func writeBenchJSON(path, db string, rows []benchRow) error {
	out := BenchFile{Database: db, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	for _, r := range rows {
		row := BenchRow{Stream: r.stream, Impl: r.impl, Goroutines: r.goroutines, NsPerOp: r.nsPerOp,
			AllocsPerOp: r.allocsPerOp, HitPct: r.hitP, PercentileNs: map[string]float64{}}
		for _, q := range jsonQuantiles {
			row.PercentileNs[strconv.FormatFloat(q, 'g', -1, 64)] = float64(r.hist.ValueAtQuantile(q))
		}
		out.Rows = append(out.Rows, row)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// throughput looks stream up on g goroutines for d, untimed per lookup,
// and returns the lookups done, the wall time and the heap allocations.
func throughput(lookup func(netip.Addr) bool, stream []netip.Addr, g int, d time.Duration) (ops int64, wall time.Duration, allocs uint64) {
	mask := len(stream) - 1
	var stop atomic.Bool
	var total atomic.Int64
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	var wg sync.WaitGroup
	for w := range g {
		wg.Go(func() {
			i, n := w*7919*4099, int64(0)
			for !stop.Load() {
				for range 1024 {
					lookup(stream[i&mask])
					i++
				}
				n += 1024
			}
			total.Add(n)
		})
	}
	wg.Wait()
	wall = time.Since(start)
	runtime.ReadMemStats(&m1)
	return total.Load(), wall, m1.Mallocs - m0.Mallocs
}

// latencies times n lookups one by one on each of g goroutines, from the
// second half of the stream: throughput ran from its start, and a cache
// that kept those addresses would make a miss-heavy stream look warm.
func latencies(lookup func(netip.Addr) bool, stream []netip.Addr, g, n int) *hdrhistogram.Histogram {
	mask := len(stream) - 1
	hs := make([]*hdrhistogram.Histogram, g)
	var wg sync.WaitGroup
	for w := range g {
		hs[w] = hdrhistogram.New(1, int64(10*time.Second), 3)
		wg.Go(func() {
			i := len(stream)/2 + w*(len(stream)/(2*g))
			for range n {
				t := time.Now()
				lookup(stream[i&mask])
				hs[w].RecordValue(int64(time.Since(t)))
				i++
			}
		})
	}
	wg.Wait()
	for _, h := range hs[1:] {
		hs[0].Merge(h)
	}
	return hs[0]
}

// clockCost is the median cost of the time.Now/time.Since pair that
// latencies wraps around every lookup.
func clockCost() time.Duration {
	h := hdrhistogram.New(1, int64(time.Second), 3)
	for range 100_000 {
		t := time.Now()
		h.RecordValue(int64(time.Since(t)))
	}
	return time.Duration(h.ValueAtQuantile(50))
}

func printBench(w io.Writer, rows []benchRow) {
	base := map[string]float64{} // stream/goroutines -> geoip2 ns/op
	for _, r := range rows {
		if r.impl == "geoip2" {
			base[fmt.Sprint(r.stream, r.goroutines)] = r.nsPerOp
		}
	}
	fmt.Fprintln(w, "| stream | goroutines | impl | ns/op | lookups/s | allocs/op | hit % | x geoip2 | p50 | p99 | p99.9 |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		hit := "-"
		if r.hitP >= 0 {
			hit = fmt.Sprintf("%.1f", r.hitP)
		}
		q := func(p float64) time.Duration { return time.Duration(r.hist.ValueAtQuantile(p)) }
		fmt.Fprintf(w, "| %s | %d | %s | %.0f | %s | %.2f | %s | %.1fx | %v | %v | %v |\n",
			r.stream, r.goroutines, r.impl, r.nsPerOp, si(r.opsPerS), r.allocsPerOp, hit,
			base[fmt.Sprint(r.stream, r.goroutines)]/r.nsPerOp, q(50), q(99), q(99.9))
	}
}

// si formats v with a k/M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// predict reports what HitRatioAt expects the Zipf stream to hit at
// multiples of the budget.
func predict(c cacheStats, maxCost int64) string {
	var b strings.Builder
	for _, m := range []float64{0.5, 1, 2, 4, 8} {
		at := int64(m * float64(maxCost))
		if r, ok := c.HitRatioAt(at); ok {
			fmt.Fprintf(&b, " %g MiB: %.1f%%;", float64(at)/(1<<20), 100*r)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "\n# predicted hit ratio of the zipf stream at other budgets (HitRatioAt):" + b.String() + "\n"
}
