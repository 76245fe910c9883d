package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/geocache/geocache"
)

// warm pre-faults a database with a progress bar and reports residency
// before and after, and the time taken.
func warm(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "", "MaxMind DB file (default: the embedded test database, which is in memory)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c, err := openDB[any](*db, &geocache.Options{Warmup: geocache.WarmupOff})
	if err != nil {
		fmt.Fprintf(stderr, "geocache warm: %v\n", err)
		return 1
	}
	defer c.Close()
	before, err := c.Residency()
	if err != nil {
		fmt.Fprintf(stderr, "geocache warm: residency: %v\n", err)
		return 1
	}
	total := c.Stats().Warmup.Total
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription("pre-faulting"),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(50*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- c.Warm(context.Background()) }()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for err == nil {
		select {
		case err = <-done:
			bar.Set64(total)
			bar.Finish()
			if err != nil {
				fmt.Fprintf(stderr, "geocache warm: %v\n", err)
				return 1
			}
			took := time.Since(start)
			after, _ := c.Residency()
			fmt.Fprintf(stdout, "residency before %.1f%%, after %.1f%%; %d bytes in %v (%.0f MB/s)\n",
				100*before, 100*after, total, took.Round(time.Millisecond), float64(total)/took.Seconds()/1e6)
			return 0
		case <-t.C:
			st := c.Stats().Warmup
			bar.Describe("pre-faulting " + st.Phase.String())
			bar.Set64(st.Bytes)
		}
	}
	return 0
}
