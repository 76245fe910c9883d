package geocache

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"
)

// front is the first level of the cache, the table every lookup reads. It
// holds every network entry that ristretto holds (or is deciding about),
// so a lookup that does not find its entry here is a miss without asking
// ristretto, whose Get costs more than a tree walk's first levels.
//
// A bucket is one 64-byte cache line of four IPv4 slots (a word and the
// record's pointer), or two lines of four IPv6 slots. An entry lives in
// the bucket of its /24 or /48 block (see keys.go), so a hit reads one
// line, also in blocks the database splits, and takes the record's
// pointer from it: no second dependent load. The table is sized to the
// entries (load 25-70%), not to the budget, so the hot blocks of a traffic
// mix fill few lines and pages. A bucket that fills up marks its last slot
// and continues in the next bucket (linear probing, a bucket at a time):
// a lookup reads the next bucket only past such a mark, and every entry
// has a place.
//
// Readers take no lock and write nothing. Writers (misses that cache an
// entry, ristretto's callbacks that drop one) take mu, which also makes
// resizing simple: a new table is filled under mu and published with one
// store. A reader still on the old table may read an entry dropped since;
// its answer and its record are still right.
type front[T any] struct {
	t4 atomic.Pointer[table4[T]]
	t6 atomic.Pointer[table6[T]]

	mu     sync.Mutex
	n4, n6 int // slots in use; guarded by mu
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
)

type bucket4[T any] [ways4]struct {
	w   atomic.Uint64
	rec atomic.Pointer[record[T]]
}

type bucket6[T any] [ways6]struct {
	meta, hi, lo atomic.Uint64
	rec          atomic.Pointer[record[T]]
}

type table4[T any] struct {
	b     []bucket4[T]
	shift uint8 // 64 - log2(len(b)): the hash's top bits index b
}

type table6[T any] struct {
	b     []bucket6[T]
	shift uint8
}

func newFront[T any](h holder[T]) *front[T] {
	f := &front[T]{holder: h}
	f.t4.Store(newTable4[T](minBuckets4))
	f.t6.Store(newTable6[T](minBuckets6))
	f.account()
	return f
}

func newTable4[T any](n int) *table4[T] {
	return &table4[T]{b: make([]bucket4[T], n), shift: shiftFor(n)}
}
func newTable6[T any](n int) *table6[T] {
	return &table6[T]{b: make([]bucket6[T], n), shift: shiftFor(n)}
}

func shiftFor(buckets int) uint8 {
	s := uint8(64)
	for ; buckets > 1; buckets >>= 1 {
		s--
	}
	return s
}

func (t *table4[T]) home(v uint32) int  { return int(blockHash4(v) >> t.shift) }
func (t *table6[T]) home(hi uint64) int { return int(blockHash6(hi) >> t.shift) }
func (t *table4[T]) next(i int) int     { return (i + 1) & (len(t.b) - 1) }
func (t *table6[T]) next(i int) int     { return (i + 1) & (len(t.b) - 1) }

// account records the tables' size.
func (f *front[T]) account() {
	f.bytes.Store(int64(len(f.t4.Load().b))*int64(unsafe.Sizeof(bucket4[T]{})) +
		int64(len(f.t6.Load().b))*int64(unsafe.Sizeof(bucket6[T]{})))
}

// lookup4 returns the entry that answers the IPv4 address v and its record
// (nil for not found). ok is false if there is none, or if a writer
// rewrote the slot while it was read.
func (f *front[T]) lookup4(v uint32) (s slot4, r *record[T], ok bool) {
	t := f.t4.Load()
	for i, n := t.home(v), 0; n < len(t.b); i, n = t.next(i), n+1 {
		b := &t.b[i]
		for j := range b {
			sl := &b[j]
			if s = slot4(sl.w.Load()); s.covers(v) {
				r = sl.rec.Load()
				return s, r, slot4(sl.w.Load()) == s
			}
		}
		if !slot4(b[ways4-1].w.Load()).overflowed() {
			break
		}
	}
	return 0, nil, false
}

// lookup6 is lookup4 for the IPv6 address ahi:alo; it returns the entry's
// meta and block address.
func (f *front[T]) lookup6(ahi, alo uint64) (s slot6, hi, lo uint64, r *record[T], ok bool) {
	t := f.t6.Load()
	for i, n := t.home(ahi), 0; n < len(t.b); i, n = t.next(i), n+1 {
		b := &t.b[i]
		for j := range b {
			sl := &b[j]
			if s = slot6(sl.meta.Load()); s.empty() {
				continue
			}
			kb := s.keyBits()
			if hi = sl.hi.Load(); (ahi^hi)&mask64(kb) != 0 {
				continue
			}
			if lo = sl.lo.Load(); (alo^lo)&mask64(kb-64) != 0 {
				continue
			}
			r = sl.rec.Load()
			return s, hi, lo, r, slot6(sl.meta.Load()) == s
		}
		if !slot6(b[ways6-1].meta.Load()).overflowed() {
			break
		}
	}
	return 0, 0, 0, nil, false
}

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
	switch {
	case float64(f.n4) > growLoad*float64(len(t.b)*ways4):
		f.resize4(2 * len(t.b))
	case f.over4 > max(len(t.b)/4, 2*f.rebuilt4):
		f.resize4(len(t.b))
	}
	return inserted
}

// find returns the bucket and way that hold entry s, or nil.
func (t *table4[T]) find(s slot4) (*bucket4[T], int) {
	for i, n := t.home(s.block()), 0; n < len(t.b); i, n = t.next(i), n+1 {
		b := &t.b[i]
		for j := range b {
			if slot4(b[j].w.Load()).entry() == s {
				return b, j
			}
		}
		if !slot4(b[ways4-1].w.Load()).overflowed() {
			break
		}
	}
	return nil, 0
}

// place writes entry s with record r into the first empty slot from its
// home bucket on, marking each full bucket it passes as overflowed, and
// returns how many buckets it newly marked. The table must have an empty
// slot.
func (t *table4[T]) place(s slot4, r *record[T]) (marked int) {
	for i := t.home(s.block()); ; i = t.next(i) {
		b := &t.b[i]
		for j := range b {
			if slot4(b[j].w.Load()).empty() {
				b.write(j, s, r)
				return marked
			}
		}
		if last := &b[ways4-1].w; !slot4(last.Load()).overflowed() {
			last.Store(uint64(slot4(last.Load()) | slot4Overflow))
			marked++
		}
	}
}

// write rewrites way j for the readers' double check of the word: it goes
// empty (with a new version) before the record changes, and gets its entry
// (with a newer one) after. s empty clears the slot. The overflow mark
// stays.
func (b *bucket4[T]) write(j int, s slot4, r *record[T]) {
	sl := &b[j]
	old := slot4(sl.w.Load())
	keep, v := old&slot4Overflow, old.version()
	sl.w.Store(uint64(keep | (v+1)&slot4VersionMask<<slot4VersionShift))
	sl.rec.Store(r)
	if !s.empty() {
		sl.w.Store(uint64(keep | s.entry() | (v+2)&slot4VersionMask<<slot4VersionShift))
	}
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
	f.over4 = 0
	for i := range old.b {
		for j := range old.b[i] {
			if s := slot4(old.b[i][j].w.Load()); !s.empty() {
				f.over4 += t.place(s, old.b[i][j].rec.Load())
			}
		}
	}
	f.t4.Store(t)
	f.rebuilt4 = f.over4
	f.account()
}

// insert6 adds the entry of meta s keyed by the block at hi:lo, with its
// record r.
func (f *front[T]) insert6(s slot6, hi, lo uint64, r *record[T]) insertResult {
	var ch change
	defer func() { f.holder.finish(ch) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.t6.Load()
	if b, _ := t.find(s, hi, lo); b != nil {
		return present
	}
	f.over6 += t.place(s, hi, lo, r)
	f.n6++
	if r != nil {
		ch = f.holder.retain(r)
	}
	switch {
	case float64(f.n6) > growLoad*float64(len(t.b)*ways6):
		f.resize6(2 * len(t.b))
	case f.over6 > max(len(t.b)/4, 2*f.rebuilt6):
		f.resize6(len(t.b))
	}
	return inserted
}

// find returns the bucket and way that hold the entry of meta s at hi:lo,
// or nil.
func (t *table6[T]) find(s slot6, hi, lo uint64) (*bucket6[T], int) {
	for i, n := t.home(hi), 0; n < len(t.b); i, n = t.next(i), n+1 {
		b := &t.b[i]
		for j := range b {
			if slot6(b[j].meta.Load()).entry() == s && b[j].hi.Load() == hi && b[j].lo.Load() == lo {
				return b, j
			}
		}
		if !slot6(b[ways6-1].meta.Load()).overflowed() {
			break
		}
	}
	return nil, 0
}

// place is table4.place for an IPv6 entry.
func (t *table6[T]) place(s slot6, hi, lo uint64, r *record[T]) (marked int) {
	for i := t.home(hi); ; i = t.next(i) {
		b := &t.b[i]
		for j := range b {
			if slot6(b[j].meta.Load()).empty() {
				b.write(j, s, hi, lo, r)
				return marked
			}
		}
		if last := &b[ways6-1].meta; !slot6(last.Load()).overflowed() {
			last.Store(uint64(slot6(last.Load()) | slot6Overflow))
			marked++
		}
	}
}

// write is bucket4.write for an IPv6 slot.
func (b *bucket6[T]) write(j int, s slot6, hi, lo uint64, r *record[T]) {
	sl := &b[j]
	old := slot6(sl.meta.Load())
	keep, v := old&slot6Overflow, old.version()
	sl.meta.Store(uint64(keep | (v+1)&slot6VersionMask<<slot6VersionShift))
	sl.hi.Store(hi)
	sl.lo.Store(lo)
	sl.rec.Store(r)
	if !s.empty() {
		sl.meta.Store(uint64(keep | s.entry() | (v+2)&slot6VersionMask<<slot6VersionShift))
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

// resize6 is resize4 for the IPv6 table.
func (f *front[T]) resize6(n int) {
	old, t := f.t6.Load(), newTable6[T](n)
	f.over6 = 0
	for i := range old.b {
		for j := range old.b[i] {
			sl := &old.b[i][j]
			if m := slot6(sl.meta.Load()); !m.empty() {
				f.over6 += t.place(m.entry(), sl.hi.Load(), sl.lo.Load(), sl.rec.Load())
			}
		}
	}
	f.t6.Store(t)
	f.rebuilt6 = f.over6
	f.account()
}

// entries returns the number of IPv4 and IPv6 slots in use.
func (f *front[T]) entries() (n4, n6 int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n4, f.n6
}

// each calls fn4 with every IPv4 entry and fn6 with every IPv6 entry (meta
// and block address), until one returns false. Entries written meanwhile
// may or may not be seen.
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
			if !m.empty() && slot6(sl.meta.Load()) == m && !fn6(m.entry(), hi, lo) {
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
