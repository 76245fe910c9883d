// Command geocache-lab runs the experiments behind geocache's published
// measurements (docs/measurements.md): page faults on cold and slow
// storage, residency over time, a cache-busting flood, why misses miss,
// and the charts.
// It is a module of its own, so that what it needs (FUSE, plotting) is
// no dependency of the library or of the geocache command.
//
//	geocache-lab coldstart -db PATH [-fuse-delay 10ms] [-disk-lookups 200000] [-plot FILE.png]
//	geocache-lab soak -db PATH [-duration 5m] [-keepwarm 10s]
//	geocache-lab adversarial -db PATH [-n 10000000] [-maxcost BYTES]
//	geocache-lab misses -db PATH [-maxcost BYTES] [-stream fresh|zipf] [-rounds 2]
//	geocache-lab plot-bench -in BENCH.json -out FILE.svg
//	geocache-lab slowfs [-delay 10ms] SRC MNT
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  geocache-lab coldstart -db PATH [-fuse-delay 10ms] [-disk-lookups 200000] [-plot FILE.png]
                         page-fault cost on slow storage and on disk, with and without warmup
  geocache-lab soak -db PATH [-duration 5m] [-keepwarm 10s]
                         residency and major faults under light traffic after warmup
  geocache-lab adversarial -db PATH [-n 10000000] [-maxcost BYTES]
                         never-repeating addresses: cost vs budget, heap and RSS over time
  geocache-lab misses -db PATH [-maxcost BYTES] [-stream fresh|zipf] [-rounds 2]
                         the misses of the benchmarks' traffic, by why they missed
  geocache-lab plot-bench -in BENCH.json -out FILE.svg|.png
                         latency percentiles of a "geocache bench -json" run
  geocache-lab slowfs [-delay 10ms] SRC MNT
                         serve SRC at MNT through FUSE, every read delayed (coldstart uses it)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "coldstart":
		return coldstart(args[1:], stdout, stderr)
	case "soak":
		return soak(args[1:], stdout, stderr)
	case "adversarial":
		return adversarial(args[1:], stdout, stderr)
	case "misses":
		return misses(args[1:], stdout, stderr)
	case "plot-bench":
		return plotBench(args[1:], stdout, stderr)
	case "slowfs":
		return serveSlowfs(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "geocache-lab: unknown command %q\n%s", args[0], usage)
	return 2
}
