package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocache/geocache"
	"github.com/geocache/geocache/internal/workload"
)

// `geocache-lab adversarial` is the cache-busting attack: addresses that never
// repeat (a full-period generator over the IPv4 space, and random IPv6),
// so every lookup is a miss and every miss offers a new entry. It checks
// that the accounted cost never exceeds the budget, and reports the heap
// and RSS over time, and the miss path's speed against bare maxminddb on
// the same addresses.

func adversarial(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("adversarial", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "", "MaxMind DB file (required)")
	n := fs.Int("n", 10_000_000, "lookups")
	every := fs.Int("every", 1_000_000, "report every this many lookups")
	maxCost := fs.Int64("maxcost", geocache.DefaultMaxCost, "geocache's budget in bytes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "geocache-lab adversarial: %v\n", err); return 1 }

	// The bare reader on the first interval's addresses: the miss path's
	// reference speed.
	if *db == "" {
		fmt.Fprintln(stderr, "geocache-lab adversarial: -db is required")
		return 2
	}
	r, err := maxminddb.Open(*db)
	if err != nil {
		return fail(err)
	}
	var gen workload.Flood
	ref := min(*every, *n)
	start := time.Now()
	for range ref {
		var v geoip2.City
		r.Lookup(gen.Next()).Decode(&v)
	}
	bare := float64(time.Since(start).Nanoseconds()) / float64(ref)
	r.Close()

	runtime.GC()
	heap0 := heapInUse()
	c, err := geocache.Open[geoip2.City](*db, &geocache.Options{MaxCost: *maxCost, Warmup: geocache.WarmupWait})
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	fmt.Fprintf(stdout, "# %d never-repeating lookups (3/4 IPv4, 1/4 IPv6), budget %d bytes; bare maxminddb Lookup+Decode on the same addresses: %.0f ns/op\n", *n, *maxCost, bare)
	fmt.Fprintf(stdout, "# heap: in-use heap objects minus the %d bytes in use before Open, after a GC at each report\n\n", heap0)
	fmt.Fprintln(stdout, "| lookups | ns/op (interval) | x bare | hit % | entries | cost | budget | heap over base | heap - cost | RSS |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	gen = workload.Flood{}
	var worstOver int64
	t0, prev := time.Now(), geocache.Stats{}
	for i := range *n {
		if _, err := c.Lookup(gen.Next()); err != nil && !isBenign(err) {
			return fail(err)
		}
		if i%1024 == 0 {
			if st := c.Stats(); st.Cost > st.MaxCost {
				return fail(fmt.Errorf("after %d lookups the accounted cost %d exceeds the budget %d", i, st.Cost, st.MaxCost))
			}
		}
		if (i+1)%*every == 0 || i+1 == *n {
			ns := float64(time.Since(t0).Nanoseconds()) / float64(*every)
			runtime.GC()
			st := c.Stats()
			heap := heapInUse() - heap0
			worstOver = max(worstOver, heap-st.Cost)
			hits, misses := st.Hits-prev.Hits, st.Misses-prev.Misses
			fmt.Fprintf(stdout, "| %d | %.0f | %.2f | %.2f | %d | %s | %s | %s | %s | %s |\n", i+1, ns, ns/bare,
				100*float64(hits)/float64(max(hits+misses, 1)), st.Entries, mib(st.Cost), mib(st.MaxCost), mib(heap), mib(heap-st.Cost), mib(rss()))
			prev = st
			t0 = time.Now()
		}
	}
	fmt.Fprintf(stdout, "\nCost stayed within the budget at every check (every 1024 lookups); heap over base exceeded the accounted cost by at most %s.\n", mib(worstOver))
	return 0
}

// isBenign: IPv6 in an IPv4-only database is the attacker's problem.
func isBenign(err error) bool { return err != nil && errors.Is(err, geocache.ErrIPv4Only) }

func heapInUse() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// rss reads the resident set size from /proc (0 where there is none). It
// includes the resident pages of the mapped database file.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(string(f[1]), 10, 64)
	return pages * int64(os.Getpagesize())
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
