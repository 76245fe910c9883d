//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/geocache/geocache"
)

// soak measures whether a warmed database stays warm: it waits for
// warmup, then sends light lookup traffic for a while, sampling the
// mapping's residency and the process's major faults.
func soak(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "", "MaxMind DB file (required: the embedded one is not mapped)")
	duration := fs.Duration("duration", 5*time.Minute, "how long to run")
	every := fs.Duration("every", 15*time.Second, "sampling interval")
	keep := fs.Duration("keepwarm", 0, "Options.KeepWarm (0: off)")
	rate := fs.Int("rate", 200, "lookups per second")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *db == "" {
		fmt.Fprintln(stderr, "geocache-lab soak: -db is required")
		return 2
	}
	// A small budget: most lookups miss and read the mapping, as the
	// long tail of real traffic does.
	c, err := geocache.Open[any](*db, &geocache.Options{MaxCost: 1 << 20, KeepWarm: *keep})
	if err != nil {
		fmt.Fprintf(stderr, "geocache-lab soak: %v\n", err)
		return 1
	}
	defer c.Close()
	if err := c.WaitReady(context.Background()); err != nil {
		fmt.Fprintf(stderr, "geocache-lab soak: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "# soak %s keepwarm=%v rate=%d/s, warmed in %v\n", *db, *keep, *rate, c.Stats().Warmup.Elapsed.Round(time.Millisecond))
	fmt.Fprintln(stdout, "| t (s) | residency | major faults (interval) | lookups |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|")
	r := rand.New(rand.NewPCG(1, 2))
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
	start, next := time.Now(), time.Now()
	faults, n := majorFaults(), 0
	for time.Since(start) < *duration {
		<-tick.C
		var b [4]byte
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		c.Lookup(netip.AddrFrom4(b))
		n++
		if time.Now().After(next) {
			res, _ := c.Residency()
			f := majorFaults()
			fmt.Fprintf(stdout, "| %.0f | %.3f | %d | %d |\n", time.Since(start).Seconds(), res, f-faults, n)
			faults, n = f, 0
			next = next.Add(*every)
		}
	}
	st := c.Stats().Warmup
	fmt.Fprintf(stdout, "# keep-warm passes %d, refaulted %d bytes\n", st.Passes, st.Refaults)
	return 0
}

// majorFaults returns the process's major page faults so far.
func majorFaults() int64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return ru.Majflt
}
