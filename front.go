package geocache

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"unsafe"
)

// front is the first level of the cache, read by every lookup before
// ristretto (whose Get costs ~180 ns). It is a lock-free, set-associative
// table of inline copies of network entries, one 64-byte cache line per
// set: 4 IPv4 slots of 16 bytes, or 2 IPv6 slots of 32. All the networks
// cached for one first-level block (/24, /48) share the block's set, so a
// hit reads one line, even in blocks the database splits: the set is
// scanned for a network that holds the address, which by the partition
// property is the answer. A hit follows no pointer, takes no lock and
// writes nothing.
//
// Ristretto stays the owner of what is cached: its exit callback removes
// evicted entries from here, a front miss falls back to it, and split-block
// markers live only there.
//
// Each slot is guarded by its meta word, which carries a version: a writer
// swaps meta to metaLocked, writes the other words, then stores the new
// meta with the version bumped; a reader reads meta, the words, then meta
// again, and trusts the words only if meta did not change. Every word is
// an atomic, so racing readers and writers are well defined (and the race
// detector agrees); on amd64 and arm64 these are plain loads.
type front[T any] struct {
	v4    []set4[T]
	v6    []set6[T]
	mask4 uint64
	mask6 uint64
}

type set4[T any] [4]slot4[T]
type set6[T any] [2]slot6[T]

// A slot holds one network entry: meta (below), the address of the block
// the entry is keyed by (masked to the network's length, it is the
// network), and the shared record.
type slot4[T any] struct {
	meta atomic.Uint32
	addr atomic.Uint32
	rec  atomic.Pointer[T]
}

type slot6[T any] struct {
	meta   atomic.Uint32
	_      uint32
	hi, lo atomic.Uint64
	rec    atomic.Pointer[T]
}

// meta layout, both families: bits 0-7 the network length; 8 valid;
// 9 found; 10 (IPv4) answered with the IPv6 prefix ::/N, N in bits 11-17
// (see coverOf); bits 18-25 the length of the block whose hash is the
// entry's ristretto key; bits 26-31 a version that every write bumps.
const (
	metaValid   = 1 << 8
	metaFound   = 1 << 9
	metaV6Root  = 1 << 10
	metaLocked  = 1 // a writer is inside (never valid)
	versionOne  = 1 << 26
	versionMask = ^uint32(versionOne - 1)
)

// init sizes the table for about slots entries and returns its bytes.
func (f *front[T]) init(slots int) int64 {
	n4, n6 := max(slots/4, 1), max(slots/8, 1)
	f.v4, f.mask4 = make([]set4[T], n4), uint64(n4-1)
	f.v6, f.mask6 = make([]set6[T], n6), uint64(n6-1)
	return int64(n4)*int64(unsafe.Sizeof(set4[T]{})) + int64(n6)*int64(unsafe.Sizeof(set6[T]{}))
}

// addrWords returns a's address as two words: IPv4 in lo.
func addrWords(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		b := a.As4()
		return 0, uint64(binary.BigEndian.Uint32(b[:]))
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// get returns the cached answer for a from the set of first-level key k,
// and the length of the block its ristretto key hashes.
func (f *front[T]) get(k uint64, a netip.Addr) (res Result[T], kbits uint32, ok bool) {
	if a.Is4() {
		b := a.As4()
		return f.get4(k, binary.BigEndian.Uint32(b[:]))
	}
	ahi, alo := addrWords(a)
	s := &f.v6[k&f.mask6]
	for i := range s {
		sl := &s[i]
		m := sl.meta.Load()
		hi, lo := sl.hi.Load(), sl.lo.Load()
		bits := int(m & 0xff)
		mhi, mlo := mask64(bits), mask64(bits-64)
		if m&metaValid == 0 || (ahi^hi)&mhi != 0 || (alo^lo)&mlo != 0 {
			continue
		}
		rec := sl.rec.Load()
		if sl.meta.Load() != m {
			break
		}
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], hi&mhi)
		binary.BigEndian.PutUint64(b[8:], lo&mlo)
		p := netip.PrefixFrom(netip.AddrFrom16(b), bits)
		return Result[T]{Prefix: p, Record: rec, Found: m&metaFound != 0}, m >> 18 & 0xff, true
	}
	return res, 0, false
}

// get4 is get for the IPv4 address v.
func (f *front[T]) get4(k uint64, v uint32) (res Result[T], kbits uint32, ok bool) {
	s := &f.v4[k&f.mask4]
	for i := range s {
		sl := &s[i]
		m := sl.meta.Load()
		addr := sl.addr.Load()
		mask := mask32(int(m & 0xff))
		if m&metaValid == 0 || (v^addr)&mask != 0 {
			continue
		}
		addr &= mask
		rec := sl.rec.Load()
		if sl.meta.Load() != m {
			break // a writer got in: let the slow path answer
		}
		var p netip.Prefix
		if m&metaV6Root != 0 {
			p = netip.PrefixFrom(netip.IPv6Unspecified(), int(m>>11&0x7f))
		} else {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(addr >> 24), byte(addr >> 16), byte(addr >> 8), byte(addr)}), int(m&0xff))
		}
		return Result[T]{Prefix: p, Record: rec, Found: m&metaFound != 0}, m >> 18 & 0xff, true
	}
	return res, 0, false
}

// image returns the meta (without version) and address words that stand
// for network entry e. The words are those of the block the entry is keyed
// by, not of its network: a slot then says which block was hot, so that
// the hot set (each) can be looked up again block by block, and the
// network's address is the block's masked to the network's length.
func image[T any](e *entry[T]) (meta uint32, hi, lo uint64) {
	hi, lo = addrWords(e.at)
	meta = uint32(e.cover.Bits()) | metaValid | uint32(e.kbits)<<18
	if e.res.Found {
		meta |= metaFound
	}
	if p := e.res.Prefix; p.IsValid() && e.cover.Addr().Is4() && !p.Addr().Is4() {
		meta |= metaV6Root | uint32(p.Bits())<<11
	}
	return meta, hi, lo
}

// lock takes a slot's meta for writing; it fails if another writer is in.
func lock(meta *atomic.Uint32) (old uint32, ok bool) {
	old = meta.Load()
	return old, old != metaLocked && meta.CompareAndSwap(old, metaLocked)
}

// unlock publishes meta with the slot's version bumped.
func unlock(meta *atomic.Uint32, old, m uint32) {
	meta.Store(m&^versionMask | (old&versionMask + versionOne))
}

// put stores network entry e in its set: over the slot of the same network
// if there is one, else in an empty slot, else over a random way. A put
// that meets another writer is dropped: the front table only mirrors
// ristretto.
func (f *front[T]) put(e *entry[T]) {
	meta, hi, lo := image(e)
	rec := e.res.Record
	same := func(m uint32) bool { return m&metaValid != 0 && m&0xff == meta&0xff }
	if e.cover.Addr().Is4() {
		s := &f.v4[e.set&f.mask4]
		sl := &s[pick(len(s), func(i int) (bool, bool) {
			m := s[i].meta.Load()
			return same(m) && uint64(s[i].addr.Load()) == lo, m&metaValid == 0 && m != metaLocked
		})]
		if old, ok := lock(&sl.meta); ok {
			sl.addr.Store(uint32(lo))
			sl.rec.Store(rec)
			unlock(&sl.meta, old, meta)
		}
		return
	}
	s := &f.v6[e.set&f.mask6]
	sl := &s[pick(len(s), func(i int) (bool, bool) {
		m := s[i].meta.Load()
		return same(m) && s[i].hi.Load() == hi && s[i].lo.Load() == lo, m&metaValid == 0 && m != metaLocked
	})]
	if old, ok := lock(&sl.meta); ok {
		sl.hi.Store(hi)
		sl.lo.Store(lo)
		sl.rec.Store(rec)
		unlock(&sl.meta, old, meta)
	}
}

// pick returns the way to write: the first that holds the same network,
// else the first empty one, else a random one.
func pick(n int, probe func(i int) (same, empty bool)) int {
	free := -1
	for i := range n {
		same, empty := probe(i)
		if same {
			return i
		}
		if empty && free < 0 {
			free = i
		}
	}
	if free >= 0 {
		return free
	}
	return rand.IntN(n)
}

// drop empties the slots that hold e's image.
func (f *front[T]) drop(e *entry[T]) {
	if e.sub.Load() != 0 {
		return // markers are never in the front table
	}
	meta, hi, lo := image(e)
	rec := e.res.Record
	match := func(sl *atomic.Uint32, words func() bool, r *atomic.Pointer[T]) {
		m := sl.Load()
		if m&^versionMask != meta || !words() || r.Load() != rec {
			return
		}
		if old, ok := lock(sl); ok {
			if old != m { // rewritten meanwhile: leave it
				sl.Store(old)
				return
			}
			r.Store(nil)
			unlock(sl, old, 0)
		}
	}
	if e.cover.Addr().Is4() {
		s := &f.v4[e.set&f.mask4]
		for i := range s {
			match(&s[i].meta, func() bool { return uint64(s[i].addr.Load()) == lo }, &s[i].rec)
		}
		return
	}
	s := &f.v6[e.set&f.mask6]
	for i := range s {
		match(&s[i].meta, func() bool { return s[i].hi.Load() == hi && s[i].lo.Load() == lo }, &s[i].rec)
	}
}

// each calls fn with an address of every block that holds a cached network,
// until fn returns false: the hot set, for a reload or SaveHotSet.
func (f *front[T]) each(fn func(netip.Addr) bool) {
	for i := range f.v4 {
		for j := range f.v4[i] {
			sl := &f.v4[i][j]
			if m, a := sl.meta.Load(), sl.addr.Load(); m&metaValid != 0 && m != metaLocked {
				if !fn(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})) {
					return
				}
			}
		}
	}
	for i := range f.v6 {
		for j := range f.v6[i] {
			sl := &f.v6[i][j]
			if m := sl.meta.Load(); m&metaValid != 0 && m != metaLocked {
				var b [16]byte
				binary.BigEndian.PutUint64(b[:8], sl.hi.Load())
				binary.BigEndian.PutUint64(b[8:], sl.lo.Load())
				if !fn(netip.AddrFrom16(b)) {
					return
				}
			}
		}
	}
}
