package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const cityTest = "../../../testdata/maxmind/test-data/GeoIP2-City-Test.mmdb"

// adversarial on the City test database: the report rows, and the budget
// check passing.
func TestAdversarial(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"adversarial", "-db", cityTest, "-n", "30000", "-every", "10000", "-maxcost", "2000000"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if n := strings.Count(out.String(), "\n| "); n != 3+1 { // header + 3 rows
		t.Errorf("%d table lines:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "Cost stayed within the budget") {
		t.Errorf("no verdict:\n%s", out.String())
	}
}

// misses on the City test database: every class reported for each round,
// and the first lookups of networks counted.
func TestMisses(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"misses", "-db", cityTest, "-prime", "2000", "-n", "3000", "-rounds", "2", "-maxcost", "2000000"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, class := range append(missClasses, "all misses", "lookups that decoded a record") {
		if !strings.Contains(out.String(), "| "+class+" |") {
			t.Errorf("no row %q:\n%s", class, out.String())
		}
	}
	if strings.Contains(out.String(), "| first lookup of its network | 0.00 | 0.00 |") {
		t.Errorf("no first lookups counted:\n%s", out.String())
	}
}

// plot-bench draws a chart from a geocache bench -json file.
func TestPlotBench(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench.json")
	os.WriteFile(in, []byte(`{"database": "x.mmdb", "gomaxprocs": 2, "rows": [
		{"stream": "zipf", "impl": "geocache", "goroutines": 1, "percentile_ns": {"50": 90, "99": 900, "99.9": 2000}},
		{"stream": "zipf", "impl": "geoip2", "goroutines": 2, "percentile_ns": {"50": 2500, "99": 9000, "99.9": 40000}}]}`), 0o644)
	for _, name := range []string{"p.svg", "p.png"} {
		var out, errb bytes.Buffer
		path := filepath.Join(dir, name)
		if code := run([]string{"plot-bench", "-in", in, "-out", path}, &out, &errb); code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errb.String())
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() < 1000 {
			t.Errorf("%s: %v", name, err)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"plot-bench", "-in", in, "-out", filepath.Join(dir, "p.gif")}, &out, &errb); code != 1 {
		t.Errorf("a .gif: exit %d", code)
	}
}
