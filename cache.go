package geocache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocache/geocache/internal/pcpu"
	"github.com/geocache/geocache/internal/sizeof"
)

// DefaultMaxCost is the cache budget when Options.MaxCost is zero.
const DefaultMaxCost = 64 << 20

// Options configure a Cache. The zero value (or a nil *Options) gives the
// documented defaults.
type Options struct {
	// MaxCost is the cache budget in bytes: cached entries, decoded
	// records and the cache's fixed tables, all counted. Default
	// DefaultMaxCost (64 MiB). Values below 1 MiB are raised to 1 MiB.
	MaxCost int64

	// InMemory reads the whole file into the heap instead of mapping it:
	// no page faults after Open, at the cost of the file's size in heap.
	// Platforms without mmap always read into memory.
	InMemory bool

	// Verify runs the reader's full structural check of the database in
	// Open, so a corrupt file fails there instead of in Lookup. It reads
	// every byte of the file (about a second for GeoLite2-City).
	Verify bool

	// Warmup says how Open pre-faults a mapped file so that lookups do
	// not take page faults: in the background (WarmupAsync, the default),
	// before Open returns (WarmupWait), or not at all (WarmupOff).
	Warmup WarmupMode

	// KeepWarm, if positive, re-checks the mapping's residency at this
	// interval after warmup and faults back in what memory pressure
	// evicted. Default 0: off.
	KeepWarm time.Duration

	// Mlock pins the mapping in memory (mlock) in Open, so it is never
	// evicted. Open fails with an *MlockError when RLIMIT_MEMLOCK is
	// below the file's size.
	Mlock bool

	// Watch reloads the database when its file changes (fsnotify on the
	// file's directory, so a rename over the file, as geoipupdate does,
	// is seen). Bursts of events within WatchDebounce (default 500 ms)
	// make one reload.
	Watch         bool
	WatchDebounce time.Duration

	// Logger, if set, gets one record per reload and per failed reload.
	Logger *slog.Logger

	// OnReload, if set, is called after every reload attempt, with the
	// error of a failed one. It runs on the reloading goroutine.
	OnReload func(path string, err error)

	// ReloadCPU is the fraction of one CPU that Reload may spend looking
	// the hot set up again in the new database, so that a reload does not
	// take the cores that serve lookups: at 0.05, the ~100k hot networks
	// of a 64 MiB geoip2.City cache take ~6 s instead of 0.3 s before the
	// swap. The swap waits for them either way, so the new database starts
	// warm. Default 0.05; 1 or more: as fast as it can.
	ReloadCPU float64

	// HotSetFile, if set, names a file that keeps the hot set across
	// restarts: Open looks its addresses up (after the warmup, before
	// Ready closes) and Close writes the hot set to it (see SaveHotSet).
	// A missing file is the first start; a corrupt or foreign one is
	// logged and ignored. Addresses, not answers, are saved, so a file
	// from an older database is harmless. Default "": off.
	HotSetFile string
}

func (o *Options) withDefaults() Options {
	var v Options
	if o != nil {
		v = *o
	}
	if v.MaxCost == 0 {
		v.MaxCost = DefaultMaxCost
	}
	v.MaxCost = max(v.MaxCost, 1<<20)
	if v.ReloadCPU <= 0 {
		v.ReloadCPU = 0.05
	}
	if v.WatchDebounce <= 0 {
		v.WatchDebounce = 500 * time.Millisecond
	}
	return v
}

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

// Stats is a snapshot of a Cache's counters, a plain value. Hits and
// Misses count Lookup calls only (not Prewarm, Reload or hot-set loads);
// the sizes are those of the database being served, and read 0 after
// Close. Each field is read atomically, but not all at one instant.
type Stats struct {
	Hits        uint64 // lookups answered from the cache
	SlowHits    uint64 // the part of Hits that missed the front table and asked ristretto
	Warmup      WarmupStats
	Reloads     uint64 // successful reloads
	ReloadFails uint64 // failed reloads (the previous database kept serving)
	Unchanged   uint64 // reloads that found the file byte-identical and kept the database serving
	Misses      uint64 // lookups that asked the database
	Entries     int64  // cached networks and split-block markers
	Records     int64  // distinct decoded records held by entries
	Cost        int64  // accounted bytes: entries, records and fixed tables
	MaxCost     int64  // the budget Cost stays within
	Evictions   uint64 // entries evicted to make room
	Rejections  uint64 // new entries the admission policy turned away
	DroppedSets uint64 // new entries dropped because the cache's write buffer was full
}

// Cache is a MaxMind DB reader with a prefix-aware cache in front of it.
// All methods are safe for concurrent use. The zero Cache is not usable:
// create one with Open or OpenBytes, and Close it to release the mapping.
type Cache[T any] struct {
	cur   atomic.Pointer[generation[T]]
	meta  maxminddb.Metadata
	stats *pcpu.Cells // counters statHits (A), statMisses (B), statSlowHits (C)
	opts  Options

	ready *readiness

	reloadMu       sync.Mutex         // serializes Reload and Close
	path           string             // the file last opened; guarded by reloadMu
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
	c := &Cache[T]{meta: g.reader.Metadata, stats: pcpu.New(), opts: *o, ready: newReadiness()}
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
		c.err = errors.Join(saveErr, c.err)
	})
	return c.err
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache[T]) Stats() Stats {
	hits, misses, slow := c.stats.Sum()
	st := Stats{Hits: uint64(hits), Misses: uint64(misses), SlowHits: uint64(slow),
		Reloads: c.reloads.Load(), ReloadFails: c.reloadFailures.Load(), Unchanged: c.unchanged.Load()}
	if g := c.cur.Load(); g != nil {
		g.store.stats(&st)
		st.Warmup = g.warm.stats()
	}
	return st
}

// The per-P counters of Cache.stats, for pcpu.Cells.Inc.
const (
	statHits     = 0
	statMisses   = 1
	statSlowHits = 2
)

// touchEvery is how often, per P, a front-table hit is reported to
// ristretto, so its admission policy learns which entries are hot although
// hits never reach it. A power of two.
const touchEvery = 64

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
// allocation, and no write to a shared word. A miss walks the database and
// decodes the record, unless another network already decoded it.
//
// Errors, all *LookupError naming the address: ErrInvalidAddress for the
// zero Addr and zoned IPv6 addresses, ErrIPv4Only for IPv6 (other than
// IPv4-mapped) in an IPv4-only database, ErrFault if the file was
// truncated under the mapping, and the reader's error for a corrupt tree
// or a record that does not decode into T; none of them is cached. After
// Close: ErrClosed.
func (c *Cache[T]) Lookup(ip netip.Addr) (Result[T], error) {
	g := c.cur.Load()
	if g == nil {
		return Result[T]{}, ErrClosed
	}
	a := ip
	if !ip.Is4() {
		if !ip.IsValid() || ip.Zone() != "" { // a zoned ::ffff:a.b.c.d too
			return Result[T]{}, &LookupError{Addr: ip, Err: ErrInvalidAddress}
		}
		a = g.key(ip)
	}
	if a.Is4() { // the common case, without building another netip.Addr
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:])
		if res, kbits, ok := g.store.front.get4(frontSet4(v), v); ok {
			if c.stats.Inc(statHits)&(touchEvery-1) == 0 {
				c.touch(key4(v, int(kbits)))
			}
			return res, nil
		}
		return c.miss(ip)
	}
	if res, kbits, ok := g.store.front.get(frontSet(a), a); ok {
		if c.stats.Inc(statHits)&(touchEvery-1) == 0 {
			c.touch(blockKey(a, int(kbits)))
		}
		return res, nil
	}
	return c.miss(ip)
}

// touch reports a front-table hit on key k to ristretto.
func (c *Cache[T]) touch(k uint64) {
	if g := c.cur.Load(); g != nil {
		if u, ok := g.enter(); ok {
			g.store.rc.Get(k)
			g.exit(u)
		}
	}
}

// miss answers from ristretto, or from the database, on the current
// generation; a generation retired by a reload is left for the next one.
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
		e, hit, err := g.resolve(g.key(ip))
		g.exit(u)
		if err != nil {
			return Result[T]{}, &LookupError{Addr: ip, Err: err}
		}
		if hit {
			c.stats.Inc(statHits)
			c.stats.Inc(statSlowHits)
		} else {
			c.stats.Inc(statMisses)
		}
		return e.res, nil
	}
}

// resolve finds a's entry in ristretto or fills it from the database.
func (g *generation[T]) resolve(a netip.Addr) (e *entry[T], hit bool, err error) {
	if g.ipv4 && a.Is6() {
		return nil, false, ErrIPv4Only
	}
	s := g.store
	k := blockKey(a, stride(a))
	m := s.get(k, a) // a network entry, a marker, or nil
	if m != nil {
		sub := m.sub.Load()
		if sub == 0 {
			return m, true, nil
		}
		if e := s.get(blockKey(a, int(sub)), a); e != nil && e.sub.Load() == 0 {
			return e, true, nil
		}
	}
	e, err = g.fill(a, m)
	return e, false, err
}

// fill asks the database for a and caches the answer. m is the marker of
// a's first-level block if the caller found one.
func (g *generation[T]) fill(a netip.Addr, m *entry[T]) (_ *entry[T], err error) {
	defer setPanicOnFault(setPanicOnFault(true))
	defer guardFault(g.m.path, &err)
	res := g.reader.Lookup(a)
	if err := res.Err(); err != nil {
		return nil, err
	}
	prefix := res.Prefix()
	e := &entry[T]{cover: coverOf(a, prefix), res: Result[T]{Prefix: prefix}}
	if res.Found() {
		r, err := g.store.record(res)
		if err != nil {
			return nil, err
		}
		e.rec, e.res.Record, e.res.Found = r, r.val, true
	}
	s := g.store
	bits, st := e.cover.Bits(), stride(a)
	e.set, e.kbits = frontSet(a), uint8(st)
	if bits > st {
		m = s.marker(a, m, st, bits)
		e.kbits = uint8(m.sub.Load())
	}
	e.key = blockKey(a, int(e.kbits))
	e.at = block(a, int(e.kbits)).Addr()
	s.insert(e)
	return e, nil
}

// entry is a cached network (sub == 0), or the marker of a split block
// (sub > 0: the length its networks are keyed at).
type entry[T any] struct {
	key   uint64       // ristretto's key: the hash of a's /kbits block
	set   uint64       // the front-table set of a's first-level block (frontSet)
	kbits uint8        // the block length key hashes
	cover netip.Prefix // the network in the address's own family (see coverOf)
	at    netip.Addr   // the /kbits block key hashes: where the entry was hot
	res   Result[T]
	rec   *record[T]
	sub   atomic.Uint32
}

// record is a decoded record shared by every entry whose network points at
// the same data offset. It is charged to the budget once, while any cached
// entry refers to it.
type record[T any] struct {
	v       T  // allocated with the record: one allocation, not two
	val     *T // &v
	decoded sync.WaitGroup
	err     error // of the decode; set before decoded is done
	off     uintptr
	size    int64 // set by the cost function, in ristretto's goroutine
	refs    atomic.Int64
}

// entryCost is what one entry costs: the entry itself plus ristretto's
// per-item bookkeeping (store map slot, policy pair, sketch share).
func entryCost[T any]() int64 { return int64(unsafe.Sizeof(entry[T]{})) + 160 }

// store is one generation's cache: ristretto, the bounded and cost-accounted
// store, with a lock-free front table of the entries it holds.
type store[T any] struct {
	rc    *ristretto.Cache[uint64, *entry[T]]
	front front[T]
	_     [64]byte // every hit reads the fields above; misses write those below

	records records[T]

	budget   int64        // MaxCost less the fixed tables
	fixed    int64        // bytes of the front table and ristretto's sketch
	slack    atomic.Int64 // headroom for one admission in progress; see rebudget
	entries  atomic.Int64
	nrec     atomic.Int64
	recBytes atomic.Int64
	evicted  atomic.Uint64
	rejected atomic.Uint64
	dropped  atomic.Uint64

	// The backlog of entries handed to ristretto and not yet costed by
	// its goroutine, kept without a word that every miss writes: misses
	// count per P (A: handed over, B: attempts), ristretto's goroutine
	// counts what it took, and every checkEvery attempts per P a miss
	// compares the two and sets backlogged.
	offers     *pcpu.Cells
	costed     atomic.Int64
	backlogged atomic.Bool
}

// checkEvery is how often, per P, insert recomputes the backlog: it may
// then exceed maxPending by checkEvery entries per P.
const checkEvery = 64

// pending returns the entries handed to ristretto and not yet costed.
func (s *store[T]) pending() int64 {
	handed, _, _ := s.offers.Sum()
	return handed - s.costed.Load()
}

// maxPending bounds the entries handed to ristretto and not yet processed
// by its goroutine. Ristretto buffers up to 32k of them, and each holds
// its decoded record, none of it accounted yet: under a miss storm that
// was tens of megabytes outside the budget. Past the bound a miss's answer
// is returned but not cached (counted in DroppedSets), so what the budget
// does not account stays below maxPending entries and their records
// (measured: see the README's adversarial run).
const maxPending = 4096

func newStore[T any](maxCost int64) (*store[T], error) {
	s := &store[T]{offers: pcpu.New()}
	ec := entryCost[T]()
	// Front slots: about one per expected entry.
	slots := 1024
	for int64(slots) < maxCost/256 && slots < 1<<22 {
		slots <<= 1
	}
	counters := max(maxCost/64, 1024) // ~10x the entries, 3 bytes each
	s.fixed = s.front.init(slots) + counters*3
	s.budget = maxCost - s.fixed
	s.slack.Store(ec + min(maxCost/64, 256<<10))
	if s.budget-s.slack.Load() < 64*ec {
		return nil, errors.New("geocache: MaxCost too small")
	}
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *entry[T]]{
		NumCounters:        counters,
		MaxCost:            s.budget - s.slack.Load(),
		BufferItems:        64,
		IgnoreInternalCost: true,
		KeyToHash:          func(k uint64) (uint64, uint64) { return k, 0 },
		Cost:               s.cost,
		OnExit:             s.exit,
		OnEvict:            func(*ristretto.Item[*entry[T]]) { s.evicted.Add(1) },
		OnReject:           func(*ristretto.Item[*entry[T]]) { s.rejected.Add(1) },
		// A key is never overwritten: a second Set for a present key is
		// a racing fill of the same answer, or a hash collision.
		ShouldUpdate: func(cur, prev *entry[T]) bool { return false },
	})
	if err != nil {
		return nil, err
	}
	s.rc = rc
	return s, nil
}

// get returns the entry under k in ristretto if its network contains a,
// and puts a network entry back in the front table, which had lost it.
func (s *store[T]) get(k uint64, a netip.Addr) *entry[T] {
	e, ok := s.rc.Get(k)
	if !ok || !e.cover.Contains(a) {
		return nil
	}
	if e.sub.Load() == 0 {
		s.front.put(e)
	}
	return e
}

// record returns the decoded record at res's offset, shared if cached.
// Concurrent misses that need the same record decode it once: the first
// publishes it undecoded and decodes; the others wait for it. (The tree
// walks are not merged: they are a tenth of a decode.)
func (s *store[T]) record(res maxminddb.Result) (*record[T], error) {
	r, created := s.records.loadOrCreate(res.Offset())
	if !created {
		r.decoded.Wait()
		if r.err != nil {
			return nil, r.err
		}
		return r, nil
	}
	decoded := false
	defer func() {
		if decoded {
			return
		}
		// A failed decode, or a fault unwinding to fill's guard: waiters
		// get an error, and the next miss tries again.
		if r.err == nil {
			r.err = ErrFault
		}
		r.decoded.Done()
		s.records.deleteIf(r)
	}()
	if r.err = res.Decode(r.val); r.err != nil {
		return nil, r.err
	}
	decoded = true
	r.decoded.Done()
	return r, nil
}

// marker returns the marker of a's split /st block, raising its length to
// at least bits. m is the marker if the caller has it already.
func (s *store[T]) marker(a netip.Addr, m *entry[T], st, bits int) *entry[T] {
	k := blockKey(a, st)
	if m == nil || m.sub.Load() == 0 {
		m = s.get(k, a)
	}
	if m == nil || m.sub.Load() == 0 {
		b := block(a, st)
		m = &entry[T]{key: k, set: frontSet(a), kbits: uint8(st), cover: b, at: b.Addr()}
		m.sub.Store(uint32(bits))
		s.insert(m)
		return m
	}
	for {
		cur := m.sub.Load()
		if cur >= uint32(bits) {
			return m
		}
		if m.sub.CompareAndSwap(cur, uint32(bits)) {
			return m
		}
	}
}

// insert publishes e in the front table (markers stay out of it) and
// offers it to ristretto. The front table gets it first so that
// ristretto's exit callback, which removes it again on rejection or
// eviction, always runs after.
func (s *store[T]) insert(e *entry[T]) {
	if s.offers.Inc(1)&(checkEvery-1) == 0 {
		if full := s.pending() > maxPending; full != s.backlogged.Load() {
			s.backlogged.Store(full)
		}
	}
	if !s.backlogged.Load() {
		if e.sub.Load() == 0 {
			s.front.put(e)
		}
		if s.rc.Set(e.key, e, 0) {
			s.offers.Inc(0)
			return
		}
		s.front.drop(e)
	}
	// Not cached: the answer is returned, the entry and (unless another
	// entry holds it) its record are forgotten.
	s.dropped.Add(1)
	if r := e.rec; r != nil && r.refs.Load() == 0 {
		s.records.deleteIf(r)
	}
}

// cost runs in ristretto's goroutine for each entry it is about to admit,
// keeping the sizing of records off the lookup path. The first entry to
// hold a record brings the record's bytes into the account.
func (s *store[T]) cost(e *entry[T]) int64 {
	s.costed.Add(1)
	s.entries.Add(1)
	if r := e.rec; r != nil && r.refs.Add(1) == 1 {
		if r.size == 0 {
			r.size = sizeof.Of(r.val)
		}
		if need := entryCost[T]() + r.size; need > s.slack.Load() {
			s.slack.Store(need)
		}
		s.records.loadOrStore(r)
		s.nrec.Add(1)
		s.recBytes.Add(r.size)
		s.rebudget()
	}
	return entryCost[T]()
}

// exit runs once for every entry that was offered and is now gone:
// rejected, evicted, or cleared on close.
func (s *store[T]) exit(e *entry[T]) {
	if e == nil {
		return
	}
	s.entries.Add(-1)
	s.front.drop(e)
	if r := e.rec; r != nil && r.refs.Add(-1) == 0 {
		s.records.deleteIf(r)
		s.nrec.Add(-1)
		s.recBytes.Add(-r.size)
		s.rebudget()
	}
}

// rebudget gives ristretto what the records leave of the budget, so that
// entries and records together stay within it, less a slack: cost counts
// an incoming entry and its record before ristretto evicts to make room
// for them, so the account briefly holds one entry and one record more
// than ristretto does. The slack (one entry and the largest record seen,
// at least min(MaxCost/64, 256 KiB)) keeps even that moment within the
// budget. Only ristretto's goroutine calls it (via cost and exit), except
// newStore.
func (s *store[T]) rebudget() {
	s.rc.UpdateMaxCost(max(s.budget-s.recBytes.Load()-s.slack.Load(), 64*entryCost[T]()))
}

func (s *store[T]) stats(st *Stats) {
	ec := entryCost[T]()
	st.Entries = s.entries.Load()
	st.Records = s.nrec.Load()
	st.Cost = s.fixed + st.Entries*ec + s.recBytes.Load()
	st.MaxCost = s.budget + s.fixed
	st.Evictions = s.evicted.Load()
	st.Rejections = s.rejected.Load()
	st.DroppedSets = s.dropped.Load()
}

func (s *store[T]) close() { s.rc.Close() }

// records maps data offsets to the decoded records cached entries hold.
// Sharded maps under mutexes: only misses and ristretto's callbacks use it.
type records[T any] struct {
	shards [32]struct {
		sync.Mutex
		m map[uintptr]*record[T]
	}
}

// loadOrCreate returns the record at off, or a new, undecoded one that it
// publishes (created true): the caller decodes it and marks it decoded.
func (rs *records[T]) loadOrCreate(off uintptr) (r *record[T], created bool) {
	s := &rs.shards[off%uintptr(len(rs.shards))]
	s.Lock()
	defer s.Unlock()
	if r := s.m[off]; r != nil {
		return r, false
	}
	if s.m == nil {
		s.m = map[uintptr]*record[T]{}
	}
	r = &record[T]{off: off}
	r.val = &r.v
	r.decoded.Add(1)
	s.m[off] = r
	return r, true
}

// loadOrStore returns the record at r's offset, storing r if there is none.
func (rs *records[T]) loadOrStore(r *record[T]) *record[T] {
	s := &rs.shards[r.off%uintptr(len(rs.shards))]
	s.Lock()
	defer s.Unlock()
	if prev := s.m[r.off]; prev != nil {
		return prev
	}
	if s.m == nil {
		s.m = map[uintptr]*record[T]{}
	}
	s.m[r.off] = r
	return r
}

// deleteIf removes r if it is the record stored at its offset.
func (rs *records[T]) deleteIf(r *record[T]) {
	s := &rs.shards[r.off%uintptr(len(rs.shards))]
	s.Lock()
	if s.m[r.off] == r {
		delete(s.m, r.off)
	}
	s.Unlock()
}
