package geocache

import (
	"encoding/binary"
	"errors"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/ristretto/v2"

	"github.com/geocache/geocache/internal/pcpu"
)

// store is one generation's cache: ristretto, the bounded and
// cost-accounted store of network entries and decoded records, which
// decides what stays, and the first level, which answers lookups.
// Ristretto owns what is cached: an entry goes into the first level before
// it is offered, and ristretto's exit callback takes it out again when
// ristretto rejects or evicts it.
type store[T any] struct {
	rc    *ristretto.Cache[uint64, item[T]]
	front *front[T]
	recs  *records[T]
	door  *doorkeeper

	budget int64        // MaxCost
	fixed  int64        // ristretto's counters, the doorkeeper, the first level's smallest tables
	slack  atomic.Int64 // headroom for one admission in progress; see rebudget
	isFull atomic.Bool  // see full

	// Accounted from ristretto's cost function to its exit callback.
	entries4, entries6 atomic.Int64
	recBytes           atomic.Int64
	evicted, rejected  atomic.Uint64
	dropped            atomic.Uint64

	// The backlog of items handed to ristretto and not yet costed by its
	// goroutine, kept without a word that every miss writes: misses count
	// per P, ristretto's goroutine counts what it took, and every
	// checkEvery offers per P a miss compares the two.
	offers     *pcpu.Counters
	costed     atomic.Int64
	backlogged atomic.Bool
}

// The per-P counters of store.offers.
const (
	offersHanded   pcpu.Counter = iota // items handed to ristretto
	offersAttempts                     // offers, handed or not
	missesSeen                         // misses, for sampling their reports
)

// sampled reports whether this miss is one to report to ristretto's
// admission policy: one in missReportEvery per P.
func (s *store[T]) sampled() bool {
	return s.offers.Inc(missesSeen)&(missReportEvery-1) == 0
}

// item is what ristretto holds: a network entry (the words that name its
// first-level slot, so that the exit callback can take it out) or a
// decoded record.
type item[T any] struct {
	rec  *record[T] // a record; nil for an entry
	slot uint64     // an entry's slot: a slot4, or a slot6's meta
	hi   uint64     // an IPv6 entry's block address
	lo   uint64
	kind itemKind
}

type itemKind uint8

const (
	kindEntry4 itemKind = iota
	kindEntry6
	kindRecord
)

// What items cost (checked by TestCostsMatchTheHeap). Every item takes a
// slot of ristretto's store map (its key, the item, ristretto's conflict
// key and expiry) and of its policy's cost map (see mapBytes). An entry
// also takes its first-level slot at the lowest load a table keeps
// (shrinkLoad: it halves below); a record, its own bytes (record.sized).
const (
	itemSlotBytes = 8 + 8 + 8 + int64(unsafe.Sizeof(item[struct{}]{})) + 24 + 1 + // store: key, storeItem, ctrl byte
		8 + 8 + 1 // policy: key, cost, ctrl byte
	itemCost      = itemSlotBytes * 20 / 11
	frontShare4   = 16 * 4                // 16-byte slots at load 1/4
	frontShare6   = 32*4 + homeHintBits/8 // 32-byte slots, and a bucket's bits of table6.homeAt
	entryCost4    = itemCost + frontShare4
	entryCost6    = itemCost + frontShare6
	counterBytes  = 4 // per ristretto counter: the count-min sketch and its doorkeeper, measured
	fixedFrontMin = minBuckets4*64 + minBuckets6*(128+homeHintBits/8) + shortMapBytes + shortHintBytes
)

// checkEvery is how often, per P, an offer recomputes the backlog: it may
// then exceed maxPending by checkEvery items per P.
const checkEvery = 64

// maxPending bounds the items handed to ristretto and not yet processed
// by its goroutine. Ristretto buffers up to 32k of them, each holding a
// record or a first-level slot that the budget does not count yet: past
// the bound an answer is returned but not cached (counted in
// DroppedSets).
const maxPending = 4096

// The tables a budget pays for before any item: ristretto's counters
// (~10x the items), the doorkeeper, the first level's smallest tables,
// the sampler's model (see HitRatioAt), and the slack (see rebudget) at
// its least.
func counters(maxCost int64) int64 { return max(maxCost/64, 1024) }
func doorKeys(maxCost int64) int64 { return max(maxCost/256, 1024) }
func minSlack(maxCost int64) int64 { return entryCost6 + min(maxCost/64, 256<<10) }
func fixedCost(maxCost int64) int64 {
	return counters(maxCost)*counterBytes + doorkeeperBytes(doorKeys(maxCost)) + fixedFrontMin +
		int64(maxSampled(maxCost))*sampledObjBytes + int64(traceLen(maxCost))*traceRefBytes +
		int64(samplerBuffers(runtime.NumCPU()))*refsPerBuffer*int64(unsafe.Sizeof(sampleRef{}))
}

func newStore[T any](maxCost int64, f *front[T], recs *records[T]) (*store[T], error) {
	s := &store[T]{front: f, recs: recs, budget: maxCost, offers: pcpu.New()}
	s.door = newDoorkeeper(doorKeys(maxCost))
	s.fixed = fixedCost(maxCost)
	s.slack.Store(minSlack(maxCost))
	if s.budget-s.fixed-s.slack.Load() < 64*entryCost6 {
		return nil, errors.New("geocache: MaxCost too small")
	}
	recs.onHeld = s.rebudget
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, item[T]]{
		NumCounters:        counters(maxCost),
		MaxCost:            s.budget - s.fixed - s.slack.Load(),
		BufferItems:        64,
		IgnoreInternalCost: true,
		KeyToHash:          func(k uint64) (uint64, uint64) { return k, 0 },
		Cost:               s.costOf,
		OnExit:             s.exit,
		OnEvict:            func(*ristretto.Item[item[T]]) { s.evicted.Add(1) },
		OnReject:           func(*ristretto.Item[item[T]]) { s.rejected.Add(1) },
		// A key is never overwritten: a second Set for a present key is
		// a hash collision, rejected.
		ShouldUpdate: func(cur, prev item[T]) bool { return false },
	})
	if err != nil {
		return nil, err
	}
	s.rc = rc
	return s, nil
}

// recordKey is ristretto's key for the record at data offset off, and the
// doorkeeper's: the xxhash of its 8 bytes (entry keys hash 5 or 9).
func recordKey(off uintptr) uint64 {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(off))
	return xxhash.Sum64(k[:])
}

// cacheEntry4 puts the IPv4 entry e, with its record r (nil: not found),
// in the first level and offers it to ristretto (key is e.key()); it
// reports whether e was cached already.
func (s *store[T]) cacheEntry4(e slot4, r *record[T], key uint64) (cached bool) {
	if s.front.insert4(e, r) == present {
		return true
	}
	if !s.offer(key, item[T]{slot: uint64(e), kind: kindEntry4}) {
		s.front.remove4(e)
	}
	return false
}

// cacheEntry6 is cacheEntry4 for the IPv6 entry of meta e and block hi:lo.
func (s *store[T]) cacheEntry6(e slot6, hi, lo uint64, r *record[T], key uint64) (cached bool) {
	if s.front.insert6(e, hi, lo, r) == present {
		return true
	}
	if !s.offer(key, item[T]{slot: uint64(e), hi: hi, lo: lo, kind: kindEntry6}) {
		s.front.remove6(e, hi, lo)
	}
	return false
}

// cacheRecord offers r, which records.get kept, to ristretto under key,
// unless it is offered already.
func (s *store[T]) cacheRecord(r *record[T], key uint64) {
	if !s.recs.offer(r) {
		return
	}
	if !s.offer(key, item[T]{rec: r, kind: kindRecord}) {
		s.recs.exited(r)
	}
}

// full reports whether the cache is within an eighth of its budget: from
// then on, admissions are contested, and the doorkeeper screens them. It
// reads a flag that the account's writers keep, one word that every miss
// reads and few write.
func (s *store[T]) full() bool { return s.isFull.Load() }

// account updates the flag of full after the account changed.
func (s *store[T]) account() {
	if f := s.cost() > s.budget-s.budget/8; f != s.isFull.Load() {
		s.isFull.Store(f)
	}
}

// cost is the accounted bytes: Stats.Cost.
func (s *store[T]) cost() int64 {
	return s.fixed + s.entries4.Load()*entryCost4 + s.entries6.Load()*entryCost6 +
		s.recBytes.Load() + s.recs.heldBytes.Load()
}

// offer hands an item to ristretto, unless the backlog is full; false if
// it was not handed over.
func (s *store[T]) offer(key uint64, it item[T]) bool {
	if s.offers.Inc(offersAttempts)&(checkEvery-1) == 0 {
		if full := s.pending() > maxPending; full != s.backlogged.Load() {
			s.backlogged.Store(full)
		}
	}
	if s.backlogged.Load() || !s.rc.Set(key, it, 0) {
		s.dropped.Add(1)
		return false
	}
	s.offers.Inc(offersHanded)
	return true
}

// pending returns the items handed to ristretto and not yet costed.
func (s *store[T]) pending() int64 { return s.offers.Sum(offersHanded) - s.costed.Load() }

// touch tells ristretto's admission policy that the item under key was
// used: hits never reach ristretto otherwise. It reads no mapping, so it
// needs no guard: after a reload it touches a closed ristretto, which
// ignores it.
func (s *store[T]) touch(key uint64) { s.rc.Get(key) }

// costOf runs in ristretto's goroutine for each item it is about to
// admit, which keeps the sizing of records off the lookup path.
func (s *store[T]) costOf(it item[T]) int64 {
	s.costed.Add(1)
	defer s.account()
	switch it.kind {
	case kindEntry4:
		s.entries4.Add(1)
		return entryCost4
	case kindEntry6:
		s.entries6.Add(1)
		return entryCost6
	}
	size := s.recs.admitted(it.rec)
	s.recBytes.Add(size + itemCost)
	if need := entryCost6 + size + itemCost; need > s.slack.Load() {
		s.slack.Store(need)
		s.rebudget()
	}
	return size + itemCost
}

// exit runs once for every item that was offered and is now gone:
// rejected, evicted, or cleared on close.
func (s *store[T]) exit(it item[T]) {
	defer s.account()
	switch it.kind {
	case kindEntry4:
		s.entries4.Add(-1)
		s.front.remove4(slot4(it.slot))
	case kindEntry6:
		s.entries6.Add(-1)
		s.front.remove6(slot6(it.slot), it.hi, it.lo)
	case kindRecord:
		s.recBytes.Add(-it.rec.size.Load() - itemCost)
		s.recs.exited(it.rec)
	}
}

// rebudget gives ristretto the budget less the fixed tables, the records
// that only first-level slots hold, and a slack: an incoming item is
// accounted from its cost function, before ristretto evicts to make room
// for it, so the account briefly holds one item more than ristretto does.
// The slack (an entry and the largest record seen, at least
// min(MaxCost/64, 256 KiB)) keeps even that moment within the budget.
func (s *store[T]) rebudget() {
	s.account()
	if s.rc != nil {
		s.rc.UpdateMaxCost(max(s.budget-s.fixed-s.recs.heldBytes.Load()-s.slack.Load(), 64*entryCost6))
	}
}

func (s *store[T]) stats(st *Stats) {
	st.Entries = s.entries4.Load() + s.entries6.Load()
	st.Records = s.recs.alive.Load()
	st.Cost = s.cost()
	st.MaxCost = s.budget
	st.Evictions = s.evicted.Load()
	st.Rejections = s.rejected.Load()
	st.DroppedSets = s.dropped.Load()
}

func (s *store[T]) close() { s.rc.Close() }
