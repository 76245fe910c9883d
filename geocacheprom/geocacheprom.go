// Package geocacheprom exports a geocache.Cache's statistics as Prometheus
// metrics. It is a module of its own so that geocache itself does not
// depend on the Prometheus client.
//
//	c, _ := geocache.Open[geoip2.City](path, nil)
//	prometheus.MustRegister(geocacheprom.NewCollector(c, nil))
//
// Every value is read from the cache when the registry is scraped (a
// Stats snapshot, the metadata, and a mincore pass for the residency), so
// the collector adds nothing to the lookup path.
package geocacheprom

import (
	"strconv"

	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/geocache/geocache"
)

// Source is what the collector reads: any *geocache.Cache[T].
type Source interface {
	Stats() geocache.Stats
	Metadata() maxminddb.Metadata
	Residency() (float64, error)
	HitRatioAt(maxCost int64) (float64, bool)
}

// Options configure a Collector. The zero value (or nil) gives the
// defaults.
type Options struct {
	// Namespace prefixes every metric name. Default "geocache".
	Namespace string
	// ConstLabels are added to every metric, to tell several caches
	// apart (for example {"database": "city"}). Default none.
	ConstLabels prometheus.Labels
	// PredictAt lists the budgets, as multiples of the cache's MaxCost,
	// at which <namespace>_predicted_hit_ratio reports Cache.HitRatioAt.
	// Default 0.5, 1, 2, 4 and 8; empty (not nil) turns it off.
	PredictAt []float64
}

// Phases are the values of the phase label of <namespace>_warmup_phase,
// which is 1 for the phase the warmup is in and 0 for the others.
var Phases = []string{
	string(geocache.PhaseOff), string(geocache.PhaseTree), string(geocache.PhaseData),
	string(geocache.PhaseHotSet), string(geocache.PhaseDone), string(geocache.PhaseStopped),
}

// Collector is a prometheus.Collector over one cache. It is safe for
// concurrent scrapes.
type Collector struct {
	src Source

	lookups, slowHits, entries, records, cost, budget     *prometheus.Desc
	evictions, rejections, droppedSets                    *prometheus.Desc
	warmBytes, warmTotal, warmPhase, warmPasses, refaults *prometheus.Desc
	residency, reloads, reloadFails, buildTime, dbInfo    *prometheus.Desc
	unchanged, decodes, predicted                         *prometheus.Desc
	predictAt                                             []float64
}

// NewCollector returns a collector of src's statistics.
func NewCollector(src Source, opts *Options) *Collector {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Namespace == "" {
		o.Namespace = "geocache"
	}
	if o.PredictAt == nil {
		o.PredictAt = []float64{0.5, 1, 2, 4, 8}
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(o.Namespace, "", name), help, labels, o.ConstLabels)
	}
	return &Collector{
		src:         src,
		predictAt:   o.PredictAt,
		lookups:     d("lookups_total", "Lookups, by result: hit (answered by the cache) or miss (asked the database).", "result"),
		slowHits:    d("slow_hits_total", "Hits answered on the miss path: the entry was being written as the lookup read it."),
		decodes:     d("decodes_total", "Records decoded from the database: misses whose record was not cached."),
		predicted:   d("predicted_hit_ratio", "The hit ratio the recent traffic would get at another budget (Cache.HitRatioAt).", "budget_bytes"),
		entries:     d("entries", "Cached networks and split-block markers."),
		records:     d("records", "Distinct decoded records held by cached networks."),
		cost:        d("cost_bytes", "Bytes accounted against the budget: entries, records and fixed tables."),
		budget:      d("budget_bytes", "The cache budget (Options.MaxCost)."),
		evictions:   d("evictions_total", "Entries and records evicted to make room."),
		rejections:  d("rejections_total", "New entries and records the admission policy turned away."),
		droppedSets: d("dropped_sets_total", "New entries and records answered but not cached: the write buffer was full."),
		warmBytes:   d("warmup_bytes", "Bytes of the database pre-faulted by the current warmup pass."),
		warmTotal:   d("warmup_total_bytes", "Bytes of the database file."),
		warmPhase:   d("warmup_phase", "1 for the phase the warmup is in, 0 for the others.", "phase"),
		warmPasses:  d("warmup_passes_total", "Completed warmup passes: the first, then keep-warm passes."),
		refaults:    d("warmup_refault_bytes_total", "Bytes keep-warm found evicted and faulted in again."),
		residency:   d("residency_ratio", "Fraction of the database file's pages resident in memory (mincore)."),
		reloads:     d("reloads_total", "Successful reloads."),
		reloadFails: d("reload_failures_total", "Failed reloads (the previous database kept serving)."),
		unchanged:   d("reloads_unchanged_total", "Reloads that found the file byte-identical and kept the database serving."),
		buildTime:   d("database_build_timestamp_seconds", "Build time of the database being served, from its metadata."),
		dbInfo:      d("database_info", "The database being served; always 1.", "type", "ip_version"),
	}
}

// Describe sends the descriptors of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.lookups, c.slowHits, c.decodes, c.predicted, c.entries, c.records, c.cost, c.budget,
		c.evictions, c.rejections, c.droppedSets,
		c.warmBytes, c.warmTotal, c.warmPhase, c.warmPasses, c.refaults,
		c.residency, c.reloads, c.reloadFails, c.unchanged, c.buildTime, c.dbInfo,
	} {
		ch <- d
	}
}

// Collect reads the cache and sends every metric. After the cache is
// closed, lookups, reloads and the database keep their last values, the
// sizes read 0, and residency is left out.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	md := c.src.Metadata()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(c.lookups, st.Hits, "hit")
	counter(c.lookups, st.Misses, "miss")
	counter(c.slowHits, st.SlowHits)
	counter(c.decodes, st.Decodes)
	for _, m := range c.predictAt {
		b := int64(m * float64(st.MaxCost))
		if r, ok := c.src.HitRatioAt(b); ok && st.MaxCost > 0 {
			gauge(c.predicted, r, strconv.FormatInt(b, 10))
		}
	}
	gauge(c.entries, float64(st.Entries))
	gauge(c.records, float64(st.Records))
	gauge(c.cost, float64(st.Cost))
	gauge(c.budget, float64(st.MaxCost))
	counter(c.evictions, st.Evictions)
	counter(c.rejections, st.Rejections)
	counter(c.droppedSets, st.DroppedSets)
	gauge(c.warmBytes, float64(st.Warmup.Bytes))
	gauge(c.warmTotal, float64(st.Warmup.Total))
	for _, p := range Phases {
		v := 0.0
		if p == string(st.Warmup.Phase) {
			v = 1
		}
		gauge(c.warmPhase, v, p)
	}
	counter(c.warmPasses, st.Warmup.Passes)
	counter(c.refaults, uint64(st.Warmup.Refaults))
	if r, err := c.src.Residency(); err == nil {
		gauge(c.residency, r)
	}
	counter(c.reloads, st.Reloads)
	counter(c.reloadFails, st.ReloadFails)
	counter(c.unchanged, st.Unchanged)
	gauge(c.buildTime, float64(md.BuildEpoch))
	gauge(c.dbInfo, 1, md.DatabaseType, ipVersion(md.IPVersion))
}

func ipVersion(v uint) string {
	if v == 4 {
		return "4"
	}
	return "6"
}
