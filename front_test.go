package geocache

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

// countingHolder counts what the first level holds, per record.
type countingHolder struct {
	mu   sync.Mutex
	held map[*record[uint32]]int
}

func newCountingHolder() *countingHolder {
	return &countingHolder{held: map[*record[uint32]]int{}}
}

func (h *countingHolder) retain(r *record[uint32]) change {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held[r]++
	return false
}

func (h *countingHolder) release(r *record[uint32]) change {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held[r]--; h.held[r] == 0 {
		delete(h.held, r)
	}
	return false
}

func (*countingHolder) finish(change) {}

// frontEntries4 is a golden reference of the IPv4 entries in a front:
// networks that never overlap, /16 to /32 (those shorter than /24 cover
// many /24 blocks, and live in their /16's chain), each with a record
// that names it.
type frontEntries4 map[slot4]*record[uint32]

// entryFor returns the entry of es that covers v, by brute force.
func (es frontEntries4) entryFor(v uint32) (slot4, bool) {
	for s := range es {
		if s.covers(v) {
			return s, true
		}
	}
	return 0, false
}

// randomEntry4 returns an entry in one of few /24 blocks (so that homes
// collide and buckets overflow), either a network up to /24 or one of the
// halves a block is split into, and its record.
func randomEntry4(rnd *rand.Rand, blocks int) (slot4, *record[uint32]) {
	block := uint32(rnd.IntN(blocks)) * 0x100 * 0x9d // blocks spread over the space
	bits := 16 + rnd.IntN(9)
	if rnd.IntN(3) == 0 { // split: a /25 to /32 inside the block
		bits = 25 + rnd.IntN(8)
		block |= rnd.Uint32() & 0xff
	}
	s := makeSlot4(block, bits, false)
	return s, &record[uint32]{v: uint32(s.entry() >> slot4AddrShift)}
}

// TestFrontMatchesReference inserts and removes random IPv4 entries,
// growing the table past its first size and shrinking it back, and checks
// after every step that each address looked up gets the entry a brute
// force search of the reference finds, and that the holder holds exactly
// the reference's records.
func TestFrontMatchesReference(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	h := newCountingHolder()
	f := newFront[uint32](h)
	ref := frontEntries4{}
	const blocks = 3000 // more than 70% of the smallest table's slots
	check := func(step int) {
		for range 20 {
			v := uint32(rnd.IntN(blocks))*0x100*0x9d | rnd.Uint32()&0xff
			want, found := ref.entryFor(v)
			s, r, ok := f.lookup4(v)
			if ok != found || ok && (s.entry() != want || r != ref[want]) {
				t.Fatalf("step %d: lookup4(%#x) = %v %v, want %v %v", step, v, s.entry(), ok, want, found)
			}
		}
		if n4, _ := f.entries(); n4 != len(ref) || len(h.held) != len(ref) {
			t.Fatalf("step %d: %d entries, %d held, reference has %d", step, n4, len(h.held), len(ref))
		}
	}
	// Fill, then drain to a tenth: the table grows and shrinks.
	grown := 0
	for step := range 40000 {
		s, r := randomEntry4(rnd, blocks)
		filling := step < 20000
		if _, overlaps := overlapping(ref, s); filling && !overlaps {
			if f.insert4(s, r) != inserted {
				t.Fatalf("insert4(%v) of a new entry: present", s)
			}
			ref[s] = r
		}
		if !filling && len(ref) > 300 {
			for old := range ref { // map order: a random entry
				f.remove4(old)
				delete(ref, old)
				break
			}
		}
		grown = max(grown, len(f.t4.Load().b))
		if step%97 == 0 {
			check(step)
		}
	}
	check(-1)
	if grown <= minBuckets4 || len(f.t4.Load().b) >= grown {
		t.Errorf("the table did not grow and shrink: %d buckets at most, %d at the end", grown, len(f.t4.Load().b))
	}
	for s, r := range ref { // present again: no second slot
		if f.insert4(s, r) != present {
			t.Fatalf("insert4(%v) again: not present", s)
		}
	}
}

// overlapping returns the reference entry whose network overlaps s's (the
// database's networks never overlap: one of them could not be cached).
func overlapping(ref frontEntries4, s slot4) (slot4, bool) {
	for o := range ref {
		kb := min(o.keyBits(), s.keyBits())
		if (o.block()^s.block())&mask32(kb) == 0 {
			return o, true
		}
	}
	return 0, false
}

// TestFrontIPv6 checks IPv6 entries the same way: several /48 blocks
// sharing a home bucket, split blocks, removal.
func TestFrontIPv6(t *testing.T) {
	h := newCountingHolder()
	f := newFront[uint32](h)
	type entry struct {
		s      slot6
		hi, lo uint64
		r      *record[uint32]
	}
	var es []entry
	for i := range uint64(600) { // 600 /48 blocks: more than a minimum table holds
		hi := (0x2001_0db8_0000 + i*0x1_0000) << 16
		if i%3 == 0 { // split: a /64 and a /120 inside the block
			es = append(es, entry{makeSlot6(hi, 64, true), hi | 0x1, 0, &record[uint32]{v: uint32(i)}},
				entry{makeSlot6(hi, 120, true), hi | 0x2, 0xab00, &record[uint32]{v: uint32(i)}})
			continue
		}
		es = append(es, entry{makeSlot6(hi, 32+int(i%17), false), hi, 0, &record[uint32]{v: uint32(i)}})
	}
	for _, e := range es {
		if f.insert6(e.s, e.hi, e.lo, e.r) != inserted {
			t.Fatalf("insert6 %v: present", e)
		}
	}
	for i, e := range es {
		s, hi, lo, r, ok := f.lookup6(e.hi, e.lo|0x5)
		if !ok || s.entry() != e.s || hi != e.hi || lo != e.lo || r != e.r {
			t.Fatalf("entry %d: lookup6 = %v %#x %#x %v", i, s, hi, lo, ok)
		}
	}
	if _, _, _, _, ok := f.lookup6(0x2001_0db8_0000<<16|0x3, 0); ok {
		t.Error("an address of a split block outside its entries was found")
	}
	for _, e := range es[:len(es)-10] {
		f.remove6(e.s, e.hi, e.lo)
	}
	for _, e := range es[len(es)-10:] {
		if _, _, _, r, ok := f.lookup6(e.hi, e.lo); !ok || r != e.r {
			t.Fatalf("after removals, %#x:%#x is lost", e.hi, e.lo)
		}
	}
	if _, n6 := f.entries(); n6 != 10 || len(h.held) != 10 || len(f.t6.Load().b) != minBuckets6 {
		t.Errorf("%d entries, %d held, %d buckets; want 10, 10, %d", n6, len(h.held), len(f.t6.Load().b), minBuckets6)
	}
}

// TestFrontConcurrent has a writer rewrite the slots of a few buckets
// with other entries (and resize the table) while readers look up; a
// reader that trusts a slot must get the record of the entry it read,
// never another's. Run it with -race too.
func TestFrontConcurrent(t *testing.T) {
	f := newFront[uint32](newCountingHolder())
	const blocks = 64
	raceReaders(t, func(rnd *rand.Rand) (found, right bool) {
		v := uint32(rnd.IntN(blocks))<<8 | rnd.Uint32()&0xf
		s, r, ok := f.lookup4(v)
		return ok, ok && r != nil && r.v == uint32(s.entry()>>slot4AddrShift) && s.covers(v)
	}, func() {
		rnd := rand.New(rand.NewPCG(3, 4))
		for range 300_000 {
			// Half the blocks are whole /24s, half split into 16 /32s.
			blk := uint32(rnd.IntN(blocks))
			s := makeSlot4(blk<<8, 24, false)
			if blk%2 == 1 {
				s = makeSlot4(blk<<8|rnd.Uint32()&0xf, 32, false)
			}
			if rnd.IntN(2) == 0 {
				f.insert4(s, &record[uint32]{v: uint32(s >> slot4AddrShift)})
			} else {
				f.remove4(s)
			}
		}
	})
}

// TestFrontConcurrentIPv6 is TestFrontConcurrent for IPv6 entries in a few
// /48 blocks, whose /64 networks come and go in numbers that mark the
// blocks split and move their entries to the sub-blocks' buckets while
// readers look up.
func TestFrontConcurrentIPv6(t *testing.T) {
	f := newFront[uint32](newCountingHolder())
	const blocks = 8
	net := func(rnd *rand.Rand) uint64 { return uint64(rnd.IntN(blocks))<<16 | uint64(rnd.IntN(64)) }
	raceReaders(t, func(rnd *rand.Rand) (found, right bool) {
		hi := net(rnd)
		s, shi, _, r, ok := f.lookup6(hi, rnd.Uint64())
		return ok, ok && r != nil && r.v == uint32(shi) && shi == hi && s.bits() == 64
	}, func() {
		rnd := rand.New(rand.NewPCG(5, 6))
		for range 200_000 {
			hi := net(rnd)
			if rnd.IntN(2) == 0 {
				f.insert6(makeSlot6(hi, 64, true), hi, 0, &record[uint32]{v: uint32(hi)})
			} else {
				f.remove6(makeSlot6(hi, 64, true), hi, 0)
			}
		}
	})
	if f.markers6 == 0 {
		t.Error("no block was marked split")
	}
}

// raceReaders runs two readers calling read until write returns, and
// fails if a lookup that trusted a slot got a wrong answer, or if none
// found anything.
func raceReaders(t *testing.T, read func(*rand.Rand) (found, right bool), write func()) {
	t.Helper()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var wrong, trusted atomic.Int64
	for g := range 2 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(g), 7))
			for !stop.Load() {
				if found, right := read(rnd); found {
					trusted.Add(1)
					if !right {
						wrong.Add(1)
					}
				}
			}
		})
	}
	write()
	stop.Store(true)
	wg.Wait()
	if n := wrong.Load(); n != 0 {
		t.Errorf("%d of %d lookups trusted a slot with another entry's record", n, trusted.Load())
	}
	if trusted.Load() == 0 {
		t.Error("no lookup found an entry")
	}
}

// longestRun4 returns the most buckets a lookup in t can read: the longest
// run of overflowed buckets, plus the one that ends it.
func longestRun4[T any](t *table4[T]) int {
	longest, run := 0, 0
	for i := range 2 * len(t.b) { // twice round: a run can wrap
		if slot4(t.b[i%len(t.b)][ways4-1].w.Load()).overflowed() {
			run++
			continue
		}
		longest, run = max(longest, run+1), 0
	}
	return min(longest, len(t.b))
}

func longestRun6[T any](t *table6[T]) int {
	longest, run := 0, 0
	for i := range 2 * len(t.b) {
		if slot6(t.b[i%len(t.b)][ways6-1].meta.Load()).overflowed() {
			run++
			continue
		}
		longest, run = max(longest, run+1), 0
	}
	return min(longest, len(t.b))
}

// TestFrontSplitBlocks fills blocks the way GeoLite2-City splits its
// densest ones (a /24 into 256 /32s, a /48 into 3,000 /64s) and all of
// IPv4-mapped space as a database that does not alias it to IPv4 answers
// it (one /64), and checks that every network is found and how long the
// chains a lookup reads are: an IPv4 block's own (at most 256 entries),
// an IPv6 block's spread over its sub-blocks' buckets; and that a /48
// with few networks cached keeps them in its own bucket, one probe away.
func TestFrontSplitBlocks(t *testing.T) {
	f := newFront[uint32](newCountingHolder())
	const few = 0x2a02_0c7d_0000_0000
	for i := range uint64(splitAt) {
		f.insert6(makeSlot6(few, 64, false), few|i<<4, 0, &record[uint32]{v: uint32(i)})
	}
	if f.t6.Load().marked(few) {
		t.Errorf("a /48 with %d networks cached is marked split", splitAt)
	}
	for i := range uint64(splitAt) {
		if _, hi, _, r, ok := f.lookup6(few|i<<4, 7); !ok || hi != few|i<<4 || r.v != uint32(i) {
			t.Fatalf("%#x: %#x %v", few|i<<4, hi, ok)
		}
	}
	for i := range uint32(256) {
		v := 0x51_02_45_00 | i
		f.insert4(makeSlot4(v, 32, false), &record[uint32]{v: v})
	}
	type net6 struct{ hi, lo uint64 }
	var nets6 []net6
	for i := range uint64(3000) {
		nets6 = append(nets6, net6{0x2a02_0c7c_0000_0000 | i<<4, 0})
	}
	for i := range uint64(3000) { // ::ffff:a.b.c.0/120
		nets6 = append(nets6, net6{0, 0xffff_0000_0000 | (i*0x9e37)&0xffff_ff00})
	}
	for _, n := range nets6 {
		bits := 64
		if n.hi == 0 {
			bits = 120
		}
		f.insert6(makeSlot6(n.hi, bits, true), n.hi, n.lo, &record[uint32]{v: uint32(n.hi) ^ uint32(n.lo)})
	}
	for i := range uint32(256) {
		v := 0x51_02_45_00 | i
		if s, r, ok := f.lookup4(v); !ok || s.bits() != 32 || r.v != v {
			t.Fatalf("%v: %v %v", from4(v), s, ok)
		}
	}
	if !f.t6.Load().marked(0x2a02_0c7c_0000_0000) {
		t.Error("a /48 with 3,000 networks cached is not marked split")
	}
	for _, n := range nets6 {
		if _, hi, lo, r, ok := f.lookup6(n.hi, n.lo|0x7); !ok || hi != n.hi || lo != n.lo || r.v != uint32(n.hi)^uint32(n.lo) {
			t.Fatalf("%#x:%#x: %#x:%#x %v", n.hi, n.lo, hi, lo, ok)
		}
	}
	if n := longestRun4(f.t4.Load()); n > 256/ways4+8 {
		t.Errorf("a lookup may read %d IPv4 buckets", n)
	}
	if n := longestRun6(f.t6.Load()); n > 8 {
		t.Errorf("a lookup may read %d IPv6 buckets", n)
	}
}

// TestFrontShortNetworks checks IPv4 networks shorter than /24 beside
// longer ones in the same /20 and /16 blocks: each address finds the one
// entry that covers it, whichever chain holds it, before and after the
// short ones leave.
func TestFrontShortNetworks(t *testing.T) {
	f := newFront[uint32](newCountingHolder())
	ip := func(a, b, c, d uint32) uint32 { return a<<24 | b<<16 | c<<8 | d }
	entries := []slot4{
		makeSlot4(ip(10, 0, 0, 0), 22, false),  // 10.0.0.0-10.0.3.255
		makeSlot4(ip(10, 0, 4, 0), 24, false),  // same /20
		makeSlot4(ip(10, 0, 5, 64), 26, false), // same /20
		makeSlot4(ip(10, 0, 16, 0), 20, false), // the next /20
		makeSlot4(ip(10, 7, 0, 0), 16, false),  // a /16 keyed as its own /16 block
		makeSlot4(ip(11, 0, 0, 0), 12, false),  // shorter than /16: keyed by 11.0.0.0/16
	}
	for _, s := range entries {
		f.insert4(s, &record[uint32]{v: uint32(s >> slot4AddrShift)})
	}
	cases := []struct {
		v    uint32
		want slot4 // 0: no entry
	}{
		{ip(10, 0, 2, 9), entries[0]},
		{ip(10, 0, 4, 200), entries[1]},
		{ip(10, 0, 5, 100), entries[2]},
		{ip(10, 0, 5, 1), 0},
		{ip(10, 0, 31, 255), entries[3]},
		{ip(10, 7, 200, 1), entries[4]},
		{ip(10, 8, 0, 1), 0},
		{ip(11, 0, 99, 1), entries[5]},
		{ip(11, 1, 0, 1), 0}, // in the /12, not in the /16 block it was cached for
	}
	check := func(when string, gone map[slot4]bool) {
		for _, c := range cases {
			want := c.want
			if gone[want] {
				want = 0
			}
			s, r, ok := f.lookup4(c.v)
			if ok != (want != 0) || ok && (s.entry() != want || r.v != uint32(want>>slot4AddrShift)) {
				t.Errorf("%s: lookup4(%v) = %v/%d %v, want %v/%d", when, from4(c.v), from4(s.network()), s.bits(), ok, from4(want.network()), want.bits())
			}
		}
	}
	check("all cached", nil)
	gone := map[slot4]bool{}
	for _, s := range entries {
		if s.bits() < strideV4 {
			f.remove4(s)
			gone[s] = true
		}
	}
	check("short ones removed", gone)
}

// TestFrontWholeIPv6Networks follows a /52 keyed by itself in a /48 that
// is not split: it answers all of its sub-blocks; once the block splits it
// stays in the bucket of its first sub-block and answers that one, other
// sub-blocks cache it per sub-block, and it leaves as it came, rebuild or
// not.
func TestFrontWholeIPv6Networks(t *testing.T) {
	h := newCountingHolder()
	f := newFront[uint32](h)
	const block = 0x2a02_0c7d_0000 << 16
	const n52 = block | 0x1000 // a /52
	whole := makeSlot6(n52, 52, false)
	if whole.keyBits(n52) != 52 || makeSlot6(n52, 52, true).keyBits(n52) != 64 {
		t.Fatalf("key lengths %d, %d; want 52, 64", whole.keyBits(n52), makeSlot6(n52, 52, true).keyBits(n52))
	}
	r52 := &record[uint32]{v: 52}
	f.insert6(whole, n52, 0, r52)
	for _, sub := range []uint64{0, 0x0abc, 0x0fff} {
		if s, hi, _, r, ok := f.lookup6(n52|sub, 0x1234); !ok || hi != n52 || s.bits() != 52 || r != r52 {
			t.Fatalf("before the split, %#x: %#x/%d %v", n52|sub, hi, s.bits(), ok)
		}
	}
	for i := range uint64(splitAt) { // /64s: the block splits
		f.insert6(makeSlot6(block, 64, false), block|0x2000|i, 0, &record[uint32]{v: uint32(i)})
	}
	if !f.isSplit(block) {
		t.Fatal("the block did not split")
	}
	check := func(when string) {
		t.Helper()
		if s, hi, _, r, ok := f.lookup6(n52, 0x1234); !ok || hi != n52 || s.entry() != whole || r != r52 {
			t.Fatalf("%s, the /52's first /64: %#x %v", when, hi, ok)
		}
		if s, hi, _, r, ok := f.lookup6(n52|0x0fff, 0x1234); ok && (s.bits() != 52 || r != r52 || (hi^n52)&mask64(52) != 0) {
			t.Fatalf("%s, another /64 of the /52: wrong answer %#x/%d", when, hi, s.bits())
		}
	}
	check("after the split")
	perSub := makeSlot6(n52|0x0abc, 52, true)
	if f.insert6(perSub, n52|0x0abc, 0, r52) != inserted {
		t.Fatal("the /52 per /64 is taken for the /52 keyed whole")
	}
	if s, hi, _, _, ok := f.lookup6(n52|0x0abc, 1); !ok || s.entry() != perSub || hi != n52|0x0abc {
		t.Fatalf("the /52 cached per /64: %#x %v", hi, ok)
	}
	f.mu.Lock()
	f.resize6(len(f.t6.Load().b)) // a rebuild places it where removal finds it
	f.mu.Unlock()
	check("after a rebuild")
	f.remove6(whole, n52, 0)
	if _, _, _, _, ok := f.lookup6(n52, 0x1234); ok {
		t.Error("the /52 keyed whole is still found after its removal")
	}
	if _, n6 := f.entries(); n6 != splitAt+1 || h.held[r52] != 1 {
		t.Errorf("%d entries, the /52's record held %d times; want %d, 1", n6, h.held[r52], splitAt+1)
	}
}

// TestFrontShortIPv6Networks checks IPv6 networks shorter than /48: one
// entry answers every /48 of a /40-/47, one shorter than /40 is cached per
// /40 block, and /48s and longer networks beside them in a /40 are found
// past the short chain, before and after a rebuild and removals, whichever
// chain a lookup reads first.
func TestFrontShortIPv6Networks(t *testing.T) {
	h := newCountingHolder()
	f := newFront[uint32](h)
	const g = 0x2a00_1000 << 32 // a /32
	type entry struct {
		s  slot6
		hi uint64
	}
	es := []entry{
		{makeSlot6(g, 36, false), g},                                    // keyed by its /40 block g/40
		{makeSlot6(g|0x01_40<<16, 42, false), g | 0x01_40<<16},          // a /42 keyed by itself
		{makeSlot6(g|0x01_00<<16, 48, false), g | 0x01_00<<16},          // a /48 in the same /40
		{makeSlot6(g|0x01_01<<16, 56, false), g | 0x01_01<<16 | 0x3400}, // a /56 keyed whole
	}
	for i, e := range es {
		f.insert6(e.s, e.hi, 0, &record[uint32]{v: uint32(i)})
	}
	cases := []struct {
		hi   uint64
		want int // index into es; -1: no entry
	}{
		{g | 0x00_17<<16 | 0xbeef, 0}, // another /48 of the /36's cached /40
		{g | 0x00_ff<<16, 0},
		{g | 0x02_00<<16, -1},          // the /36's next /40: not asked about
		{g | 0x01_7f<<16 | 0x1, 1},     // the /42's last /48
		{g | 0x01_00<<16 | 0xabcd, 2},  // the /48 beside the /42
		{g | 0x01_01<<16 | 0x34ff, 3},  // the /56
		{g | 0x01_01<<16 | 0x3500, -1}, // beside the /56
	}
	check := func(when string, gone map[int]bool) {
		t.Helper()
		for _, c := range cases {
			want := c.want
			if gone[want] {
				want = -1
			}
			s, hi, _, r, ok := f.lookup6(c.hi, 0x1234)
			if ok != (want >= 0) || ok && (s.entry() != es[want].s || hi != es[want].hi || r.v != uint32(want)) {
				t.Errorf("%s: lookup6(%v) = %#x/%d %v, want entry %d", when, from6(c.hi, 0x1234), hi, s.bits(), ok, want)
			}
		}
	}
	check("all cached", nil)
	f.mu.Lock()
	f.resize6(len(f.t6.Load().b))
	f.mu.Unlock()
	check("after a rebuild", nil)
	for _, c := range cases { // as a hash collision or a removed entry would
		f.t6.Load().markOwn(c.hi)
	}
	check("every /48 taken to hold entries of its own", nil)
	f.remove6(es[0].s, es[0].hi, 0)
	f.remove6(es[1].s, es[1].hi, 0)
	check("short ones removed", map[int]bool{0: true, 1: true})
	if _, n6 := f.entries(); n6 != 2 || len(h.held) != 2 {
		t.Errorf("%d entries, %d records held; want 2, 2", n6, len(h.held))
	}
}

// TestHitFieldsOwnLine checks that the fields every hit reads share no
// cache line with fields that misses and ristretto's goroutine write.
func TestHitFieldsOwnLine(t *testing.T) {
	const line = 64
	var f front[uint32]
	if off := unsafe.Offsetof(f.t4); off < line {
		t.Errorf("front.t4 at %d: within a line of what precedes the struct", off)
	}
	if gap := unsafe.Offsetof(f.mu) - (unsafe.Offsetof(f.t6) + unsafe.Sizeof(f.t6)); gap < line {
		t.Errorf("front.mu %d bytes after front.t6", gap)
	}
	var g generation[uint32]
	if gap := unsafe.Offsetof(g.recs) - (unsafe.Offsetof(g.ipv4) + unsafe.Sizeof(g.ipv4)); gap < line {
		t.Errorf("generation.recs %d bytes after the fields hits read", gap)
	}
}
