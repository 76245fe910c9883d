package geocache

import "sync/atomic"

// The first level's tables: power-of-two arrays of buckets, probed
// linearly a bucket at a time from where an entry's block hashes to (see
// front for the layout, keys.go for the blocks).

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
	// A bit per /20 block: set if an entry shorter than /24 may cover
	// some of it. A lookup in a /20 without one reads only its /24's
	// chain, one in a /20 with one reads its /16's chain first: either
	// way a hit reads one bucket, unless the /20 holds both (a /21-/23
	// beside longer networks). Bits are set by writers and cleared only
	// by a rebuild, so a stale one costs a probe, never an answer.
	shortAt [1 << (shortMapBits - 6)]atomic.Uint64
}

// shortMapBits is the length of the blocks table4.shortAt maps.
const shortMapBits = 20

// shortMapBytes is the size of table4.shortAt.
const shortMapBytes = 1 << shortMapBits / 8

type table6[T any] struct {
	b     []bucket6[T]
	shift uint8
	// A bit per hash of /40 block (shortHash6's top bits): set if an
	// entry shorter than /48 may cover some of it. IPv6 has too many /40
	// blocks to map them all, so blocks share bits. Set and cleared as
	// table4.shortAt is.
	shortAt [1 << (shortHintBits - 6)]atomic.Uint64
	// A bit per hash of /48 block (blockHash6's top bits), homeHintBits
	// per bucket so that a large table does not set them all: set if the
	// block may hold entries of its own, /48 or longer, or a marker. A
	// lookup whose /40 has a shortAt bit reads the /48's chain first when
	// its block has this one: a /48 carved out of a /40 leaves /41-/47
	// networks beside it, and most of the /40's traffic is in the /48s
	// of their own, which would read the /40's chain in vain. Set and
	// cleared as shortAt is.
	homeAt []atomic.Uint64
}

// homeHintBits is how many bits of table6.homeAt a bucket has, and
// homeHintShift its log2.
const (
	homeHintShift = 4
	homeHintBits  = 1 << homeHintShift
)

// shortHintBits is the log2 of the bits of table6.shortAt.
const shortHintBits = 18

// shortHintBytes is the size of table6.shortAt.
const shortHintBytes = 1 << shortHintBits / 8

func newTable4[T any](n int) *table4[T] {
	return &table4[T]{b: make([]bucket4[T], n), shift: shiftFor(n)}
}

func newTable6[T any](n int) *table6[T] {
	return &table6[T]{b: make([]bucket6[T], n), shift: shiftFor(n), homeAt: make([]atomic.Uint64, n*homeHintBits/64)}
}

func shiftFor(buckets int) uint8 {
	s := uint8(64)
	for ; buckets > 1; buckets >>= 1 {
		s--
	}
	return s
}

// home is the bucket of an address's block, short that of its /16 block,
// sub that of its sub-block.
func (t *table4[T]) home(v uint32) int     { return int(blockHash4(v) >> t.shift) }
func (t *table4[T]) short(v uint32) int    { return int(shortHash4(v) >> t.shift) }
func (t *table6[T]) home(hi uint64) int    { return int(blockHash6(hi) >> t.shift) }
func (t *table6[T]) short(hi uint64) int   { return int(shortHash6(hi) >> t.shift) }
func (t *table6[T]) sub(hi, lo uint64) int { return int(subHash6(hi, lo) >> t.shift) }
func (t *table4[T]) next(i int) int        { return (i + 1) & (len(t.b) - 1) }
func (t *table6[T]) next(i int) int        { return (i + 1) & (len(t.b) - 1) }

// inShort reports whether the /20 block of v may hold an entry shorter
// than /24.
func (t *table4[T]) inShort(v uint32) bool {
	return bitAt(t.shortAt[:], uint64(v>>(32-shortMapBits)))
}

// markShort sets the shortAt bits of the /20 blocks that the entry s
// (shorter than /24) covers.
func (t *table4[T]) markShort(s slot4) {
	kb := s.keyBits()
	first := s.block() >> (32 - shortMapBits)
	n := uint32(1)
	if kb < shortMapBits {
		n = 1 << (shortMapBits - kb)
	}
	for i := first; i < first+n; i++ {
		setBit(t.shortAt[:], uint64(i))
	}
}

// inShort reports whether the /40 block of hi may hold an entry shorter
// than /48.
func (t *table6[T]) inShort(hi uint64) bool {
	return bitAt(t.shortAt[:], shortHash6(hi)>>(64-shortHintBits))
}

// markShort sets the shortAt bit of the /40 block of hi.
func (t *table6[T]) markShort(hi uint64) {
	setBit(t.shortAt[:], shortHash6(hi)>>(64-shortHintBits))
}

// ownsAt reports whether the /48 block of hi may hold entries of its own
// (see homeAt); markOwn marks it so.
func (t *table6[T]) ownsAt(hi uint64) bool { return bitAt(t.homeAt, t.homeBit(hi)) }
func (t *table6[T]) markOwn(hi uint64)     { setBit(t.homeAt, t.homeBit(hi)) }

// homeBit is the homeAt bit of the /48 block of hi: its hash's top bits,
// homeHintBits for each bucket (minBuckets6 makes homeAt whole words).
func (t *table6[T]) homeBit(hi uint64) uint64 {
	return blockHash6(hi) >> (t.shift - homeHintShift)
}

// bitAt reports whether bit i of the map w (a table's shortAt or homeAt)
// is set.
func bitAt(w []atomic.Uint64, i uint64) bool { return w[i/64].Load()&(1<<(i%64)) != 0 }

// setBit sets bit i of the map w, writing only a word that lacks it: once
// set, the words stay shared in the readers' caches.
func setBit(w []atomic.Uint64, i uint64) {
	if !bitAt(w, i) {
		w[i/64].Or(1 << (i % 64))
	}
}

// start is the bucket the chain of the IPv4 entry s starts at: its /16
// block's if it is shorter than /24, its /24 block's otherwise.
func (t *table4[T]) start(s slot4) int {
	if s.bits() < strideV4 {
		return t.short(s.block())
	}
	return t.home(s.block())
}

// start is the bucket the chain of an IPv6 entry of meta s at hi:lo starts
// at: its /40 block's if it is shorter than /48, its sub-block's if its
// block is marked split, its block's otherwise (markers too).
func (t *table6[T]) start(s slot6, hi, lo uint64) int {
	return t.chain(s, hi, lo, s.split() && t.marked(hi))
}

// chain is start for a caller that knows whether the block is marked.
func (t *table6[T]) chain(s slot6, hi, lo uint64, marked bool) int {
	switch {
	case s.short():
		return t.short(hi)
	case marked && s.split():
		return t.sub(hi, lo)
	}
	return t.home(hi)
}

// marked reports whether the /48 block of hi holds a marker.
func (t *table6[T]) marked(hi uint64) bool {
	b, _ := t.findFrom(t.home(hi), slot6Marker, hi&mask64(strideV6), 0)
	return b != nil
}

// inHome returns where the home chain of the /48 block of hi holds
// entries of that block longer than /48.
func (t *table6[T]) inHome(hi uint64) (at []slotRef6[T]) {
	for i, n := t.home(hi), 0; n < len(t.b); i, n = t.next(i), n+1 {
		b := &t.b[i]
		for j := range b {
			if s := slot6(b[j].meta.Load()); s.split() && (b[j].hi.Load()^hi)&mask64(strideV6) == 0 {
				at = append(at, slotRef6[T]{b, j})
			}
		}
		if !slot6(b[ways6-1].meta.Load()).overflowed() {
			break
		}
	}
	return at
}

// slotRef6 names a slot of a table6.
type slotRef6[T any] struct {
	b *bucket6[T]
	j int
}

// probe returns the slot that covers v in the chain from bucket i, and its
// record. ok is false if there is none, or if a writer rewrote the slot
// while it was read.
func (t *table4[T]) probe(i int, v uint32) (s slot4, r *record[T], ok bool) {
	for n := 0; n < len(t.b); i, n = t.next(i), n+1 {
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

// probe is table4.probe for the IPv6 address ahi:alo, markers included if
// markers is set; it also returns the slot's block address.
func (t *table6[T]) probe(i int, ahi, alo uint64, markers bool) (s slot6, hi, lo uint64, r *record[T], ok bool) {
	for n := 0; n < len(t.b); i, n = t.next(i), n+1 {
		b := &t.b[i]
		for j := range b {
			sl := &b[j]
			if s = slot6(sl.meta.Load()); s.empty() || s.marker() && !markers {
				continue
			}
			hi = sl.hi.Load()
			kb := s.keyBits(hi)
			if (ahi^hi)&mask64(kb) != 0 {
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

// find returns the bucket and way that hold entry s, or nil.
func (t *table4[T]) find(s slot4) (*bucket4[T], int) {
	for i, n := t.start(s), 0; n < len(t.b); i, n = t.next(i), n+1 {
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

// find returns the bucket and way that hold the entry of meta s at hi:lo,
// or nil.
func (t *table6[T]) find(s slot6, hi, lo uint64) (*bucket6[T], int) {
	return t.findFrom(t.start(s, hi, lo), s, hi, lo)
}

// findFrom is find in the chain from bucket i.
func (t *table6[T]) findFrom(i int, s slot6, hi, lo uint64) (*bucket6[T], int) {
	for n := 0; n < len(t.b); i, n = t.next(i), n+1 {
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

// place writes entry s with record r into the first empty slot of its
// chain (see start), marking each full bucket it passes as overflowed, and
// returns how many buckets it newly marked; an entry shorter than /24 also
// sets its shortAt bits. The table must have an empty slot.
func (t *table4[T]) place(s slot4, r *record[T]) (overflows int) {
	if s.bits() < strideV4 {
		t.markShort(s)
	}
	for i := t.start(s); ; i = t.next(i) {
		b := &t.b[i]
		for j := range b {
			if slot4(b[j].w.Load()).empty() {
				b.write(j, s, r)
				return overflows
			}
		}
		if last := &b[ways4-1].w; !slot4(last.Load()).overflowed() {
			last.Store(uint64(slot4(last.Load()) | slot4Overflow))
			overflows++
		}
	}
}

// place is table4.place for an IPv6 entry, in the chain from bucket i.
func (t *table6[T]) place(i int, s slot6, hi, lo uint64, r *record[T]) (overflows int) {
	if s.short() {
		t.markShort(hi)
	} else {
		t.markOwn(hi)
	}
	for ; ; i = t.next(i) {
		b := &t.b[i]
		for j := range b {
			if slot6(b[j].meta.Load()).empty() {
				b.write(j, s, hi, lo, r)
				return overflows
			}
		}
		if last := &b[ways6-1].meta; !slot6(last.Load()).overflowed() {
			last.Store(uint64(slot6(last.Load()) | slot6Overflow))
			overflows++
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
