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
	pooled bool  // its strings are counted in records.strs

	// A record being decoded is in records.inflight, so that concurrent
	// misses that need it wait for it instead of decoding it again.
	ready sync.WaitGroup
	err   error // of the decode; set before ready is done
}

// value returns &r.v without reading r: v is r's first field. The
// compiler checks r for nil by loading from it before it takes &r.v, and
// that load is a cache miss a hit would pay for a record it does not read.
func (r *record[T]) value() *T { return (*T)(unsafe.Pointer(r)) }

// sized sets r.size if it is not set: r's bytes but its strings' (see
// strPool). The map slots that hold r are charged apart (see mapSize).
func (r *record[T]) sized() int64 {
	if r.size == 0 {
		r.size = sizeof.Split(&r.v, func(string) {}) + int64(unsafe.Sizeof(*r)-unsafe.Sizeof(r.v))
	}
	return r.size
}

// strPool counts the strings that charged records hold, each string once.
// The reader interns the strings it decodes: GeoLite2-City's records hold
// ~400 bytes of strings each, and share all but ~11 bytes of them with
// other records, so counting them per record would charge a record about a
// third more than it holds.
type strPool struct {
	mu    sync.Mutex
	refs  map[*byte]int32
	bytes atomic.Int64 // the strings' bytes and refs' slots
	slots mapSize
}

// pool counts the strings of r (delta 1) or lets them go (delta -1), and
// returns the bytes the pool grew by.
func pool[T any](p *strPool, r *record[T], delta int32) (grew int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refs == nil {
		p.refs = map[*byte]int32{}
	}
	sizeof.Split(&r.v, func(s string) {
		k := unsafe.StringData(s)
		switch n := p.refs[k] + delta; {
		case n == 0:
			delete(p.refs, k)
			p.slots.add(-1)
			p.bytes.Add(-int64(len(s)) - mapBytes(p.slots.slotBytes))
		case n == 1 && delta > 0:
			p.refs[k] = n
			p.slots.add(1)
			grew += int64(len(s)) + mapBytes(p.slots.slotBytes)
		default:
			p.refs[k] = n
		}
	})
	p.bytes.Add(grew)
	return grew
}

// records is the table of the records that are alive, and of those being
// decoded, by data offset. The decoded ones are apart so that a miss that
// finds its record does not read the record (a cache miss) to learn that
// it is decoded.
type records[T any] struct {
	mu       sync.Mutex
	byOff    map[uintptr]*record[T]
	inflight map[uintptr]*record[T]

	alive     mapSize      // records in byOff, decoded; its bytes are byOff's
	heldBytes atomic.Int64 // bytes of the records that slots hold and ristretto does not
	strs      strPool      // the strings of the records that are charged
	onHeld    func()       // called when heldBytes or strs changed, outside mu
}

// get returns the record at off: alive (cached, or held by a slot), being
// decoded by another miss (then it waits for it), or decoded now from res.
// With keep, a record decoded here joins the table for the caller to
// offer to ristretto (cacheRecord) or let go (settle); otherwise it is the
// caller's alone. fresh reports whether this call decoded.
func (rs *records[T]) get(off uintptr, res maxminddb.Result, keep bool) (r *record[T], fresh bool, err error) {
	rs.mu.Lock()
	if r = rs.byOff[off]; r != nil {
		rs.mu.Unlock()
		return r, false, nil
	}
	if r = rs.inflight[off]; r != nil {
		rs.mu.Unlock()
		r.ready.Wait()
		return r, false, r.err
	}
	r = &record[T]{off: off}
	r.ready.Add(1)
	if rs.inflight == nil {
		rs.inflight, rs.byOff = map[uintptr]*record[T]{}, map[uintptr]*record[T]{}
	}
	rs.inflight[off] = r
	rs.mu.Unlock()
	defer func() {
		// A fault unwinding to the caller's guard leaves an error too.
		if !fresh && err == nil {
			err = ErrFault
		}
		r.err = err
		rs.mu.Lock()
		delete(rs.inflight, off)
		if err == nil && keep {
			rs.byOff[off] = r
			rs.alive.add(1)
		}
		rs.mu.Unlock()
		r.ready.Done()
	}()
	err = res.Decode(&r.v)
	return r, err == nil, err
}

// dead forgets r once nothing holds it; it reports whether it did.
// Caller holds mu.
func (rs *records[T]) dead(r *record[T]) bool {
	if r.refs > 0 || r.item {
		return false
	}
	if rs.byOff[r.off] == r {
		delete(rs.byOff, r.off)
		rs.alive.add(-1)
	}
	if r.pooled {
		r.pooled = false
		pool(&rs.strs, r, -1)
	}
	return true
}

// charged counts r's strings, the first time r is charged (admitted, or
// held), and returns the bytes the string pool grew by. Caller holds mu.
func (rs *records[T]) charged(r *record[T]) int64 {
	if r.pooled {
		return 0
	}
	r.pooled = true
	return pool(&rs.strs, r, 1)
}

// settle lets a record that get kept go, unless it was offered or a slot
// holds it.
func (rs *records[T]) settle(r *record[T]) {
	rs.mu.Lock()
	pooled := r.pooled
	gone := rs.dead(r) && pooled
	rs.mu.Unlock()
	if gone {
		rs.onHeld()
	}
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
	pooled := r.pooled
	changed := r.refs == 0 && rs.hold(r, false)
	changed = rs.dead(r) && pooled || changed
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
		rs.charged(r)
		rs.heldBytes.Add(r.sized())
	} else {
		rs.heldBytes.Add(-r.size)
	}
	return true
}

// admitted runs in ristretto's cost function for r's item: r's bytes are
// now the item's cost, not held bytes. It returns them, and what r's
// strings added to the pool.
func (rs *records[T]) admitted(r *record[T]) (size, strs int64) {
	size = r.sized()
	rs.mu.Lock()
	strs = rs.charged(r)
	changed := rs.hold(r, false) || strs != 0
	rs.mu.Unlock()
	if changed {
		rs.onHeld()
	}
	return size, strs
}

// exited runs when r's item is gone (rejected, evicted, or never handed
// over): r lives on as held if slots hold it.
func (rs *records[T]) exited(r *record[T]) {
	rs.mu.Lock()
	r.item = false
	pooled := r.pooled
	changed := r.refs > 0 && rs.hold(r, true)
	changed = rs.dead(r) && pooled || changed
	rs.mu.Unlock()
	if changed {
		rs.onHeld()
	}
}

// mapSize follows the number of entries of a Go map and the bytes the map
// holds for them (see mapBytes). A map never shrinks, so one that was
// larger holds more: TestCostsMatchTheHeap bounds what that leaves out.
type mapSize struct {
	n         atomic.Int64
	slotBytes int64
}

func (m *mapSize) add(d int64)  { m.n.Add(d) }
func (m *mapSize) bytes() int64 { return mapBytes(m.n.Load() * m.slotBytes) }
func (m *mapSize) Load() int64  { return m.n.Load() }

// mapBytes is what a Go map holds for slots of slotBytes in all: a map
// doubles when 7/8 full, so its load runs from 7/16 to 7/8, and measured
// over growing caches it held slotBytes at a load of 0.55.
func mapBytes(slotBytes int64) int64 { return slotBytes * 20 / 11 }
