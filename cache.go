package geocache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocache/geocache/internal/pcpu"
)

// Result is the answer for one address. The zero Result is "not found"
// with an invalid Prefix; Lookup never returns it without an error.
type Result[T any] struct {
	// Prefix is the network the database answered with, as the maxminddb
	// reader reports it; it is set for not-found answers too. Every
	// address inside Prefix has the same Result. For an IPv4-mapped
	// address in a database that aliases them to IPv4, it is the IPv4
	// form of the reader's network (1.2.3.0/24 for ::ffff:1.2.3.0/120).
	Prefix netip.Prefix

	// Record is the decoded record, shared by every lookup that lands in
	// a network with the same data: treat it as read-only. Nil when
	// !Found.
	Record *T

	// Found reports whether the database has a record for the address.
	Found bool
}

// Cache is a MaxMind DB reader with a prefix-aware cache in front of it.
// All methods are safe for concurrent use. The zero Cache is not usable:
// create one with Open or OpenBytes, and Close it to release the mapping.
type Cache[T any] struct {
	cur     atomic.Pointer[generation[T]]
	stats   *pcpu.Counters // statHits, statMisses, statSlowHits, statDecodes
	opts    Options
	ready   *readiness
	sampler *sampler // for HitRatioAt

	reloadMu       sync.Mutex         // serializes Reload and Close
	path           string             // the file last opened; guarded by reloadMu
	meta           maxminddb.Metadata // the last database's, after Close; guarded by reloadMu
	ctx            context.Context    // done once Close starts: it cancels a reload
	cancel         context.CancelFunc //
	watcher        *watcher
	reloads        atomic.Uint64
	reloadFailures atomic.Uint64
	unchanged      atomic.Uint64

	close sync.Once
	err   error
}

// Open maps the MaxMind DB file at path and returns a cache over it. T is
// the record type: a geoip2-golang model such as geoip2.City, a struct with
// `maxminddb` tags, or any. A nil opts gives the defaults.
func Open[T any](path string, opts *Options) (*Cache[T], error) {
	o := opts.withDefaults()
	m, err := load(path, o.InMemory)
	if err != nil {
		return nil, err
	}
	c, err := newCache[T](m, &o)
	if err != nil {
		return nil, err
	}
	c.path = path
	if o.Watch {
		if err := c.watch(o.WatchDebounce); err != nil {
			c.Close()
			return nil, fmt.Errorf("geocache: watch %s: %w", path, err)
		}
	}
	return c, nil
}

// OpenBytes returns a cache over a database held in memory. The cache keeps
// data; the caller must not modify it.
func OpenBytes[T any](data []byte, opts *Options) (*Cache[T], error) {
	o := opts.withDefaults()
	return newCache[T](&mapping{data: data, path: "(bytes)"}, &o)
}

func newCache[T any](m *mapping, o *Options) (*Cache[T], error) {
	g, err := open[T](m, o)
	if err != nil {
		return nil, err
	}
	c := &Cache[T]{stats: pcpu.New(), opts: *o, ready: newReadiness()}
	c.sampler = newSampler(c.stats.Ps(), o.MaxCost, func() uint64 { return uint64(c.stats.Sum(statHits) + c.stats.Sum(statMisses)) })
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.cur.Store(g)
	var hot func(context.Context)
	if o.HotSetFile != "" {
		hot = func(ctx context.Context) { c.loadHotSet(ctx, g, o.HotSetFile) }
	}
	g.start(context.Background(), o, hot, c.ready.mark, o.Warmup == WarmupWait)
	return c, nil
}

// Metadata returns the metadata of the database being served.
func (c *Cache[T]) Metadata() maxminddb.Metadata {
	if g := c.cur.Load(); g != nil {
		return g.reader.Metadata
	}
	c.reloadMu.Lock() // Close sets meta to the last generation's
	defer c.reloadMu.Unlock()
	return c.meta
}

// Close releases the cache and unmaps the file once no lookup is reading
// it, after writing the hot set to Options.HotSetFile if set. Lookups
// after Close return ErrClosed. Close is idempotent; later calls return
// the first call's error.
func (c *Cache[T]) Close() error {
	c.close.Do(func() {
		c.cancel() // a reload in progress
		if c.watcher != nil {
			c.watcher.stop()
		}
		c.reloadMu.Lock()
		defer c.reloadMu.Unlock()
		var saveErr error
		if p := c.opts.HotSetFile; p != "" && c.cur.Load() != nil {
			if saveErr = c.saveHotSet(p); saveErr != nil {
				saveErr = fmt.Errorf("geocache: save hot set: %w", saveErr)
				if l := c.opts.Logger; l != nil {
					l.Error("geocache: saving the hot set", "path", p, "err", saveErr)
				}
			}
		}
		if g := c.cur.Swap(nil); g != nil {
			c.meta = g.reader.Metadata
			c.err = g.retire()
		}
		c.ready.mark() // WaitReady returns ErrClosed
		c.sampler.close()
		c.err = errors.Join(saveErr, c.err)
	})
	return c.err
}

// Hits never reach ristretto, so its admission policy learns what is used
// only from reports, and a report costs the lookup that makes it a
// ristretto Get (a read of its store map under a lock, a push into its
// buffers). So while the cache is full, when admissions are contested, a hit
// reports its entry once in hitReportEvery per P, and a miss its entry and
// record once in missReportEvery. Misses are reported more often: they
// are what the policy must rank against the cached, and a report is small
// beside a miss's own work. A hit does not report its record: a record's
// entries' misses already rank it, and its hits' reports bought no hits
// (docs/measurements.md has the figures). Powers of two.
const (
	hitReportEvery  = 32
	missReportEvery = 8
)

// Lookup returns the database's answer for ip. Not found is a Result with
// Found false, not an error. In a database whose search tree aliases
// IPv4-mapped addresses to its IPv4 subtree (every MaxMind database does),
// ::ffff:1.2.3.4 and 1.2.3.4 share entries and give the same Result, with
// the network in IPv4 form (1.2.3.0/24 where the reader says
// ::ffff:1.2.3.0/120: the same network). In a database without that alias
// the mapped form is looked up as the IPv6 address it is, as the reader
// does; in an IPv4-only database it is looked up as IPv4.
//
// A hit reads only the cache: no lock, no read of the mapping, no
// allocation, and no write to a shared word. A miss walks the database,
// and decodes the record unless the cache holds it.
//
// Errors, all *LookupError naming the address: ErrInvalidAddress for the
// zero Addr and zoned IPv6 addresses, ErrIPv4Only for IPv6 (other than
// IPv4-mapped) in an IPv4-only database, ErrFault if the file was
// truncated under the mapping, and the reader's error for a corrupt tree
// or a record that does not decode into T; none of them is cached. After
// Close: ErrClosed.
func (c *Cache[T]) Lookup(ip netip.Addr) (res Result[T], err error) {
	g := c.cur.Load()
	if g == nil {
		return res, ErrClosed
	}
	a := ip
	if !ip.Is4() {
		if !ip.IsValid() || ip.Zone() != "" { // a zoned ::ffff:a.b.c.d too
			return res, &LookupError{Addr: ip, Err: ErrInvalidAddress}
		}
		if a = g.key(ip); !a.Is4() {
			return c.lookup6(g, ip, a)
		}
	}
	// The hit path of IPv4, the common case, written out here: each call
	// and each copy of the Result it returned measured a few percent of a
	// hit.
	v := addr4(a)
	if s, r, ok := g.front.lookup4(v); ok {
		if r != nil {
			res.Record, res.Found = r.value(), true
		}
		if s.v6Root() {
			res.Prefix = netip.PrefixFrom(netip.IPv6Unspecified(), g.rootBits)
		} else {
			res.Prefix = netip.PrefixFrom(from4(s.network()), s.bits())
		}
		if c.stats.Inc(statHits)&(hitReportEvery-1) == 0 && g.store.full() {
			g.store.touch(s.key())
		}
		if c.sampler.sampled(s.sample()) {
			c.sample(sampleHash(blockHash4(s.block())), s.key, false, r)
		}
		return res, nil
	}
	return c.miss(ip)
}

// sample hands a lookup that the sampler may follow to it: the entry
// (sampling hash eh, identity key()) and its record r.
func (c *Cache[T]) sample(eh uint8, key func() uint64, v6 bool, r *record[T]) {
	ref := sampleRef{eh: eh, v6: v6}
	if c.sampler.sampled(eh) {
		ref.entry = key()
	}
	if r != nil {
		// Reading the record is a cache miss, paid by sampled lookups.
		if ref.rh = sampleHash(recordKey(r.off)); c.sampler.sampled(ref.rh) {
			ref.rec, ref.rcost = uint64(r.off)+1, int32(min(r.sized()+itemCost, math.MaxInt32))
		}
	}
	c.sampler.push(ref)
}

// lookup6 is Lookup for the IPv6 address a (ip as asked).
func (c *Cache[T]) lookup6(g *generation[T], ip, a netip.Addr) (res Result[T], err error) {
	ahi, alo := addr6(a)
	s, hi, lo, r, ok := g.front.lookup6(ahi, alo)
	if !ok {
		return c.miss(ip)
	}
	if r != nil {
		res.Record, res.Found = r.value(), true
	}
	// a is in the network, so masking it gives the network without the
	// round trip through bytes that from6 makes; it cannot fail.
	res.Prefix, _ = a.Prefix(s.bits())
	key := func() uint64 { return entryKey6(hi, lo, s.keyBits(hi)) }
	if c.stats.Inc(statHits)&(hitReportEvery-1) == 0 && g.store.full() {
		g.store.touch(key())
	}
	if c.sampler.sampled(s.sample()) {
		c.sample(sampleHash(blockHash6(hi)), key, true, r)
	}
	return res, nil
}

// miss answers from the database on the current generation; a generation
// retired by a reload is left for the next one.
func (c *Cache[T]) miss(ip netip.Addr) (Result[T], error) {
	for {
		g := c.cur.Load()
		if g == nil {
			return Result[T]{}, ErrClosed
		}
		u, ok := g.enter()
		if !ok {
			continue
		}
		res, how, err := g.resolve(g.key(ip), false)
		g.exit(u)
		if err != nil {
			return Result[T]{}, &LookupError{Addr: ip, Err: err}
		}
		if c.sampler.sampled(how.sample) {
			c.sample(how.eh, func() uint64 { return how.key }, how.v6, (*record[T])(how.rec))
		}
		if how.cached {
			c.stats.Inc(statHits)
			c.stats.Inc(statSlowHits)
		} else {
			c.stats.Inc(statMisses)
		}
		if how.decoded {
			c.stats.Inc(statDecodes)
		}
		return res, nil
	}
}

// HitRatioAt estimates the hit ratio that the recent traffic would get
// with Options.MaxCost at maxCost (raised to 1 MiB, as MaxCost is). It
// replays a sample of the recent lookups (one in 64 at most, of the last
// few million) through a miniature of the cache's admission and eviction,
// scaled to maxCost (see mrc.go); ok is false until enough were sampled.
// docs/measurements.md compares it with caches run at those budgets. A
// call replays the sample under a lock: milliseconds, beside
// the lookups, which it does not block.
func (c *Cache[T]) HitRatioAt(maxCost int64) (ratio float64, ok bool) {
	maxCost = max(maxCost, 1<<20)
	return c.sampler.hitRatio(maxCost - fixedCost(maxCost) - minSlack(maxCost))
}

// current returns the serving generation with the caller entered as a
// user of it, so that Close waits for the caller before it unmaps; or
// ErrClosed. The caller passes the cell to g.exit.
func (c *Cache[T]) current() (*generation[T], *pcpu.Cell, error) {
	g := c.cur.Load()
	if g == nil {
		return nil, nil, ErrClosed
	}
	u, ok := g.enter()
	if !ok {
		return nil, nil, ErrClosed
	}
	return g, u, nil
}
