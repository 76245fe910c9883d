//go:build linux

package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
	"golang.org/x/sys/unix"

	"github.com/geocache/geocache"
	"github.com/geocache/geocache/lab/internal/slowfs"
)

// serveSlowfs is the FUSE server coldstart runs in a child process (see
// package slowfs for why it cannot run in the measured one).
func serveSlowfs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slowfs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	delay := fs.Duration("delay", 10*time.Millisecond, "latency added to every read")
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 {
		fmt.Fprintln(stderr, "usage: geocache-lab slowfs [-delay 10ms] SRC MNT")
		return 2
	}
	srv, err := slowfs.Mount(fs.Arg(0), fs.Arg(1), *delay)
	if err != nil {
		fmt.Fprintf(stderr, "geocache-lab slowfs: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "mounted")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Unmount()
	return 0
}

// coldstart measures what page faults on a cold mapping cost and what
// warmup saves: on slow storage (a FUSE mount adding -fuse-delay to every
// read), and on the real disk.
func coldstart(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("coldstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "", "MaxMind DB file (required)")
	delay := fs.Duration("fuse-delay", 10*time.Millisecond, "read latency of the slow-storage run (0: skip it)")
	goroutines := fs.Int("goroutines", 10, "slow-storage run: goroutines")
	perG := fs.Int("lookups", 100, "slow-storage run: lookups per goroutine")
	diskN := fs.Int("disk-lookups", 200_000, "real-disk run: lookups (0: skip it)")
	plot := fs.String("plot", "", "write a PNG of lookup latency over time, cold vs warmed (real-disk run)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *db == "" {
		fmt.Fprintln(stderr, "geocache-lab coldstart: -db is required")
		return 2
	}
	runtime.GOMAXPROCS(2) // the setting where a few faults stall everything
	if *delay > 0 {
		if err := slowStorage(*db, *delay, *goroutines, *perG, *plot, stdout); err != nil {
			fmt.Fprintf(stderr, "geocache-lab coldstart: slow storage: %v\n", err)
			if !slowfs.Available() {
				fmt.Fprintln(stderr, "geocache-lab coldstart: FUSE unavailable here (needs /dev/fuse and root); skipped")
			} else {
				return 1
			}
		}
	}
	if *diskN > 0 {
		if err := realDisk(*db, *diskN, stdout); err != nil {
			fmt.Fprintf(stderr, "geocache-lab coldstart: real disk: %v\n", err)
			return 1
		}
	}
	return 0
}

// evict drops path's pages from the page cache; dirty pages are written
// back first, since they cannot be dropped.
func evict(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	f.Sync()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// lateTicker is an unrelated goroutine that wants to run every
// millisecond, and records how late it wakes: what a stalled scheduler
// does to everything else in the process.
type lateTicker struct {
	stop chan struct{}
	done chan struct{}
	late []time.Duration
}

func startTicker() *lateTicker {
	t := &lateTicker{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		for {
			select {
			case <-t.stop:
				return
			default:
			}
			start := time.Now()
			time.Sleep(time.Millisecond)
			t.late = append(t.late, time.Since(start)-time.Millisecond)
		}
	}()
	return t
}

// finish stops the ticker and returns its p50, p99 and max lateness.
func (t *lateTicker) finish() (p50, p99, worst time.Duration) {
	close(t.stop)
	<-t.done
	return pct(t.late, 50), pct(t.late, 99), pct(t.late, 100)
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(int(float64(len(s))*p/100), len(s)-1)
	return s[i]
}

func randomAddr(r *rand.Rand) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
}

// sample is one lookup: when it started (from the run's start) and how
// long it took.
type sample struct{ at, took time.Duration }

// parallelLookups runs g goroutines of n random lookups each, and returns
// the wall time and every lookup's sample.
func parallelLookups(g, n int, lookup func(netip.Addr)) (time.Duration, []sample) {
	start := time.Now()
	out := make([][]sample, g)
	var wg sync.WaitGroup
	for i := range g {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 7))
			for range n {
				a := randomAddr(r)
				s := time.Now()
				lookup(a)
				out[i] = append(out[i], sample{s.Sub(start), time.Since(s)})
			}
		})
	}
	wg.Wait()
	return time.Since(start), slices.Concat(out...)
}

// coldResidency evicts path and returns the fraction still resident,
// measured through a mapping of its own.
func coldResidency(path string) (float64, error) {
	if err := evict(path); err != nil {
		return 0, err
	}
	c, err := geocache.Open[any](path, &geocache.Options{Warmup: geocache.WarmupOff, MaxCost: 1 << 20})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.Residency()
}

type row struct {
	name          string
	wall          time.Duration
	faults        int64
	p50, p99, max time.Duration
	resident      float64
	samples       []sample
}

func printRows(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| run | resident before | wall time | major faults | ticker p50 late | p99 late | max late |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %.0f%% | %v | %d | %v | %v | %v |\n", r.name, 100*r.resident, r.wall.Round(time.Millisecond),
			r.faults, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.max.Round(10*time.Microsecond))
	}
}

// measure runs fn with the ticker on and counts major faults.
func measure(name string, resident float64, fn func() (time.Duration, []sample)) row {
	t := startTicker()
	f0 := majorFaults()
	wall, samples := fn()
	faults := majorFaults() - f0
	p50, p99, worst := t.finish()
	return row{name, wall, faults, p50, p99, worst, resident, samples}
}

func slowStorage(db string, delay time.Duration, g, n int, plotPath string, w io.Writer) error {
	mnt, err := os.MkdirTemp("", "geocache-slowfs-")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := filepath.Abs(filepath.Dir(db))
	if err != nil {
		return err
	}
	srv := exec.Command(self, "slowfs", "-delay", delay.String(), src, mnt)
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "mounted\n" {
		return fmt.Errorf("slowfs server did not mount")
	}
	path := filepath.Join(mnt, filepath.Base(db))
	fmt.Fprintf(w, "\n## Slow storage: %s through FUSE, +%v per read, GOMAXPROCS=2, %d goroutines x %d random lookups\n\n", db, delay, g, n)

	var rows []row
	// Bare maxminddb, as every reader works today.
	res, err := coldResidency(path)
	if err != nil {
		return err
	}
	r, err := maxminddb.Open(path)
	if err != nil {
		return err
	}
	rows = append(rows, measure("maxminddb, no warmup", res, func() (time.Duration, []sample) {
		return parallelLookups(g, n, func(a netip.Addr) {
			var v any
			r.Lookup(a).Decode(&v)
		})
	}))
	r.Close()

	for _, warmed := range []bool{false, true} {
		if res, err = coldResidency(path); err != nil {
			return err
		}
		mode := geocache.WarmupOff
		if warmed {
			mode = geocache.WarmupAsync
		}
		c, err := geocache.Open[any](path, &geocache.Options{Warmup: mode})
		if err != nil {
			return err
		}
		name := "geocache, no warmup"
		if warmed {
			rows = append(rows, measure("geocache warmup itself (Open to Ready)", res, func() (time.Duration, []sample) {
				start := time.Now()
				c.WaitReady(context.Background())
				return time.Since(start), nil
			}))
			res, _ = c.Residency()
			name = "geocache, lookups after WaitReady"
		}
		rows = append(rows, measure(name, res, func() (time.Duration, []sample) {
			return parallelLookups(g, n, func(a netip.Addr) { c.Lookup(a) })
		}))
		c.Close()
	}
	printRows(w, rows)
	if plotPath != "" {
		series := map[string][]sample{}
		for _, r := range rows {
			if r.samples != nil {
				series[r.name] = r.samples
			}
		}
		title := fmt.Sprintf("%s via FUSE +%v/read, GOMAXPROCS=2, %dx%d lookups", filepath.Base(db), delay, g, n)
		if err := plotLatency(plotPath, title, series); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nPlot: %s\n", plotPath)
	}
	return nil
}

// realDisk measures per-lookup latency and major faults of n random
// lookups on the file as it is (no FUSE), cold with and without warmup,
// and fully warm; and the time to ready against a sequential read.
func realDisk(db string, n int, w io.Writer) error {
	fmt.Fprintf(w, "\n## Real disk: %s, %d random lookups on one goroutine, GOMAXPROCS=2\n\n", db, n)
	// Time to read the whole file sequentially after eviction: `cat FILE >/dev/null`.
	if err := evict(db); err != nil {
		return err
	}
	start := time.Now()
	f, err := os.Open(db)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, f)
	f.Close()
	catTime := time.Since(start)

	type run struct {
		name   string
		lat    []time.Duration
		faults int64
		ready  time.Duration
		res    float64
	}
	lookups := func(c *geocache.Cache[any]) (lat []time.Duration, faults int64) {
		r := rand.New(rand.NewPCG(42, 42))
		lat = make([]time.Duration, n)
		f0 := majorFaults()
		for i := range n {
			a := randomAddr(r)
			s := time.Now()
			c.Lookup(a)
			lat[i] = time.Since(s)
		}
		return lat, majorFaults() - f0
	}
	var runs []run
	for _, mode := range []geocache.WarmupMode{geocache.WarmupOff, geocache.WarmupAsync} {
		res, err := coldResidency(db)
		if err != nil {
			return err
		}
		start := time.Now()
		c, err := geocache.Open[any](db, &geocache.Options{Warmup: mode})
		if err != nil {
			return err
		}
		rn := run{name: "cold, no warmup", res: res}
		if mode == geocache.WarmupAsync {
			c.WaitReady(context.Background())
			rn.name, rn.ready = "cold, after WaitReady", time.Since(start)
		}
		rn.lat, rn.faults = lookups(c)
		runs = append(runs, rn)
		c.Close()
	}
	// Fully warm: the file is resident now; a fresh cache, no warmup.
	c, err := geocache.Open[any](db, &geocache.Options{Warmup: geocache.WarmupOff})
	if err != nil {
		return err
	}
	res, _ := c.Residency()
	warm := run{name: "fully warm", res: res}
	warm.lat, warm.faults = lookups(c)
	c.Close()
	runs = append(runs, warm)

	fmt.Fprintln(w, "| run | resident before | major faults | p50 | p99 | p99.9 | max | time to ready |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f us", float64(d)/1e3) }
	for _, r := range runs {
		ready := ""
		if r.ready > 0 {
			ready = r.ready.Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "| %s | %.0f%% | %d | %s | %s | %s | %s | %s |\n", r.name, 100*r.res, r.faults,
			us(pct(r.lat, 50)), us(pct(r.lat, 99)), us(pct(r.lat, 99.9)), us(pct(r.lat, 100)), ready)
	}
	fmt.Fprintf(w, "\nSequential read of the evicted file (`cat FILE >/dev/null`): %v; time to ready / sequential read = %.2f\n",
		catTime.Round(time.Millisecond), float64(runs[1].ready)/float64(catTime))
	return nil
}
