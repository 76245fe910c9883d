package main

import (
	"bytes"
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocache/geocache"
)

func TestLookupEmbedded(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"lookup", "81.2.69.160", "10.0.0.1"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", out.String())
	}
	var a struct {
		IP, Network string
		Found       bool
		Record      map[string]any
	}
	if err := json.Unmarshal([]byte(lines[0]), &a); err != nil {
		t.Fatal(err)
	}
	city := a.Record["city"].(map[string]any)["names"].(map[string]any)["en"]
	if a.IP != "81.2.69.160" || a.Network != "81.2.69.160/27" || !a.Found || city != "London" {
		t.Errorf("got %+v", a)
	}
	if !strings.Contains(lines[1], `"found":false`) || !strings.Contains(lines[1], `"record":null`) {
		t.Errorf("not-found line: %s", lines[1])
	}
}

// line is one output line of lookup, parsed.
type line struct {
	IP, Network, Error string
	Found              bool
	Record             any
}

// country returns the record's country.iso_code.
func (l line) country() any {
	rec, _ := l.Record.(map[string]any)
	c, _ := rec["country"].(map[string]any)
	return c["iso_code"]
}

// lookupLines runs lookup with the addresses on stdin and parses its
// output strictly: one JSON object per line (encoding/json refuses NaN
// and infinities), nothing else.
func lookupLines(t *testing.T, db string, addrs []string) (lines []line, code int, stderr string) {
	t.Helper()
	args := []string{"lookup", "-"}
	if db != "" {
		args = []string{"lookup", "-db", db, "-"}
	}
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(strings.Join(addrs, "\n")+"\n"), &out, &errb)
	text := out.String()
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	for dec.More() {
		var l line
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("output line %d is not strict JSON: %v\n%s", len(lines)+1, err, text)
		}
		lines = append(lines, l)
	}
	if n := strings.Count(text, "\n"); len(lines) != n {
		t.Fatalf("%d objects on %d lines", len(lines), n)
	}
	return lines, code, errb.String()
}

func TestLookupStdin(t *testing.T) {
	lines, code, stderr := lookupLines(t, "", []string{"2.125.160.216", "", "2001:218::1", "bogus"})
	if code != 1 || len(lines) != 3 {
		t.Fatalf("exit %d, %d lines, stderr %q", code, len(lines), stderr)
	}
	if l := lines[0]; l.IP != "2.125.160.216" || l.Network != "2.125.160.216/29" || !l.Found || l.country() != "GB" {
		t.Errorf("line 1: %+v", l)
	}
	if l := lines[1]; l.IP != "2001:218::1" || l.Network != "2001:218::/32" || !l.Found || l.country() != "JP" {
		t.Errorf("line 2: %+v", l)
	}
	if l := lines[2]; l.IP != "bogus" || l.Error == "" || l.Found || l.Record != nil {
		t.Errorf("line 3: %+v", l)
	}
}

// Every address gets exactly one line of strict JSON, on every reference
// database that opens: answers, or errors for what cannot be looked up.
// The decoder test database holds +Inf doubles and floats.
func TestLookupEveryReferenceDatabase(t *testing.T) {
	paths, _ := filepath.Glob("../../testdata/maxmind/test-data/*.mmdb")
	if len(paths) < 20 {
		t.Fatalf("reference databases missing: %d", len(paths))
	}
	var names map[string]bool
	for _, path := range paths {
		r, err := maxminddb.Open(path)
		if err != nil {
			continue // the reader refuses it too
		}
		var addrs []string
		for res := range r.Networks() {
			p := res.Prefix()
			addrs = append(addrs, p.Addr().String(), netip.AddrFrom16(p.Addr().As16()).String())
		}
		r.Close()
		addrs = append(addrs, "1.1.1.1", "2001:db8::1", "not-an-address", "fe80::1%eth0")
		lines, code, _ := lookupLines(t, path, addrs)
		if len(lines) != len(addrs) {
			t.Fatalf("%s: %d lines for %d addresses", filepath.Base(path), len(lines), len(addrs))
		}
		failed := false
		for i, l := range lines {
			if l.IP != addrs[i] && (l.Error != "" || netip.MustParseAddr(addrs[i]).String() != l.IP) {
				t.Fatalf("%s: line %d is for %q, want %q", filepath.Base(path), i+1, l.IP, addrs[i])
			}
			if (l.Error == "") == (l.Network == "") {
				t.Fatalf("%s: line %d: %+v", filepath.Base(path), i+1, l)
			}
			failed = failed || l.Error != ""
		}
		if failed && code != 1 || !failed && code != 0 {
			t.Errorf("%s: exit %d, failed lines: %v", filepath.Base(path), code, failed)
		}
		if strings.Contains(path, "test-decoder") {
			names = floatNames(lines)
		}
	}
	if !names["+Inf"] {
		t.Errorf("the decoder database's +Inf was not written as a name: %v", names)
	}
}

// floatNames returns the non-finite float names in lines' records.
func floatNames(lines []line) map[string]bool {
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			if x == "+Inf" || x == "-Inf" || x == "NaN" {
				seen[x] = true
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, l := range lines {
		walk(l.Record)
	}
	return seen
}

func TestJSONSafe(t *testing.T) {
	in := map[string]any{
		"d": math.Inf(1), "f": float32(math.Inf(-1)), "n": math.NaN(), "ok": 1.5,
		"nested": []any{map[string]any{"x": math.NaN()}, float32(2)},
		"s":      "NaN", "u": uint64(7),
	}
	b, err := json.Marshal(jsonSafe(in))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"d":"+Inf","f":"-Inf","n":"NaN","nested":[{"x":"NaN"},2],"ok":1.5,"s":"NaN","u":7}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestLookupBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"lookup", "not-an-ip"},
		{"lookup", "-db", "/does/not/exist.mmdb", "1.1.1.1"},
		{"lookup", "-db", "main.go", "1.1.1.1"}, // not a database
		{"lookup", "fe80::1%eth0"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, nil, &out, &errb); code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
		if msg := errb.String(); !strings.HasPrefix(msg, "geocache lookup: ") || strings.Contains(msg, "goroutine") {
			t.Errorf("%v: message %q", args, msg)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"frobnicate"}, nil, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	if code := run([]string{"lookup"}, nil, &out, &errb); code != 2 {
		t.Errorf("no address: exit %d", code)
	}
}

// bench on the embedded database: a row per stream, goroutine count and
// implementation, and the same rows as JSON.
func TestBench(t *testing.T) {
	var out, errb bytes.Buffer
	file := filepath.Join(t.TempDir(), "bench.json")
	code := run([]string{"bench", "-time", "20ms", "-latency-lookups", "500", "-stream", "1024", "-goroutines", "2", "-json", file}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	rows := 0
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "| zipf |") || strings.HasPrefix(line, "| uniform |") {
			rows++
			if cols := strings.Split(line, "|"); len(cols) != 13 {
				t.Errorf("row with %d columns: %s", len(cols), line)
			}
		}
	}
	if rows != 2*2*3 {
		t.Errorf("%d rows, want 12:\n%s", rows, out.String())
	}
	if !strings.Contains(out.String(), "| zipf | 1 | geocache |") {
		t.Errorf("no geocache row:\n%s", out.String())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f BenchFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Rows) != rows || f.Rows[0].PercentileNs["99.9"] <= 0 || f.Rows[0].NsPerOp <= 0 {
		t.Errorf("JSON rows: %+v", f)
	}
}

// fakeCache answers HitRatioAt with a ratio per budget, ok only for
// budgets it knows.
type fakeCache map[int64]float64

func (fakeCache) Stats() geocache.Stats { return geocache.Stats{} }
func (f fakeCache) HitRatioAt(maxCost int64) (float64, bool) {
	r, ok := f[maxCost]
	return r, ok
}

// bench prints HitRatioAt's estimates at multiples of the budget, only
// those the cache gives, and nothing before it has any.
func TestBenchPredicts(t *testing.T) {
	got := predict(fakeCache{32 << 20: 0.5, 128 << 20: 0.875}, 64<<20)
	want := "\n# predicted hit ratio of the zipf stream at other budgets (HitRatioAt): 32 MiB: 50.0%; 128 MiB: 87.5%;\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := predict(fakeCache{}, 64<<20); got != "" {
		t.Errorf("no estimates: got %q", got)
	}
}
