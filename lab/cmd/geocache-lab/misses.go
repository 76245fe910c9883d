package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocache/geocache"
	"github.com/geocache/geocache/internal/workload"
)

// `geocache-lab misses` sorts a cache's misses by why they happened, on the
// benchmarks' traffic: Zipf draws over a random ranking of the database's
// networks, a random address in each. The cache is primed with draws (or
// with the stream it then replays), and each miss is put in one class:
// the first lookup of its network since the start, or a network looked up
// before, by the length of the network (its entry may be keyed by a block
// that was not asked about yet, or may have been evicted or not admitted).
// It also counts the lookups that decoded a record.

// missClasses are the classes of a miss, in the order of the report.
var missClasses = []string{
	"first lookup of its network",
	"IPv4 network shorter than /24, seen before",
	"IPv4 network /24 or longer, seen before",
	"IPv6 network up to /48, seen before",
	"IPv6 network /49 to /64, seen before",
	"IPv6 network longer than /64, seen before",
}

func misses(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("misses", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "", "MaxMind DB file (required)")
	maxCost := fs.Int64("maxcost", geocache.DefaultMaxCost, "geocache's budget in bytes")
	stream := fs.String("stream", "fresh", "fresh: new draws after priming with other draws; zipf: the priming stream replayed")
	prime := fs.Int("prime", 1<<21, "priming lookups")
	n := fs.Int("n", 1<<20, "lookups per round")
	rounds := fs.Int("rounds", 2, "rounds of n lookups")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *db == "" || *stream != "fresh" && *stream != "zipf" {
		fmt.Fprintln(stderr, "geocache-lab misses: -db is required, and -stream is fresh or zipf")
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "geocache-lab misses: %v\n", err); return 1 }

	r, err := maxminddb.Open(*db)
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	c, err := geocache.Open[geoip2.City](*db, &geocache.Options{MaxCost: *maxCost})
	if err != nil {
		return fail(err)
	}
	defer c.Close()

	nets := workload.Networks(r)
	var primeStream []netip.Addr
	ranking := workload.Popularity(nets, 42)
	if *stream == "zipf" {
		primeStream = workload.Zipf(nets, *prime, 42)
	} else {
		primeStream = ranking.Draw(*prime, 43)
	}
	seen := map[netip.Prefix]bool{}
	for _, a := range primeStream {
		seen[r.Lookup(a).Prefix()] = true
	}
	for range 2 { // the second pass admits what the first one's bursts dropped
		for _, a := range primeStream {
			c.Lookup(a)
		}
	}

	fmt.Fprintf(stdout, "%s stream, %d MiB budget, after %d priming lookups; per cent of each round's %d lookups:\n\n", *stream, *maxCost>>20, *prime, *n)
	fmt.Fprint(stdout, "| class |")
	for i := range *rounds {
		fmt.Fprintf(stdout, " round %d |", i+1)
	}
	fmt.Fprint(stdout, "\n|---|")
	for range *rounds {
		fmt.Fprint(stdout, "---:|")
	}
	fmt.Fprintln(stdout)

	counts := make([][]int, *rounds)
	decodes, total := make([]uint64, *rounds), make([]int, *rounds)
	for round := range *rounds {
		counts[round] = make([]int, len(missClasses))
		addrs := primeStream
		if *stream == "fresh" {
			addrs = ranking.Draw(*n, uint64(1001+round))
		}
		addrs = addrs[:min(*n, len(addrs))]
		before := c.Stats()
		m := before.Misses
		for _, a := range addrs {
			p := r.Lookup(a).Prefix()
			if _, err := c.Lookup(a); err != nil {
				return fail(err)
			}
			if after := c.Stats().Misses; after != m {
				counts[round][missClass(p, seen[p])]++
				m = after
			}
			seen[p] = true
		}
		decodes[round] = c.Stats().Decodes - before.Decodes
		total[round] = len(addrs)
	}
	pct := func(k, of int) string { return fmt.Sprintf(" %.2f |", 100*float64(k)/float64(of)) }
	for k, name := range missClasses {
		fmt.Fprintf(stdout, "| %s |", name)
		for round := range *rounds {
			fmt.Fprint(stdout, pct(counts[round][k], total[round]))
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprint(stdout, "| all misses |")
	for round := range *rounds {
		sum := 0
		for _, k := range counts[round] {
			sum += k
		}
		fmt.Fprint(stdout, pct(sum, total[round]))
	}
	fmt.Fprint(stdout, "\n| lookups that decoded a record |")
	for round := range *rounds {
		fmt.Fprint(stdout, pct(int(decodes[round]), total[round]))
	}
	st := c.Stats()
	fmt.Fprintf(stdout, "\n\nAt the end: %d entries, %d records, cost %.1f MiB.\n", st.Entries, st.Records, float64(st.Cost)/(1<<20))
	return 0
}

// missClass is the index in missClasses of a miss in network p.
func missClass(p netip.Prefix, seen bool) int {
	switch {
	case !seen:
		return 0
	case p.Addr().Is4() && p.Bits() < 24:
		return 1
	case p.Addr().Is4():
		return 2
	case p.Bits() <= 48:
		return 3
	case p.Bits() <= 64:
		return 4
	}
	return 5
}
