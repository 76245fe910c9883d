package main

import (
	"context"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/schollz/progressbar/v3"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/geocache/geocache"
	"github.com/geocache/geocache/internal/workload"
)

// `geocache bench` runs, in one process, the comparison of bench_test.go
// that users ask for: geoip2-golang City, bare maxminddb Lookup+Decode and
// geocache, all decoding geoip2.City, on the Zipf and uniform streams of
// internal/workload, with 1 and N goroutines. Each variant runs twice:
// untimed lookups for throughput and allocations, then lookups timed one
// by one into an HDR histogram for the percentiles (these include the
// clock's own cost, printed in the header).

type benchImpl struct {
	name  string
	open  func(path string, primeWith []netip.Addr) (lookup func(netip.Addr) bool, hits func() (uint64, uint64), done func(), err error)
	color color.Color
}

func benchImpls(maxCost int64) []benchImpl {
	return []benchImpl{
		{"geoip2", func(path string, _ []netip.Addr) (func(netip.Addr) bool, func() (uint64, uint64), func(), error) {
			r, err := geoip2.Open(path)
			if err != nil {
				return nil, nil, nil, err
			}
			return func(a netip.Addr) bool { _, err := r.City(a); return err == nil }, nil, func() { r.Close() }, nil
		}, color.RGBA{R: 220, G: 50, B: 47, A: 255}},
		{"maxminddb", func(path string, _ []netip.Addr) (func(netip.Addr) bool, func() (uint64, uint64), func(), error) {
			r, err := maxminddb.Open(path)
			if err != nil {
				return nil, nil, nil, err
			}
			return func(a netip.Addr) bool {
				var c geoip2.City
				return r.Lookup(a).Decode(&c) == nil
			}, nil, func() { r.Close() }, nil
		}, color.RGBA{R: 181, G: 137, B: 0, A: 255}},
		{"geocache", func(path string, prime []netip.Addr) (func(netip.Addr) bool, func() (uint64, uint64), func(), error) {
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
				func() (uint64, uint64) { st := c.Stats(); return st.Hits, st.Misses },
				func() { c.Close() }, nil
		}, color.RGBA{R: 38, G: 139, B: 210, A: 255}},
	}
}

type benchRow struct {
	stream, impl      string
	goroutines        int
	nsPerOp, opsPerS  float64
	allocsPerOp, hitP float64 // hitP < 0: not a cache
	hist              *hdrhistogram.Histogram
	color             color.Color
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
	cold := fs.Bool("cold", false, "then run the cold-start comparison (geocache coldstart; Linux)")
	plotPath := fs.String("plot", "", "write latency percentiles per variant to FILE (.svg or .png)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "geocache bench: %v\n", err); return 1 }
	if ext := strings.ToLower(filepath.Ext(*plotPath)); *plotPath != "" && ext != ".svg" && ext != ".png" {
		return fail(fmt.Errorf("-plot %s: want a .svg or .png file", *plotPath))
	}
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
	for _, s := range streams {
		for _, im := range impls {
			bar.Describe(fmt.Sprintf("%s/%s", s.name, im.name))
			lookup, hits, done, err := im.open(path, streams[0].addrs)
			if err != nil {
				return fail(err)
			}
			for _, g := range gs {
				row := benchRow{stream: s.name, impl: im.name, goroutines: g, hitP: -1, color: im.color}
				var h0, m0 uint64
				if hits != nil {
					h0, m0 = hits()
				}
				ops, wall, allocs := throughput(lookup, s.addrs, g, *dur)
				row.nsPerOp = float64(wall.Nanoseconds()) / float64(ops)
				row.opsPerS = float64(ops) / wall.Seconds()
				row.allocsPerOp = float64(allocs) / float64(ops)
				if hits != nil {
					h1, m1 := hits()
					row.hitP = 100 * float64(h1-h0) / float64(max(h1-h0+m1-m0, 1))
				}
				row.hist = latencies(lookup, s.addrs, g, *latN)
				rows = append(rows, row)
				bar.Add(1)
			}
			done()
		}
	}
	bar.Finish()
	printBench(stdout, rows)
	if *plotPath != "" {
		title := fmt.Sprintf("%s, GOMAXPROCS=%d", filepath.Base(path), runtime.GOMAXPROCS(0))
		if err := plotPercentiles(*plotPath, title, rows); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "\nPlot: %s\n", *plotPath)
	}
	if *cold {
		return coldstart([]string{"-db", path}, stdout, stderr)
	}
	return 0
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

// percentiles drawn, as "nines": x = -log10(1 - p/100).
var plotQuantiles = []float64{50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99}

// plotPercentiles draws one panel per stream: lookup latency (log scale)
// against percentile, one line per variant, dashed for N goroutines.
func plotPercentiles(path, title string, rows []benchRow) error {
	var names []string
	for _, r := range rows {
		if !slices.Contains(names, r.stream) {
			names = append(names, r.stream)
		}
	}
	panels := make([][]*plot.Plot, 1)
	for _, stream := range names {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s stream: %s", stream, title)
		p.X.Label.Text = "percentile"
		p.Y.Label.Text = "latency per lookup (ns, log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: 0}
		var ticks []plot.Tick
		for _, q := range []float64{50, 90, 99, 99.9, 99.99} {
			ticks = append(ticks, plot.Tick{Value: nines(q), Label: strings.TrimSuffix(fmt.Sprintf("%g", q), ".0") + "%"})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.Legend.Top, p.Legend.Left = true, true
		for _, r := range rows {
			if r.stream != stream {
				continue
			}
			var pts plotter.XYs
			for _, q := range plotQuantiles {
				pts = append(pts, plotter.XY{X: nines(q), Y: float64(max(r.hist.ValueAtQuantile(q), 1))})
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.Color, l.Width = r.color, vg.Points(1.5)
			if r.goroutines > 1 {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("%s, %d goroutine(s)", r.impl, r.goroutines), l)
		}
		panels[0] = append(panels[0], p)
	}
	w, h := vg.Length(len(panels[0]))*6*vg.Inch, 4.5*vg.Inch
	var c vg.CanvasWriterTo
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		c = vgsvg.New(w, h)
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	default:
		return fmt.Errorf("-plot %s: want a .svg or .png file", path)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 1, Cols: len(panels[0]), PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	for j, cv := range plot.Align(panels, tiles, dc)[0] {
		panels[0][j].Draw(cv)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func nines(q float64) float64 { return -math.Log10(1 - q/100) }
