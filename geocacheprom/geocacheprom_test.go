package geocacheprom_test

import (
	"io"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/geocache/geocache"
	"github.com/geocache/geocache/geocacheprom"
)

const testDB = "../testdata/maxmind/test-data/GeoIP2-City-Test.mmdb"

func TestCollector(t *testing.T) {
	c, err := geocache.Open[any](testDB, &geocache.Options{MaxCost: 8 << 20, Warmup: geocache.WarmupWait})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := netip.MustParseAddr("81.2.69.160")
	for range 3 {
		if _, err := c.Lookup(a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Lookup(netip.MustParseAddr("10.0.0.1")); err != nil { // not found: a miss too
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(geocacheprom.NewCollector(c, &geocacheprom.Options{ConstLabels: prometheus.Labels{"database": "city"}}))

	// The counters the lookups above determine, scraped from the registry.
	want := `
# HELP geocache_lookups_total Lookups, by result: hit (answered by the cache) or miss (asked the database).
# TYPE geocache_lookups_total counter
geocache_lookups_total{database="city",result="hit"} 2
geocache_lookups_total{database="city",result="miss"} 2
# HELP geocache_budget_bytes The cache budget (Options.MaxCost).
# TYPE geocache_budget_bytes gauge
geocache_budget_bytes{database="city"} 8.388608e+06
# HELP geocache_database_info The database being served; always 1.
# TYPE geocache_database_info gauge
geocache_database_info{database="city",ip_version="6",type="GeoIP2-City"} 1
# HELP geocache_database_build_timestamp_seconds Build time of the database being served, from its metadata.
# TYPE geocache_database_build_timestamp_seconds gauge
geocache_database_build_timestamp_seconds{database="city"} ` + promFloat(c.Metadata().BuildEpoch) + `
# HELP geocache_warmup_phase 1 for the phase the warmup is in, 0 for the others.
# TYPE geocache_warmup_phase gauge
geocache_warmup_phase{database="city",phase="data"} 0
geocache_warmup_phase{database="city",phase="done"} 1
geocache_warmup_phase{database="city",phase="hotset"} 0
geocache_warmup_phase{database="city",phase="off"} 0
geocache_warmup_phase{database="city",phase="stopped"} 0
geocache_warmup_phase{database="city",phase="tree"} 0
# HELP geocache_residency_ratio Fraction of the database file's pages resident in memory (mincore).
# TYPE geocache_residency_ratio gauge
geocache_residency_ratio{database="city"} 1
# HELP geocache_reloads_total Successful reloads.
# TYPE geocache_reloads_total counter
geocache_reloads_total{database="city"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"geocache_lookups_total", "geocache_budget_bytes", "geocache_database_info",
		"geocache_database_build_timestamp_seconds", "geocache_warmup_phase",
		"geocache_residency_ratio", "geocache_reloads_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 27 {
		t.Errorf("GatherAndCount: %d metrics, %v; want 27", n, err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}

	// Reloads count, and the sizes are live values.
	if err := c.Reload(""); err != nil { // the same file: unchanged
		t.Fatal(err)
	}
	if err := c.Reload("../testdata/maxmind/test-data/GeoIP2-Country-Test.mmdb"); err != nil {
		t.Fatal(err)
	}
	c.Lookup(a)
	scrape := httpScrape(t, reg)
	for _, line := range []string{
		`geocache_reloads_total{database="city"} 1`,
		`geocache_reloads_unchanged_total{database="city"} 1`,
		`geocache_database_info{database="city",ip_version="6",type="GeoIP2-Country"} 1`,
		`geocache_warmup_total_bytes{database="city"} `,
		`geocache_entries{database="city"} `,
		`geocache_cost_bytes{database="city"} `,
	} {
		if !strings.Contains(scrape, line) {
			t.Errorf("scrape lacks %q:\n%s", line, scrape)
		}
	}
	st := c.Stats()
	if st.Entries == 0 || st.Cost == 0 {
		t.Errorf("nothing cached after a lookup: %+v", st)
	}

	// After Close the collector still scrapes, without residency.
	c.Close()
	scrape = httpScrape(t, reg)
	if strings.Contains(scrape, "geocache_residency_ratio") || !strings.Contains(scrape, `geocache_lookups_total{database="city",result="hit"} 3`) {
		t.Errorf("after Close:\n%s", scrape)
	}
}

// predicting is a cache whose HitRatioAt is known: budget/(budget+16 MiB),
// ok from 4 MiB.
type predicting struct{ *geocache.Cache[any] }

func (predicting) HitRatioAt(maxCost int64) (float64, bool) {
	return float64(maxCost) / float64(maxCost+16<<20), maxCost >= 4<<20
}

// TestPredictedHitRatio checks that the collector reports HitRatioAt at
// the budgets of PredictAt, leaves out what is not known yet, and can be
// turned off.
func TestPredictedHitRatio(t *testing.T) {
	c, err := geocache.Open[any](testDB, &geocache.Options{MaxCost: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(geocacheprom.NewCollector(predicting{c}, nil))
	want := `
# HELP geocache_predicted_hit_ratio The hit ratio the recent traffic would get at another budget (Cache.HitRatioAt).
# TYPE geocache_predicted_hit_ratio gauge
geocache_predicted_hit_ratio{budget_bytes="16777216"} 0.5
geocache_predicted_hit_ratio{budget_bytes="33554432"} 0.6666666666666666
geocache_predicted_hit_ratio{budget_bytes="4194304"} 0.2
geocache_predicted_hit_ratio{budget_bytes="67108864"} 0.8
geocache_predicted_hit_ratio{budget_bytes="8388608"} 0.3333333333333333
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "geocache_predicted_hit_ratio"); err != nil {
		t.Error(err)
	}
	off := prometheus.NewPedanticRegistry()
	off.MustRegister(geocacheprom.NewCollector(predicting{c}, &geocacheprom.Options{PredictAt: []float64{}}))
	if n, err := testutil.GatherAndCount(off, "geocache_predicted_hit_ratio"); err != nil || n != 0 {
		t.Errorf("PredictAt empty: %d predictions, %v", n, err)
	}
}

func promFloat(v uint) string { return strconv.FormatUint(uint64(v), 10) }

// httpScrape scrapes reg over HTTP, as a Prometheus server would.
func httpScrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
