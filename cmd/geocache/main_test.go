package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

func TestLookupStdin(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"lookup", "-"}, strings.NewReader("2.125.160.216\n\n2001:218::1\n"), &out, &errb)
	if code != 0 || strings.Count(out.String(), "\n") != 2 {
		t.Fatalf("exit %d, out %q, err %q", code, out.String(), errb.String())
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
// implementation, and a chart.
func TestBench(t *testing.T) {
	var out, errb bytes.Buffer
	svg := filepath.Join(t.TempDir(), "p.svg")
	code := run([]string{"bench", "-time", "20ms", "-latency-lookups", "500", "-stream", "1024", "-goroutines", "2", "-plot", svg}, nil, &out, &errb)
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
	if b, err := os.ReadFile(svg); err != nil || !bytes.Contains(b, []byte("<svg")) {
		t.Errorf("plot: %v", err)
	}
	if code := run([]string{"bench", "-plot", "x.gif", "-time", "1ms", "-latency-lookups", "1", "-stream", "1024"}, nil, &out, &errb); code != 1 {
		t.Errorf("bad -plot extension: exit %d", code)
	}
}

// adversarial on the embedded database: the report rows, and the budget
// check passing.
func TestAdversarial(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"adversarial", "-n", "30000", "-every", "10000", "-maxcost", "2000000"}, nil, &out, &errb)
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
