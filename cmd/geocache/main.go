// Command geocache looks addresses up in a MaxMind DB through geocache.
//
//	geocache lookup [-db PATH] IP...   one JSON object per address
//	geocache lookup [-db PATH] -       addresses one per line on stdin
//
// Every address gets exactly one line: {"ip", "network", "found",
// "record"}, or {"ip", "error"} when it cannot be looked up. Floats that
// JSON cannot hold are written as the strings "+Inf", "-Inf" and "NaN".
//
// Without -db it uses a small test database embedded in the binary
// (MaxMind's GeoIP2-City-Test, MIT licensed), so it runs anywhere:
//
//	go run ./cmd/geocache lookup 81.2.69.160
package main

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"strings"

	"github.com/geocache/geocache"
)

//go:embed default.mmdb
var defaultDB []byte

const usage = `usage:
  geocache lookup [-db PATH] IP...   look addresses up; "-" reads them from stdin, one per line
  geocache warm [-db PATH]           pre-fault the database, with progress and residency before and after
  geocache bench [-db PATH] [-time 1s] [-goroutines N] [-maxcost BYTES] [-json FILE]
                                     geoip2 vs maxminddb vs geocache: ns/op, allocs, hit ratio, latency percentiles
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "lookup":
		return lookup(args[1:], stdin, stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "warm":
		return warm(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "geocache: unknown command %q\n%s", args[0], usage)
	return 2
}

// openDB opens path, or the embedded database when path is empty.
func openDB[T any](path string, o *geocache.Options) (*geocache.Cache[T], error) {
	if path == "" {
		return geocache.OpenBytes[T](defaultDB, o)
	}
	return geocache.Open[T](path, o)
}

// answer is the output line of an address that was looked up. Record is
// the record as the database holds it, with floating-point values that
// JSON cannot hold (the format allows them) as the strings "+Inf", "-Inf"
// and "NaN".
type answer struct {
	IP      string `json:"ip"`
	Network string `json:"network"`
	Found   bool   `json:"found"`
	Record  any    `json:"record"`
}

// failure is the output line of an address that could not be looked up:
// every input address gets exactly one line.
type failure struct {
	IP    string `json:"ip"`
	Error string `json:"error"`
}

func lookup(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lookup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "", "MaxMind DB file (default: the embedded test database)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(stderr, "geocache lookup: no address given\n%s", usage)
		return 2
	}
	c, err := openDB[any](*db, nil)
	if err != nil {
		fmt.Fprintf(stderr, "geocache lookup: %v\n", err)
		return 1
	}
	defer c.Close()

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	failed := false
	one := func(s string) {
		s = strings.TrimSpace(s)
		if s == "" {
			return
		}
		var line any
		a, err := lookupOne(c, s)
		if line = a; err != nil {
			failed = true
			fmt.Fprintf(stderr, "geocache lookup: %q: %v\n", s, err)
			line = failure{IP: s, Error: err.Error()}
		}
		if err := enc.Encode(line); err != nil { // a value JSON cannot hold
			failed = true
			fmt.Fprintf(stderr, "geocache lookup: %q: %v\n", s, err)
			enc.Encode(failure{IP: s, Error: err.Error()})
		}
	}
	for _, arg := range fs.Args() {
		if arg != "-" {
			one(arg)
			continue
		}
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			one(sc.Text())
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintf(stderr, "geocache lookup: stdin: %v\n", err)
			failed = true
		}
	}
	if failed {
		return 1
	}
	return 0
}

// lookupOne answers the address s.
func lookupOne(c *geocache.Cache[any], s string) (answer, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return answer{}, err
	}
	res, err := c.Lookup(ip)
	if err != nil {
		return answer{}, err
	}
	a := answer{IP: ip.String(), Network: res.Prefix.String(), Found: res.Found}
	if res.Found {
		a.Record = jsonSafe(*res.Record)
	}
	return a, nil
}

// jsonSafe returns v with every non-finite float replaced by its name, so
// that encoding/json (and any strict JSON parser) accepts it. Values
// without such floats are returned as they are.
func jsonSafe(v any) any {
	switch x := v.(type) {
	case float64:
		return floatName(x, v)
	case float32:
		return floatName(float64(x), v)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonSafe(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonSafe(e)
		}
		return out
	}
	return v
}

func floatName(f float64, v any) any {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return v
}
