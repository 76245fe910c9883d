package geocache

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// front is the first level of the cache, the table every lookup reads. It
// holds every network entry that ristretto holds (or is deciding about),
// so a lookup that does not find its entry here is a miss without asking
// ristretto, whose Get costs more than a tree walk's first levels.
//
// A bucket is one 64-byte cache line of four IPv4 slots (a word and the
// record's pointer), or two lines of four IPv6 slots. An entry lives in
// the bucket of its /24 or /48 block, of its /16 or /40 block if it is
// shorter than that, or of its /64 sub-block in a /48 with more than
// splitAt entries cached (see keys.go), so a hit reads one bucket (two in
// a split block, in a /20 that holds both a short network and longer
// ones, or where a hint map's shared bit errs), and takes the record's
// pointer from it: no second dependent load. The table is sized to the
// entries (load 25-70%), not to the budget, so the hot blocks of a
// traffic mix fill few lines and pages. A bucket that fills up marks its
// last slot and continues in the next bucket (linear probing, a bucket at
// a time): a lookup reads the next bucket only past such a mark, and
// every entry has a place.
//
// Readers take no lock and write nothing. Writers (misses that cache an
// entry, ristretto's callbacks that drop one) take mu, which also makes
// resizing simple: a new table is filled under mu and published with one
// store. A reader still on the old table may read an entry dropped since;
// its answer and its record are still right.
type front[T any] struct {
	// Read by every hit; the padding keeps the writers' fields below, and
	// whatever precedes the struct in memory, off their line.
	_  cpu.CacheLinePad
	t4 atomic.Pointer[table4[T]]
	t6 atomic.Pointer[table6[T]]
	_  cpu.CacheLinePad

	mu     sync.Mutex
	n4, n6 int // slots in use, markers included; guarded by mu
	// IPv6 markers in use; guarded by mu. A marker stays when the last
	// entry of its block leaves (it is never wrong: a split block stays
	// split), until the table is next rebuilt.
	markers6 int
	// Buckets marked overflowed, and how many were at the last rebuild;
	// guarded by mu. Marks stay when the entries that overflowed leave;
	// once they cover a quarter of the buckets and twice as many as a
	// rebuild left, the table is rebuilt at its size, which clears the
	// stale ones.
	over4, over6       int
	rebuilt4, rebuilt6 int
	holder             holder[T] // told when a slot starts and stops holding a record
	bytes              atomic.Int64
}

// holder keeps a record alive while a slot holds it: retain and release
// are called under mu, finish with what they returned after mu is let go.
type holder[T any] interface {
	retain(*record[T]) change
	release(*record[T]) change
	finish(change)
}

const (
	ways4 = 4 // IPv4 slots per bucket
	ways6 = 4 // IPv6 slots per bucket

	minBuckets4 = 256 // 16 KiB
	minBuckets6 = 64  // 8 KiB

	// A table doubles when more than growLoad of its slots are in use,
	// and halves below shrinkLoad; entries are charged for their slot at
	// that load (see frontShare4).
	growLoad   = 0.70
	shrinkLoad = 0.25

	// A /48 block's entries longer than /48 stay in its home chain, one
	// probe away, until there are more than splitAt of them; then the
	// block gets a marker and they move to their sub-blocks' chains (see
	// keys.go), so a block the database splits finely costs two short
	// probes rather than one long one.
	splitAt = ways6
)

func newFront[T any](h holder[T]) *front[T] {
	f := &front[T]{holder: h}
	f.t4.Store(newTable4[T](minBuckets4))
	f.t6.Store(newTable6[T](minBuckets6))
	f.account()
	return f
}

// account records the tables' size.
func (f *front[T]) account() {
	f.bytes.Store(shortMapBytes + shortHintBytes + int64(len(f.t4.Load().b))*int64(unsafe.Sizeof(bucket4[T]{})) +
		int64(len(f.t6.Load().b))*int64(unsafe.Sizeof(bucket6[T]{})+homeHintBits/8))
}

// lookup4 returns the entry that answers the IPv4 address v and its record
// (nil for not found). ok is false if there is none, or if a writer
// rewrote a slot while it was read.
func (f *front[T]) lookup4(v uint32) (s slot4, r *record[T], ok bool) {
	t := f.t4.Load()
	if t.inShort(v) {
		if s, r, ok = t.probe(t.short(v), v); ok {
			return s, r, ok
		}
	}
	return t.probe(t.home(v), v)
}

// lookup6 is lookup4 for the IPv6 address ahi:alo; it returns the entry's
// meta and block address. Of a /40 that holds short networks, it reads
// the /40's chain first unless the /48 may hold entries of its own.
func (f *front[T]) lookup6(ahi, alo uint64) (s slot6, hi, lo uint64, r *record[T], ok bool) {
	t := f.t6.Load()
	short := t.inShort(ahi)
	if short && !t.ownsAt(ahi) {
		if s, hi, lo, r, ok = t.probe(t.short(ahi), ahi, alo, false); ok {
			return s, hi, lo, r, ok
		}
		short = false
	}
	if s, hi, lo, r, ok = t.probe(t.home(ahi), ahi, alo, true); ok && s.marker() {
		s, hi, lo, r, ok = t.probe(t.sub(ahi, alo), ahi, alo, false)
	}
	if !ok && short {
		s, hi, lo, r, ok = t.probe(t.short(ahi), ahi, alo, false)
	}
	return s, hi, lo, r, ok
}

// isSplit reports whether the /48 block of hi is marked split. A writer
// may mark it at any time: an entry keyed as the answer said is right
// either way (see keys.go).
func (f *front[T]) isSplit(hi uint64) bool { return f.t6.Load().marked(hi) }

// insertResult says what insert did.
type insertResult int

const (
	inserted insertResult = iota // the entry is new in the table
	present                      // the same entry was there already
)

// insert4 adds the entry s with its record r (nil: not found).
func (f *front[T]) insert4(s slot4, r *record[T]) insertResult {
	var ch change
	defer func() { f.holder.finish(ch) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.t4.Load()
	if b, _ := t.find(s); b != nil {
		return present
	}
	f.over4 += t.place(s, r)
	f.n4++
	if r != nil {
		ch = f.holder.retain(r)
	}
	switch t = f.t4.Load(); {
	case float64(f.n4) > growLoad*float64(len(t.b)*ways4):
		f.resize4(2 * len(t.b))
	case f.over4 > max(len(t.b)/4, 2*f.rebuilt4):
		f.resize4(len(t.b))
	}
	return inserted
}

// remove4 drops the entry s, if it is there.
func (f *front[T]) remove4(s slot4) {
	var ch change
	defer func() { f.holder.finish(ch) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.t4.Load()
	b, j := t.find(s)
	if b == nil {
		return
	}
	r := b[j].rec.Load()
	b.write(j, 0, nil)
	f.n4--
	if r != nil {
		ch = f.holder.release(r)
	}
	if len(t.b) > minBuckets4 && float64(f.n4) < shrinkLoad*float64(len(t.b)*ways4) {
		f.resize4(len(t.b) / 2)
	}
}

// resize4 moves the IPv4 entries to a table of n buckets. Caller holds mu.
func (f *front[T]) resize4(n int) {
	old, t := f.t4.Load(), newTable4[T](n)
	f.over4, f.n4 = 0, 0
	for i := range old.b {
		for j := range old.b[i] {
			if s := slot4(old.b[i][j].w.Load()).entry(); !s.empty() {
				f.over4 += t.place(s, old.b[i][j].rec.Load())
				f.n4++
			}
		}
	}
	f.t4.Store(t)
	f.rebuilt4 = f.over4
	f.account()
}

// insert6 adds the entry of meta s keyed by the block at hi:lo, with its
// record r; an entry longer than /48 whose /48 already holds splitAt such
// entries in its home chain marks the /48 split first.
func (f *front[T]) insert6(s slot6, hi, lo uint64, r *record[T]) insertResult {
	var ch change
	defer func() { f.holder.finish(ch) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.t6.Load()
	marked := s.split() && t.marked(hi)
	if b, _ := t.findFrom(t.chain(s, hi, lo, marked), s, hi, lo); b != nil {
		return present
	}
	if s.split() && !marked {
		if at := t.inHome(hi); len(at) >= splitAt {
			f.split6(t, hi, at)
			marked = true
		}
	}
	f.over6 += t.place(t.chain(s, hi, lo, marked), s, hi, lo, r)
	f.n6++
	if r != nil {
		ch = f.holder.retain(r)
	}
	switch t = f.t6.Load(); {
	case float64(f.n6) > growLoad*float64(len(t.b)*ways6):
		f.resize6(2 * len(t.b))
	case f.over6 > max(len(t.b)/4, 2*f.rebuilt6):
		f.resize6(len(t.b))
	}
	return inserted
}

// split6 marks the /48 block of hi split and moves its entries at (all
// those in its home chain longer than /48) to their sub-blocks' chains. A
// reader may miss them while they move, never read a wrong answer. Caller
// holds mu.
func (f *front[T]) split6(t *table6[T], hi uint64, at []slotRef6[T]) {
	f.over6 += t.place(t.home(hi), slot6Marker, hi&mask64(strideV6), 0, nil)
	f.n6++
	f.markers6++
	for _, a := range at {
		sl := &a.b[a.j]
		s, shi, slo, r := slot6(sl.meta.Load()).entry(), sl.hi.Load(), sl.lo.Load(), sl.rec.Load()
		a.b.write(a.j, 0, 0, 0, nil)
		f.over6 += t.place(t.sub(shi, slo), s, shi, slo, r)
	}
}

// remove6 drops the entry of meta s keyed by the block at hi:lo.
func (f *front[T]) remove6(s slot6, hi, lo uint64) {
	var ch change
	defer func() { f.holder.finish(ch) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.t6.Load()
	b, j := t.find(s, hi, lo)
	if b == nil {
		return
	}
	r := b[j].rec.Load()
	b.write(j, 0, 0, 0, nil)
	f.n6--
	if r != nil {
		ch = f.holder.release(r)
	}
	if len(t.b) > minBuckets6 && float64(f.n6) < shrinkLoad*float64(len(t.b)*ways6) {
		f.resize6(len(t.b) / 2)
	}
}

// resize6 is resize4 for the IPv6 table; it also marks the blocks that
// hold more than splitAt entries longer than /48 split.
func (f *front[T]) resize6(n int) {
	old, t := f.t6.Load(), newTable6[T](n)
	longer := map[uint64]int{} // /48 block: its entries longer than /48
	for i := range old.b {
		for j := range old.b[i] {
			if s := slot6(old.b[i][j].meta.Load()); s.split() {
				longer[old.b[i][j].hi.Load()&mask64(strideV6)]++
			}
		}
	}
	f.over6, f.n6, f.markers6 = 0, 0, 0
	for blk, k := range longer {
		if k > splitAt {
			f.over6 += t.place(t.home(blk), slot6Marker, blk, 0, nil)
			f.n6++
			f.markers6++
		}
	}
	for i := range old.b {
		for j := range old.b[i] {
			sl := &old.b[i][j]
			m, hi, lo := slot6(sl.meta.Load()).entry(), sl.hi.Load(), sl.lo.Load()
			if m.empty() || m.marker() {
				continue
			}
			marked := longer[hi&mask64(strideV6)] > splitAt
			f.over6 += t.place(t.chain(m, hi, lo, marked), m, hi, lo, sl.rec.Load())
			f.n6++
		}
	}
	f.t6.Store(t)
	f.rebuilt6 = f.over6
	f.account()
}

// entries returns the number of IPv4 and IPv6 entries, markers left out.
func (f *front[T]) entries() (n4, n6 int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n4, f.n6 - f.markers6
}

// each calls fn4 with every IPv4 entry and fn6 with every IPv6 entry (meta
// and block address), markers left out, until one returns false. Entries
// written meanwhile may or may not be seen.
func (f *front[T]) each(fn4 func(slot4) bool, fn6 func(s slot6, hi, lo uint64) bool) {
	t4 := f.t4.Load()
	for i := range t4.b {
		for j := range t4.b[i] {
			if s := slot4(t4.b[i][j].w.Load()); !s.empty() && !fn4(s.entry()) {
				return
			}
		}
	}
	t6 := f.t6.Load()
	for i := range t6.b {
		for j := range t6.b[i] {
			sl := &t6.b[i][j]
			m := slot6(sl.meta.Load())
			hi, lo := sl.hi.Load(), sl.lo.Load()
			if !m.empty() && !m.marker() && slot6(sl.meta.Load()) == m && !fn6(m.entry(), hi, lo) {
				return
			}
		}
	}
}

// hot yields the address of the block every entry is keyed by: the hot
// set, for a reload or SaveHotSet.
func (f *front[T]) hot(yield func(netip.Addr) bool) {
	f.each(func(s slot4) bool { return yield(from4(s.block())) },
		func(_ slot6, hi, lo uint64) bool { return yield(from6(hi, lo)) })
}
