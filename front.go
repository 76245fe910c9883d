package geocache

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"unsafe"
)

// front is the first level of the cache: a lock-free, 2-way set-associative
// table that every lookup reads before ristretto. A ristretto Get costs
// ~180 ns; a front probe reads one 64-byte line. Each slot holds a copy of
// an entry inline (network, marker length, record pointer) so a hit follows
// no pointer, under a seqlock so it takes no lock and writes nothing.
// Ristretto stays the owner of what is cached: its exit callback removes
// evicted entries from here, and a front miss falls back to it.
type front[T any] struct {
	sets []set[T]
	mask uint64
}

// set is one cache line: two ways. Way 0 is the most recently put.
type set[T any] [2]slot[T]

// slot is a seqlocked copy of an entry: 32 bytes, so a set fills one line.
// Every field is an atomic so that racing readers and writers are well
// defined (and the race detector agrees); on amd64 and arm64 these are
// plain loads.
type slot[T any] struct {
	seq  atomic.Uint32 // odd while a writer is inside
	meta atomic.Uint32 // see the meta* constants; 0 is an empty slot
	hi   atomic.Uint64 // network address, IPv6: high 64 bits
	lo   atomic.Uint64 // IPv6: low 64 bits; IPv4: the address
	rec  atomic.Pointer[T]
}

const slotSize = int64(unsafe.Sizeof(slot[int]{}))

// meta layout: bits 0-7 the network length (cover); 8 valid; 9 IPv6;
// 10 found; 11 marker; 12 an IPv4 address answered with the IPv6 prefix
// ::/N (see coverOf); bits 16-23 the marker's length, or that N.
const (
	metaValid  = 1 << 8
	metaV6     = 1 << 9
	metaFound  = 1 << 10
	metaMarker = 1 << 11
	metaV6Root = 1 << 12
)

func (f *front[T]) init(slots int) {
	n := max(slots/2, 1)
	f.sets = make([]set[T], n)
	f.mask = uint64(n - 1)
}

// addrWords returns a's address as the two words slots store.
func addrWords(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		b := a.As4()
		return 0, uint64(binary.BigEndian.Uint32(b[:]))
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// contains reports whether the network (hi, lo)/bits of the family in meta
// holds the address (ahi, alo).
func contains(meta uint32, hi, lo, ahi, alo uint64, v6 bool) bool {
	bits := int(meta & 0xff)
	if v6 {
		return meta&metaV6 != 0 && ahi&mask64(bits) == hi && alo&mask64(bits-64) == lo
	}
	return meta&metaV6 == 0 && alo&uint64(mask32(bits)) == lo
}

// get returns the answer in the set of key k for a: a network result, or
// (sub > 0) a marker telling the length to probe next.
func (f *front[T]) get(k uint64, a netip.Addr) (res Result[T], sub uint32, ok bool) {
	s := &f.sets[k&f.mask]
	ahi, alo := addrWords(a)
	v6 := !a.Is4()
	for i := range s {
		sl := &s[i]
		q := sl.seq.Load()
		meta, hi, lo, rec := sl.meta.Load(), sl.hi.Load(), sl.lo.Load(), sl.rec.Load()
		if q&1 != 0 || sl.seq.Load() != q || meta == 0 || !contains(meta, hi, lo, ahi, alo, v6) {
			continue
		}
		if meta&metaMarker != 0 {
			return res, meta >> 16 & 0xff, true
		}
		return slotResult(meta, hi, lo, rec), 0, true
	}
	return res, 0, false
}

// slotResult rebuilds the Result a slot holds.
func slotResult[T any](meta uint32, hi, lo uint64, rec *T) Result[T] {
	var p netip.Prefix
	switch {
	case meta&metaV6Root != 0:
		p = netip.PrefixFrom(netip.IPv6Unspecified(), int(meta>>16&0xff))
	case meta&metaV6 != 0:
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], hi)
		binary.BigEndian.PutUint64(b[8:], lo)
		p = netip.PrefixFrom(netip.AddrFrom16(b), int(meta&0xff))
	default:
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(lo))
		p = netip.PrefixFrom(netip.AddrFrom4(b), int(meta&0xff))
	}
	return Result[T]{Prefix: p, Record: rec, Found: meta&metaFound != 0}
}

// image returns the slot contents that stand for e.
func image[T any](e *entry[T]) (meta uint32, hi, lo uint64, rec *T) {
	hi, lo = addrWords(e.cover.Addr())
	meta = uint32(e.cover.Bits()) | metaValid
	if !e.cover.Addr().Is4() {
		meta |= metaV6
	}
	if sub := e.sub.Load(); sub != 0 {
		meta |= metaMarker | sub<<16
	} else if e.res.Found {
		meta |= metaFound
	}
	if p := e.res.Prefix; p.IsValid() && e.cover.Addr().Is4() && !p.Addr().Is4() {
		meta |= metaV6Root | uint32(p.Bits())<<16
	}
	return meta, hi, lo, e.res.Record
}

// write stores an image in sl unless another writer is inside (then the
// put is dropped: the front table is only a cache of ristretto).
func (sl *slot[T]) write(meta uint32, hi, lo uint64, rec *T) bool {
	q := sl.seq.Load()
	if q&1 != 0 || !sl.seq.CompareAndSwap(q, q+1) {
		return false
	}
	sl.meta.Store(meta)
	sl.hi.Store(hi)
	sl.lo.Store(lo)
	sl.rec.Store(rec)
	sl.seq.Store(q + 2)
	return true
}

// read returns a consistent copy of sl, or ok false if a writer is inside.
func (sl *slot[T]) read() (meta uint32, hi, lo uint64, rec *T, ok bool) {
	q := sl.seq.Load()
	meta, hi, lo, rec = sl.meta.Load(), sl.hi.Load(), sl.lo.Load(), sl.rec.Load()
	return meta, hi, lo, rec, q&1 == 0 && sl.seq.Load() == q
}

// put stores e in way 0 of its set; what way 0 held moves to way 1, unless
// it is the same network (a refreshed marker, or a racing duplicate fill).
func (f *front[T]) put(e *entry[T]) {
	s := &f.sets[e.key&f.mask]
	meta, hi, lo, rec := image(e)
	if m0, h0, l0, r0, ok := s[0].read(); ok && m0 != 0 && (h0 != hi || l0 != lo || m0&0x2ff != meta&0x2ff) {
		s[1].write(m0, h0, l0, r0)
	}
	s[0].write(meta, hi, lo, rec)
}

// drop empties the slots that hold e's image.
func (f *front[T]) drop(e *entry[T]) {
	s := &f.sets[e.key&f.mask]
	meta, hi, lo, rec := image(e)
	for i := range s {
		if m, h, l, r, ok := s[i].read(); ok && m == meta && h == hi && l == lo && r == rec {
			s[i].write(0, 0, 0, nil)
		}
	}
}
