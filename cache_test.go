package geocache

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"

	"github.com/geocache/geocache/internal/mmdbtest"
	"github.com/geocache/geocache/internal/workload"
)

// diffN is the number of distinct addresses the differential tests ask
// (each twice): def, a tenth of it with -short or -race.
// GEOCACHE_DIFF_N sets it for the long run.
func diffN(t *testing.T, def int) int {
	if s := os.Getenv("GEOCACHE_DIFF_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if testing.Short() || raceEnabled {
		return def / 10
	}
	return def
}

// checkDifferential asks c and the uncached reader r the same addresses,
// twice (the second pass is mostly cache hits), and fails on the first
// address where record, prefix or found differ.
func checkDifferential[T any](t *testing.T, c *Cache[T], r *maxminddb.Reader, addrs []netip.Addr) {
	t.Helper()
	for pass := range 2 {
		for _, a := range addrs {
			got, err := c.Lookup(a)
			want := oracle(r, a)
			var rec T
			if werr := want.Decode(&rec); werr != nil {
				if err == nil {
					t.Fatalf("pass %d: %s: reader fails with %v, cache answers %+v", pass, a, werr, got)
				}
				continue
			}
			if err != nil {
				t.Fatalf("pass %d: %s: %v", pass, a, err)
			}
			if !samePrefix(got.Prefix, want.Prefix()) || got.Found != want.Found() {
				t.Fatalf("pass %d: %s: cache %v found=%v, reader %v found=%v", pass, a, got.Prefix, got.Found, want.Prefix(), want.Found())
			}
			if got.Found && !reflect.DeepEqual(*got.Record, rec) {
				t.Fatalf("pass %d: %s: records differ:\ncache  %+v\nreader %+v", pass, a, *got.Record, rec)
			}
			if !got.Found && got.Record != nil {
				t.Fatalf("%s: not found but Record is set", a)
			}
		}
	}
}

func TestDifferentialGenerated(t *testing.T) {
	for _, spec := range []mmdbtest.Spec{
		{Seed: 1},
		{Seed: 2, IPv4Only: true, RecordSize: 24},
		{Seed: 3, RecordSize: 32, Networks: 20_000},
		{Seed: 4, RecordSize: 24, Networks: 20_000, NoIPv4Alias: true},
	} {
		t.Run(fmt.Sprintf("seed=%d,ipv4only=%v,noalias=%v", spec.Seed, spec.IPv4Only, spec.NoIPv4Alias), func(t *testing.T) {
			path := genDB(t, spec)
			r := openReader(t, path)
			nets := workload.Networks(r)
			if len(nets) < 20_000 {
				t.Fatalf("generated database has only %d networks", len(nets))
			}
			addrs := sampleAddrs(spec.Seed, nets, diffN(t, 100_000), !spec.IPv4Only)
			// A 1 MiB budget holds a few thousand entries, so the cache
			// keeps evicting; at 256 MiB the second pass is all hits.
			for _, budget := range []int64{1 << 20, 256 << 20} {
				c, err := Open[geoip2.City](path, &Options{MaxCost: budget})
				if err != nil {
					t.Fatal(err)
				}
				checkDifferential(t, c, r, addrs)
				waitCache(c)
				st := c.Stats()
				c.Close()
				t.Logf("budget %d: %+v", budget, st)
				if st.Hits == 0 || st.Misses == 0 {
					t.Errorf("expected both hits and misses: %+v", st)
				}
				if budget == 1<<20 && st.Evictions+st.Rejections == 0 {
					t.Errorf("budget never forced an eviction or rejection: %+v", st)
				}
				if budget > 1<<20 && st.Hits < st.Misses {
					t.Errorf("big budget: fewer hits than misses: %+v", st)
				}
				if st.Cost > st.MaxCost {
					t.Errorf("cost %d over budget %d", st.Cost, st.MaxCost)
				}
			}
		})
	}
}

func referenceDBs(t *testing.T) []string {
	paths, err := filepath.Glob("testdata/maxmind/test-data/*.mmdb")
	if err != nil || len(paths) < 20 {
		t.Fatalf("reference databases missing: %v %v", paths, err)
	}
	return paths
}

// TestDifferentialReference checks every reference database that opens,
// decoding records as any: every network's first and last address and
// random addresses inside and around them.
func TestDifferentialReference(t *testing.T) {
	for _, path := range referenceDBs(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			r, err := maxminddb.Open(path)
			if err != nil {
				t.Skipf("reader rejects it: %v", err)
			}
			defer r.Close()
			c, err := Open[any](path, nil)
			if err != nil {
				t.Fatalf("reader opens it, cache does not: %v", err)
			}
			defer c.Close()
			nets := workload.Networks(r)
			var addrs []netip.Addr
			for _, p := range nets {
				for _, a := range []netip.Addr{p.Addr(), lastIn(p)} {
					addrs = append(addrs, a)
					if a.Is4() {
						addrs = append(addrs, netip.AddrFrom16(a.As16()))
					}
				}
			}
			addrs = append(addrs, sampleAddrs(7, nets, diffN(t, 5_000), r.Metadata.IPVersion == 6)...)
			checkDifferential(t, c, r, addrs)
		})
	}
}

// TestBadData opens every malformed database: an error or a working cache,
// never a panic; lookups on the ones that open never panic either, and with
// Verify every one of them fails in Open.
func TestBadData(t *testing.T) {
	paths, _ := filepath.Glob("testdata/maxmind/bad-data/*/*.mmdb")
	broken, _ := filepath.Glob("testdata/maxmind/test-data/*Broken*.mmdb")
	paths = append(paths, broken...)
	if len(paths) < 20 {
		t.Fatalf("bad-data corpus missing: %d files", len(paths))
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			c, err := Open[any](path, nil)
			if err != nil {
				if !errors.Is(err, ErrInvalidDatabase) {
					t.Errorf("error does not match ErrInvalidDatabase: %v", err)
				}
				return
			}
			defer c.Close()
			// Few addresses: a deeply nested record takes milliseconds to reject.
			for _, a := range sampleAddrs(3, nil, 100, c.Metadata().IPVersion == 6) {
				c.Lookup(a) // must not panic
			}
			if _, err := Open[any](path, &Options{Verify: true}); !errors.Is(err, ErrInvalidDatabase) {
				t.Errorf("Verify accepts a malformed database: %v", err)
			}
		})
	}
}

func openCity(t testing.TB, opts *Options) *Cache[geoip2.City] {
	t.Helper()
	c, err := Open[geoip2.City]("testdata/maxmind/test-data/GeoIP2-City-Test.mmdb", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLookupCity(t *testing.T) {
	c := openCity(t, nil)
	res, err := c.Lookup(netip.MustParseAddr("81.2.69.160"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Found || res.Record.City.Names.English != "London" || res.Prefix != netip.MustParsePrefix("81.2.69.160/27") {
		t.Fatalf("got %v %v %+v", res.Found, res.Prefix, res.Record.City)
	}
	// Per-address traits are not filled in: records are shared.
	if res.Record.Traits.IPAddress.IsValid() {
		t.Errorf("Traits.IPAddress set on a shared record: %v", res.Record.Traits.IPAddress)
	}
	miss, err := c.Lookup(netip.MustParseAddr("10.0.0.1"))
	if err != nil || miss.Found || miss.Record != nil || !miss.Prefix.IsValid() {
		t.Fatalf("not-found: %+v %v", miss, err)
	}
}

func TestMappedIPv4SameAnswer(t *testing.T) {
	c := openCity(t, nil)
	for _, s := range []string{"81.2.69.160", "2.125.160.216", "10.0.0.1", "0.0.0.0", "255.255.255.255"} {
		v4 := netip.MustParseAddr(s)
		a, err1 := c.Lookup(v4)
		b, err2 := c.Lookup(netip.AddrFrom16(v4.As16()))
		if err1 != nil || err2 != nil || a != b {
			t.Errorf("%s: %+v %v vs mapped %+v %v", s, a, err1, b, err2)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	c := openCity(t, nil)
	for _, a := range []netip.Addr{{}, netip.MustParseAddr("fe80::1%eth0")} {
		_, err := c.Lookup(a)
		var le *LookupError
		if !errors.Is(err, ErrInvalidAddress) || !errors.As(err, &le) || le.Addr != a {
			t.Errorf("Lookup(%v) = %v", a, err)
		}
	}
	v4, err := Open[any]("testdata/maxmind/test-data/MaxMind-DB-test-ipv4-24.mmdb", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v4.Close()
	if _, err := v4.Lookup(netip.MustParseAddr("2001::1")); !errors.Is(err, ErrIPv4Only) {
		t.Errorf("IPv6 on IPv4-only: %v", err)
	}
	if res, err := v4.Lookup(netip.MustParseAddr("::ffff:1.1.1.1")); err != nil || !res.Found {
		t.Errorf("mapped IPv4 on IPv4-only: %+v %v", res, err)
	}
	if _, err := Open[any](filepath.Join(t.TempDir(), "missing.mmdb"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.mmdb")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open[any](empty, nil); !errors.Is(err, ErrInvalidDatabase) {
		t.Errorf("empty file: %v", err)
	}
}

// A record that does not decode into T is an error for that lookup, and
// caches nothing: the next lookup asks the database again.
func TestDecodeErrorNotCached(t *testing.T) {
	type wrong struct {
		City string `maxminddb:"city"` // a map in the database
	}
	c, err := Open[wrong]("testdata/maxmind/test-data/GeoIP2-City-Test.mmdb", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := netip.MustParseAddr("81.2.69.160")
	for range 3 {
		_, err := c.Lookup(a)
		var te maxminddb.UnmarshalTypeError
		if err == nil || !errors.As(err, &te) {
			t.Fatalf("want an UnmarshalTypeError, got %v", err)
		}
	}
	if st := c.Stats(); st.Hits != 0 {
		t.Errorf("a failed decode was cached: %+v", st)
	}
}

func TestCloseIdempotentAndErrClosed(t *testing.T) {
	c := openCity(t, nil)
	if _, err := c.Lookup(netip.MustParseAddr("81.2.69.160")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(netip.MustParseAddr("81.2.69.160")); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if c.Metadata().DatabaseType != "GeoIP2-City" {
		t.Errorf("Metadata after Close: %+v", c.Metadata())
	}
}

// waitCache waits until ristretto has applied every buffered write.
func waitCache[T any](c *Cache[T]) { c.cur.Load().store.rc.Wait() }

func TestHitDoesNotAllocate(t *testing.T) {
	c := openCity(t, nil)
	addrs := []netip.Addr{
		netip.MustParseAddr("81.2.69.160"),   // a /27 in a split /24: two probes
		netip.MustParseAddr("2.125.160.216"), // a /29
		netip.MustParseAddr("2001:218::1"),   // IPv6
		netip.MustParseAddr("10.0.0.1"),      // not found
	}
	for _, a := range addrs {
		c.Lookup(a)
	}
	waitCache(c)
	before := c.Stats()
	allocs := testing.AllocsPerRun(1000, func() {
		for _, a := range addrs {
			if _, err := c.Lookup(a); err != nil {
				t.Fatal(err)
			}
		}
	})
	after := c.Stats()
	if allocs != 0 {
		t.Errorf("hits allocate: %v allocs per run", allocs)
	}
	if after.Misses != before.Misses || after.Hits-before.Hits < 4000 {
		t.Errorf("not all hits: before %+v after %+v", before, after)
	}
}

// Records are shared: networks that point at the same data get one *T.
func TestRecordsShared(t *testing.T) {
	path := genDB(t, mmdbtest.Spec{Seed: 5, Networks: 5000, Records: 10})
	c, err := Open[geoip2.City](path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := openReader(t, path)
	byOffset := map[uintptr]*geoip2.City{}
	for _, p := range workload.Networks(r)[:2000] {
		res, err := c.Lookup(p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		waitCache(c) // admit the entry, so its record is in the table
		off := r.Lookup(p.Addr()).Offset()
		if prev, ok := byOffset[off]; ok && prev != res.Record {
			t.Fatalf("%s: record at offset %d decoded twice", p, off)
		}
		byOffset[off] = res.Record
	}
	if len(byOffset) > 10 {
		t.Fatalf("%d records for 10 distinct data offsets", len(byOffset))
	}
	if st := c.Stats(); st.Records > 10 {
		t.Errorf("Stats.Records = %d, want <= 10", st.Records)
	}
}

// counted decodes like any and counts decodes.
type counted struct{}

var decodes atomic.Int64

func (c *counted) UnmarshalMaxMindDB(d *mmdbdata.Decoder) error {
	decodes.Add(1)
	return d.SkipValue()
}

func TestConcurrentMissesDecodeOnce(t *testing.T) {
	c, err := Open[counted]("testdata/maxmind/test-data/GeoIP2-City-Test.mmdb", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	decodes.Store(0)
	a := netip.MustParseAddr("2.125.160.216")
	var start, done sync.WaitGroup
	start.Add(1)
	for range 64 {
		done.Go(func() {
			start.Wait()
			if res, err := c.Lookup(a); err != nil || !res.Found {
				t.Error(res, err)
			}
		})
	}
	start.Done()
	done.Wait()
	if n := decodes.Load(); n != 1 {
		t.Errorf("64 concurrent misses decoded %d times", n)
	}
}

// The accounted cost stays within the budget at every moment, read while
// ristretto admits and evicts, and is not a fiction: the heap grows by no
// more than the account says.
func TestBudget(t *testing.T) {
	path := genDB(t, mmdbtest.Spec{Seed: 1})
	const budget = 2 << 20
	c, err := Open[geoip2.City](path, &Options{MaxCost: budget})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := openReader(t, path)
	for i, a := range sampleAddrs(11, workload.Networks(r), 50_000, true) {
		c.Lookup(a)
		if i%1000 == 0 {
			waitCache(c)
		}
		if st := c.Stats(); st.Cost > st.MaxCost || st.MaxCost != budget {
			t.Fatalf("after %d lookups: cost %d > budget %d", i, st.Cost, st.MaxCost)
		}
	}
	waitCache(c)
	st := c.Stats()
	t.Logf("%+v", st)
	if st.Evictions == 0 || st.Entries == 0 || st.Records == 0 {
		t.Errorf("%+v", st)
	}
}

// TestDifferentialMMDB checks the database named by GEOCACHE_MMDB (skipped
// when unset) with a 16 MiB budget, which on GeoLite2-City evicts all the
// time. Addresses come in seeded chunks of 1M, each asked twice: half from
// sampleAddrs (mostly misses, IPv4 and IPv6), half drawn Zipf(1.1) from the
// database's networks (mostly hits), interleaved. Chunks keep
// GEOCACHE_DIFF_N=50000000 in bounded memory.
func TestDifferentialMMDB(t *testing.T) {
	path := os.Getenv("GEOCACHE_MMDB")
	if path == "" {
		t.Skip("GEOCACHE_MMDB not set")
	}
	r := openReader(t, path)
	c, err := Open[geoip2.City](path, &Options{MaxCost: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nets := workload.Networks(r)
	rng := rand.New(rand.NewPCG(99, 99))
	ranked := slices.Clone(nets)
	rng.Shuffle(len(ranked), func(i, j int) { ranked[i], ranked[j] = ranked[j], ranked[i] })
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(len(ranked)-1))
	const chunk = 1_000_000
	n := diffN(t, 200_000)
	for done, seed := 0, uint64(99); done < n; done, seed = done+chunk, seed+1 {
		addrs := sampleAddrs(seed, nets, min(chunk, n-done), r.Metadata.IPVersion == 6)
		for i := 1; i < len(addrs); i += 2 {
			addrs[i] = workload.RandomIn(rng, ranked[zipf.Uint64()])
		}
		checkDifferential(t, c, r, addrs)
		if done%(10*chunk) == 0 {
			t.Logf("%d addresses: %+v", done+len(addrs), c.Stats())
		}
	}
	st := c.Stats()
	t.Logf("%d addresses, each twice: %+v", n, st)
	if st.Evictions+st.Rejections == 0 || st.Hits < st.Misses/4 {
		t.Errorf("the budget never evicted, or few hits: %+v", st)
	}
}

// Which databases alias IPv4-mapped addresses to IPv4, read from the tree.
func TestIPv4Aliased(t *testing.T) {
	want := map[string]bool{
		"GeoIP2-City-Test.mmdb":                  true,
		"GeoLite2-ASN-Test.mmdb":                 true,
		"MaxMind-DB-test-ipv4-24.mmdb":           true, // IPv4-only: nothing else to mean
		"MaxMind-DB-test-mixed-28.mmdb":          true,
		"MaxMind-DB-no-ipv4-search-tree.mmdb":    true, // both paths end on one record at /64
		"MaxMind-DB-test-metadata-pointers.mmdb": false,
	}
	var aliased, literal []string
	for _, path := range referenceDBs(t) {
		c, err := Open[any](path, nil)
		if err != nil {
			continue
		}
		name, got := filepath.Base(path), c.cur.Load().unmap
		c.Close()
		if w, ok := want[name]; ok && w != got {
			t.Errorf("%s: aliased %v, want %v", name, got, w)
		}
		if got {
			aliased = append(aliased, name)
		} else {
			literal = append(literal, name)
		}
	}
	t.Logf("aliased: %v\nnot aliased: %v", aliased, literal)
	for _, spec := range []mmdbtest.Spec{{Seed: 4, Networks: 2000}, {Seed: 4, Networks: 2000, NoIPv4Alias: true}} {
		c := mustOpen[any](t, genDB(t, spec), nil)
		if got := c.cur.Load().unmap; got == spec.NoIPv4Alias {
			t.Errorf("generated with NoIPv4Alias=%v: aliased %v", spec.NoIPv4Alias, got)
		}
		c.Close()
	}
}

// The account is not a fiction: the heap a cache holds, measured after a
// GC, is within the accounted cost plus a constant (the reader's own
// tables, the runtime's slack), and the account charges no more than
// about what is held. Checked full of entries and records with room to
// spare, and at a budget that evicts.
func TestCostsMatchTheHeap(t *testing.T) {
	spec := mmdbtest.Spec{Seed: 11, Networks: 200_000, Records: 20_000}
	if raceEnabled { // generating the database takes most of the time there
		spec.Networks, spec.Records = 50_000, 10_000
	}
	path := genDB(t, spec)
	r := openReader(t, path)
	var addrs []netip.Addr
	for _, p := range workload.Networks(r) {
		addrs = append(addrs, p.Addr())
	}
	const slackBytes = 4 << 20 // ristretto's buffers and maps, the pending items, the reader's string cache
	budgets := []int64{256 << 20, 64 << 20, 16 << 20}
	if raceEnabled {
		budgets = budgets[2:] // the one that evicts
	}
	for _, budget := range budgets {
		runtime.GC()
		heap0 := heapInUse()
		c := mustOpen[geoip2.City](t, path, &Options{MaxCost: budget, Warmup: WarmupWait})
		for range 2 {
			for _, a := range addrs {
				c.Lookup(a)
			}
			waitCache(c)
		}
		runtime.GC()
		heap := heapInUse() - heap0
		st := c.Stats()
		t.Logf("budget %d MiB: heap %.1f MiB, cost %.1f MiB (%d entries, %d records)",
			budget>>20, float64(heap)/(1<<20), float64(st.Cost)/(1<<20), st.Entries, st.Records)
		if heap > st.Cost+slackBytes {
			t.Errorf("budget %d: the cache holds %d bytes, accounts %d", budget, heap, st.Cost)
		}
		if float64(heap) < 0.75*float64(st.Cost) {
			t.Errorf("budget %d: the account charges %d bytes for %d held", budget, st.Cost, heap)
		}
		if budget == 16<<20 && st.Evictions+st.Rejections == 0 {
			t.Errorf("the small budget never evicted: %+v", st)
		}
		c.Close()
	}
}

// heapInUse returns the bytes of live heap objects.
func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
