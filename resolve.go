package geocache

import (
	"net/netip"
	"unsafe"
)

// resolved says what resolve did beyond answering, and what the sampler
// needs to know of the lookup.
type resolved struct {
	cached  bool // the network was cached already: another lookup raced this one
	decoded bool // the record was decoded, not found cached

	key    uint64 // the entry's ristretto key
	eh     uint8  // the sampling hash of its block
	sample uint8  // the entry's slot's: the lower of eh and its record's
	v6     bool
	rec    unsafe.Pointer // the record, a *record[T]; nil if not found
}

// resolve answers a from the database, and caches what the traffic makes
// worth it. While the cache has room, that is every answer. Once it is
// full, a network's entry is offered on its second sighting (the
// doorkeeper remembers the first), and a record with its network's entry,
// or on the record's own second sighting: most networks of a long-tailed
// stream are asked once, and a flood of never-repeating addresses then
// costs the reader's work and little more. A new network whose record is
// cached costs a tree walk and no decode. With always (hot sets, known to
// be hot) everything is offered.
func (g *generation[T]) resolve(a netip.Addr, always bool) (res Result[T], how resolved, err error) {
	if g.ipv4 && a.Is6() {
		return res, how, ErrIPv4Only
	}
	defer setPanicOnFault(setPanicOnFault(true))
	defer guardFault(g.m.path, &err)
	lr := g.reader.Lookup(a)
	if err := lr.Err(); err != nil {
		return res, how, err
	}
	res.Prefix = lr.Prefix()
	s := g.store
	// While the cache has room, admissions are not contested: the
	// doorkeeper and the frequency counts have nothing to decide.
	contested := !always && s.full()
	report := contested && s.sampled()

	// The entry, decided before the record: its record is kept if it is.
	var e4 slot4
	var e6 slot6
	var hi, lo, key uint64
	bits := res.Prefix.Bits()
	if a.Is4() {
		v6Root := !res.Prefix.Addr().Is4()
		if v6Root { // the answer ::/N holds for all of IPv4
			bits = 0
		}
		e4 = makeSlot4(addr4(a), bits, v6Root)
		key = e4.key()
		how.eh = sampleHash(blockHash4(e4.block()))
	} else {
		hi, lo = addr6(a)
		e6 = makeSlot6(hi, bits, bits > strideV6 && g.front.isSplit(hi))
		kb := e6.keyBits(hi)
		hi, lo = hi&mask64(kb), lo&mask64(kb-64)
		how.eh, how.v6 = sampleHash(blockHash6(hi)), true
		key = entryKey6(hi, lo, kb)
	}
	how.key, how.sample = key, how.eh
	entry := !contested || s.door.seen(key)

	var r *record[T]
	if lr.Found() {
		off := lr.Offset()
		rk := recordKey(off)
		keep := entry || s.door.seen(rk)
		if r, how.decoded, err = g.recs.get(off, lr, keep); err != nil {
			return res, how, err
		}
		res.Record, res.Found = r.value(), true
		how.rec, how.sample = unsafe.Pointer(r), min(how.eh, sampleHash(rk))
		if keep {
			defer g.recs.settle(r)
		}
		switch {
		case how.decoded && keep:
			s.cacheRecord(r, rk)
		case !how.decoded && report:
			s.touch(rk)
		}
	}
	if entry {
		e4, e6 = e4.withSample(how.sample), e6.withSample(how.sample)
		if report {
			s.touch(key)
		}
		if a.Is4() {
			how.cached = s.cacheEntry4(e4, r, key)
		} else {
			how.cached = s.cacheEntry6(e6, hi, lo, r, key)
		}
	}
	return res, how, nil
}
