package geocache

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocache/geocache/internal/sizeof"
)

// Records are decoded once per data offset and shared by every network
// that points at them (GeoLite2-City: 3.5M networks, 540k records). They
// are the expensive part of an answer: a decode costs a few microseconds,
// a tree walk a few hundred nanoseconds. So they are cached on their own,
// as ristretto items beside the network entries and within the same
// budget: a network seen for the first time whose record is cached costs a
// tree walk, and the policy keeps records by how often any network asks
// for them.
//
// A record stays alive while ristretto holds it or a first-level slot
// does (a slot holds its record's pointer, so that a hit needs no second
// lookup), and is charged to the budget once while it is alive: as its
// item's cost while ristretto holds it, else as a held record, which the
// store subtracts from ristretto's budget.

// record is a decoded record and what the cache knows of it.
type record[T any] struct {
	v    T // first: see value
	off  uintptr
	size atomic.Int64 // accounted bytes, set once by sized

	// Guarded by its records shard's mu.
	refs   int32 // first-level slots holding it
	item   bool  // offered to ristretto, not exited yet
	orphan bool  // held by slots, not by ristretto: counted in records.heldBytes

	// A record being decoded is in records.inflight, so that concurrent
	// misses that need it wait for it instead of decoding it again.
	ready sync.WaitGroup
	err   error // of the decode; set before ready is done
}

// value returns &r.v without reading r: v is r's first field. The
// compiler checks r for nil by loading from it before it takes &r.v, and
// that load is a cache miss a hit would pay for a record it does not read.
func (r *record[T]) value() *T { return (*T)(unsafe.Pointer(r)) }

// sized sets r.size if it is not set: r's bytes, its strings counted in
// full, and its slot in records.byOff. The reader interns the strings it
// decodes, so records share most of theirs (GeoLite2-City: ~400 bytes a
// record, all but ~11 shared), and a count of each string once would
// charge a record a quarter less; but it needs a map of every string
// held, updated on every admission and eviction (4 us of map work a
// record, and a lock that misses waited for), and it moved the hit ratio
// by nothing measurable.
func (r *record[T]) sized() int64 {
	if n := r.size.Load(); n != 0 {
		return n
	}
	r.size.CompareAndSwap(0, sizeof.Of(&r.v)+int64(unsafe.Sizeof(*r)-unsafe.Sizeof(r.v))+mapBytes(byOffSlotBytes))
	return r.size.Load()
}

// byOffSlotBytes is what a record takes in records.byOff: its key, its
// pointer and a control byte.
const byOffSlotBytes = 8 + 8 + 1

// records is the table of the records that are alive, and of those being
// decoded, by data offset, in shards so that concurrent misses seldom
// share a lock. The decoded ones are apart so that a miss that finds its
// record does not read the record (a cache miss) to learn that it is
// decoded.
type records[T any] struct {
	shards [recordShards]recordShard[T]

	alive atomic.Int64 // records in byOff, decoded

	heldBytes atomic.Int64 // bytes of the records that slots hold and ristretto does not
	onHeld    func()       // called when heldBytes changed, outside the shards' locks
}

const recordShards = 32

type recordShard[T any] struct {
	mu       sync.Mutex
	byOff    map[uintptr]*record[T]
	inflight map[uintptr]*record[T]
	_        [64]byte // shards' locks on lines of their own
}

func (rs *records[T]) shard(off uintptr) *recordShard[T] {
	return &rs.shards[(off*fibonacci)>>59&(recordShards-1)]
}

// get returns the record at off: alive (cached, or held by a slot), being
// decoded by another miss (then it waits for it), or decoded now from res.
// With keep, a record decoded here joins the table for the caller to
// offer to ristretto (cacheRecord) or let go (settle); otherwise it is the
// caller's alone. fresh reports whether this call decoded.
func (rs *records[T]) get(off uintptr, res maxminddb.Result, keep bool) (r *record[T], fresh bool, err error) {
	sh := rs.shard(off)
	sh.mu.Lock()
	if r = sh.byOff[off]; r != nil {
		sh.mu.Unlock()
		return r, false, nil
	}
	if r = sh.inflight[off]; r != nil {
		sh.mu.Unlock()
		r.ready.Wait()
		return r, false, r.err
	}
	r = &record[T]{off: off}
	r.ready.Add(1)
	if sh.inflight == nil {
		sh.inflight, sh.byOff = map[uintptr]*record[T]{}, map[uintptr]*record[T]{}
	}
	sh.inflight[off] = r
	sh.mu.Unlock()
	defer func() {
		// A fault unwinding to the caller's guard leaves an error too.
		if !fresh && err == nil {
			err = ErrFault
		}
		r.err = err
		sh.mu.Lock()
		delete(sh.inflight, off)
		if err == nil && keep {
			sh.byOff[off] = r
			rs.alive.Add(1)
		}
		sh.mu.Unlock()
		r.ready.Done()
	}()
	err = res.Decode(&r.v)
	return r, err == nil, err
}

// dead forgets r once nothing holds it. Caller holds r's shard's mu.
func (rs *records[T]) dead(r *record[T]) {
	if r.refs > 0 || r.item {
		return
	}
	if sh := rs.shard(r.off); sh.byOff[r.off] == r {
		delete(sh.byOff, r.off)
		rs.alive.Add(-1)
	}
}

// change is what retain and release leave to do after the caller (the
// first level, under its lock) lets its lock go: tell the store that the
// held bytes changed, which takes ristretto's policy lock.
type change bool

// finish does what a change left to do.
func (rs *records[T]) finish(c change) {
	if c {
		rs.onHeld()
	}
}

// settle lets a record that get kept go, unless it was offered or a slot
// holds it.
func (rs *records[T]) settle(r *record[T]) {
	mu := &rs.shard(r.off).mu
	mu.Lock()
	rs.dead(r)
	mu.Unlock()
}

// offer marks r as offered to ristretto; false if it was already.
func (rs *records[T]) offer(r *record[T]) bool {
	mu := &rs.shard(r.off).mu
	mu.Lock()
	defer mu.Unlock()
	if r.item {
		return false
	}
	r.item = true
	return true
}

// retain and release count the slots that hold r (the first level calls
// them, under its lock). A record that only slots hold is charged as held.
// The caller passes what they return to finish, once it holds no lock.
func (rs *records[T]) retain(r *record[T]) change {
	mu := &rs.shard(r.off).mu
	mu.Lock()
	defer mu.Unlock()
	r.refs++
	return change(r.refs == 1 && !r.item && rs.hold(r, true))
}

func (rs *records[T]) release(r *record[T]) change {
	mu := &rs.shard(r.off).mu
	mu.Lock()
	defer mu.Unlock()
	r.refs--
	c := change(r.refs == 0 && rs.hold(r, false))
	rs.dead(r)
	return c
}

// hold moves r in or out of heldBytes; it reports whether it did. Caller
// holds r's shard's mu.
func (rs *records[T]) hold(r *record[T], held bool) bool {
	if r.orphan == held {
		return false
	}
	r.orphan = held
	if held {
		rs.heldBytes.Add(r.sized())
	} else {
		rs.heldBytes.Add(-r.size.Load())
	}
	return true
}

// admitted runs in ristretto's cost function for r's item: r's bytes are
// now the item's cost, not held bytes. It returns them.
func (rs *records[T]) admitted(r *record[T]) int64 {
	size := r.sized()
	mu := &rs.shard(r.off).mu
	mu.Lock()
	held := rs.hold(r, false)
	mu.Unlock()
	rs.finish(change(held))
	return size
}

// exited runs when r's item is gone (rejected, evicted, or never handed
// over): r lives on as held if slots hold it.
func (rs *records[T]) exited(r *record[T]) {
	mu := &rs.shard(r.off).mu
	mu.Lock()
	r.item = false
	held := r.refs > 0 && rs.hold(r, true)
	rs.dead(r)
	mu.Unlock()
	rs.finish(change(held))
}

// mapBytes is what a Go map holds for slots of slotBytes in all: a map
// doubles when 7/8 full, so its load runs from 7/16 to 7/8, and measured
// over growing caches it held slotBytes at a load of 0.55.
func mapBytes(slotBytes int64) int64 { return slotBytes * 20 / 11 }
