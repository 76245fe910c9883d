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
	size int64 // accounted bytes, set once by sized

	// Guarded by records.mu.
	refs   int32 // first-level slots holding it
	item   bool  // offered to ristretto, not exited yet
	orphan bool  // held by slots, not by ristretto: counted in records.heldBytes

	// A record being decoded is in records.byOff first, so that
	// concurrent misses that need it wait for it instead of decoding it
	// again.
	ready sync.WaitGroup
	err   error // of the decode; set before ready is done
}

// value returns &r.v without reading r: v is r's first field. The
// compiler checks r for nil by loading from it before it takes &r.v, and
// that load is a cache miss a hit would pay for a record it does not read.
func (r *record[T]) value() *T { return (*T)(unsafe.Pointer(r)) }

// recordOverhead is what a record costs beyond its value's own bytes: its
// header, its byOff entry, and ristretto's store and policy map slots for
// its item (measured by TestCostsMatchTheHeap).
const recordOverhead = 256

// sized sets r.size if it is not set: the value's bytes and the overhead.
func (r *record[T]) sized() int64 {
	if r.size == 0 {
		r.size = sizeof.Of(&r.v) + recordOverhead
	}
	return r.size
}

// records is the table of the records that are alive or being decoded,
// by data offset.
type records[T any] struct {
	mu    sync.Mutex
	byOff map[uintptr]*record[T]

	alive     atomic.Int64 // records in byOff, decoded
	heldBytes atomic.Int64 // bytes of the records that slots hold and ristretto does not
	onHeld    func()       // called when heldBytes changed, outside mu
}

// get returns the record at off: alive (cached, or held by a slot), being
// decoded by another miss (then it waits for it), or decoded now from res.
// With keep, a record decoded here stays in the table for the caller to
// offer to ristretto (offered) or let go (settle); otherwise it is the
// caller's alone. fresh reports whether this call decoded.
func (rs *records[T]) get(off uintptr, res maxminddb.Result, keep bool) (r *record[T], fresh bool, err error) {
	rs.mu.Lock()
	if r = rs.byOff[off]; r != nil {
		rs.mu.Unlock()
		r.ready.Wait()
		return r, false, r.err
	}
	r = &record[T]{off: off}
	r.ready.Add(1)
	if rs.byOff == nil {
		rs.byOff = map[uintptr]*record[T]{}
	}
	rs.byOff[off] = r
	rs.mu.Unlock()
	defer func() {
		// A fault unwinding to the caller's guard leaves an error too.
		if !fresh && err == nil {
			err = ErrFault
		}
		r.err = err
		if err != nil || !keep {
			rs.mu.Lock()
			rs.forget(r)
			rs.mu.Unlock()
		} else {
			rs.alive.Add(1)
		}
		r.ready.Done()
	}()
	err = res.Decode(&r.v)
	return r, err == nil, err
}

// forget removes r from byOff if it is the record there. Caller holds mu.
func (rs *records[T]) forget(r *record[T]) {
	if rs.byOff[r.off] == r {
		delete(rs.byOff, r.off)
	}
}

// dead forgets r once nothing holds it; it reports whether it did.
// Caller holds mu.
func (rs *records[T]) dead(r *record[T]) bool {
	if r.refs > 0 || r.item {
		return false
	}
	if rs.byOff[r.off] == r {
		delete(rs.byOff, r.off)
		rs.alive.Add(-1)
	}
	return true
}

// settle lets a record that get kept go, unless it was offered or a slot
// holds it.
func (rs *records[T]) settle(r *record[T]) {
	rs.mu.Lock()
	rs.dead(r)
	rs.mu.Unlock()
}

// offer marks r as offered to ristretto; false if it was already.
func (rs *records[T]) offer(r *record[T]) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r.item {
		return false
	}
	r.item = true
	return true
}

// retain and release count the slots that hold r (the front calls them,
// under its lock). A record that only slots hold is charged as held.
func (rs *records[T]) retain(r *record[T]) {
	rs.mu.Lock()
	r.refs++
	changed := r.refs == 1 && !r.item && rs.hold(r, true)
	rs.mu.Unlock()
	if changed {
		rs.onHeld()
	}
}

func (rs *records[T]) release(r *record[T]) {
	rs.mu.Lock()
	r.refs--
	changed := r.refs == 0 && rs.hold(r, false)
	rs.dead(r)
	rs.mu.Unlock()
	if changed {
		rs.onHeld()
	}
}

// hold moves r in or out of heldBytes; it reports whether it did. Caller
// holds mu.
func (rs *records[T]) hold(r *record[T], held bool) bool {
	if r.orphan == held {
		return false
	}
	r.orphan = held
	if held {
		rs.heldBytes.Add(r.sized())
	} else {
		rs.heldBytes.Add(-r.size)
	}
	return true
}

// admitted runs in ristretto's cost function for r's item: r's bytes are
// now the item's cost, not held bytes.
func (rs *records[T]) admitted(r *record[T]) int64 {
	size := r.sized()
	rs.mu.Lock()
	changed := rs.hold(r, false)
	rs.mu.Unlock()
	if changed {
		rs.onHeld()
	}
	return size
}

// exited runs when r's item is gone (rejected, evicted, or never handed
// over): r lives on as held if slots hold it.
func (rs *records[T]) exited(r *record[T]) {
	rs.mu.Lock()
	r.item = false
	changed := r.refs > 0 && rs.hold(r, true)
	rs.dead(r)
	rs.mu.Unlock()
	if changed {
		rs.onHeld()
	}
}
