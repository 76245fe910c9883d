// Package hitpath compares first-level layouts, and the library's Lookup,
// on GeoLite2-City's Zipf stream, in one process, against the fastest
// structure that holds the same data (a Go map keyed by /24 block): the
// controlled experiments behind the library's first level. GEOCACHE_MMDB
// names the database.
package hitpath

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/geocache/geocache/internal/workload"
	"github.com/geocache/geocache/lab/internal/envdb"
)

// rec stands for a decoded record; lookups return its pointer and never
// read it, as a cache hit does not.
type rec struct{ _ [1200]byte }

type data struct {
	v4  []uint32
	pfx []netip.Prefix
	off []uintptr
}

var (
	once sync.Once
	d    data
)

func load(b *testing.B) *data {
	once.Do(func() {
		_, r := envdb.Open(b) // skips b without GEOCACHE_MMDB; later callers skip below
		for _, a := range workload.Zipf(workload.Networks(r), 1<<20, 42) {
			if !a.Is4() {
				continue
			}
			res := r.Lookup(a)
			b4 := a.As4()
			d.v4 = append(d.v4, binary.BigEndian.Uint32(b4[:]))
			d.pfx = append(d.pfx, res.Prefix())
			d.off = append(d.off, res.Offset())
		}
		n := 1
		for n*2 <= len(d.v4) {
			n *= 2
		}
		d.v4, d.pfx, d.off = d.v4[:n], d.pfx[:n], d.off[:n]
	})
	if len(d.v4) == 0 {
		b.Skip("GEOCACHE_MMDB not set")
	}
	return &d
}

const fib = 0x9e3779b97f4a7c15

func mask32(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

// entries returns the distinct (key block, length, record) entries of the
// stream, with records numbered in first-seen order, and the records.
func entries(d *data) (keys []uint32, lens []int, ids []uint32, recs []*rec) {
	idOf := map[uintptr]uint32{}
	seen := map[uint64]bool{}
	for i, v := range d.v4 {
		l := d.pfx[i].Bits()
		k := v & mask32(max(l, 24))
		if seen[uint64(k)<<8|uint64(l)] {
			continue
		}
		seen[uint64(k)<<8|uint64(l)] = true
		id, ok := idOf[d.off[i]]
		if !ok {
			id = uint32(len(recs))
			recs = append(recs, new(rec))
			idOf[d.off[i]] = id
		}
		keys, lens, ids = append(keys, k), append(lens, l), append(ids, id)
	}
	return keys, lens, ids, recs
}

// dense8 is the library's layout: 8-byte slots (key block, length+1,
// record id), 8 to a 64-byte bucket, ids into a table of pointers.
type dense8 struct {
	b     [][8]atomic.Uint64
	shift uint
	recs  []atomic.Pointer[rec]
}

func newDense8(d *data, buckets int) *dense8 {
	t := &dense8{b: make([][8]atomic.Uint64, buckets), shift: 64 - uint(bitsOf(buckets))}
	keys, lens, ids, recs := entries(d)
	for i, k := range keys {
		w := uint64(k)<<32 | uint64(ids[i])<<8 | uint64(lens[i]+1)
		for h := (uint64(k>>8) * fib) >> t.shift; ; h = (h + 1) % uint64(buckets) {
			if placed := put(&t.b[h], w); placed {
				break
			}
		}
	}
	t.recs = make([]atomic.Pointer[rec], len(recs))
	for i, r := range recs {
		t.recs[i].Store(r)
	}
	return t
}

func put(b *[8]atomic.Uint64, w uint64) bool {
	for j := range b {
		if b[j].Load() == 0 {
			b[j].Store(w)
			return true
		}
	}
	return false
}

func bitsOf(n int) int {
	b := 0
	for ; n > 1; n >>= 1 {
		b++
	}
	return b
}

func (t *dense8) get(v uint32) (netip.Prefix, *rec) {
	bk := &t.b[(uint64(v>>8)*fib)>>t.shift]
	for i := range bk {
		w := bk[i].Load()
		l := int(w&63) - 1
		if w&63 == 0 || (uint32(w>>32)^v)&mask32(max(l, 24)) != 0 {
			continue
		}
		a := uint32(w>>32) & mask32(l)
		r := t.recs[uint32(w)>>8].Load()
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), l), r
	}
	return netip.Prefix{}, nil
}

// dense16 keeps the record pointer in the slot: 16-byte slots, 4 to a
// bucket, no second load.
type dense16 struct {
	b [][4]struct {
		w atomic.Uint64
		r atomic.Pointer[rec]
	}
	shift uint
}

func newDense16(d *data, buckets int) *dense16 {
	t := &dense16{b: make([][4]struct {
		w atomic.Uint64
		r atomic.Pointer[rec]
	}, buckets), shift: 64 - uint(bitsOf(buckets))}
	keys, lens, ids, recs := entries(d)
	for i, k := range keys {
		w := uint64(k)<<32 | uint64(ids[i])<<8 | uint64(lens[i]+1)
		for h := (uint64(k>>8) * fib) >> t.shift; ; h = (h + 1) % uint64(buckets) {
			bk := &t.b[h]
			j := 0
			for j < 4 && bk[j].w.Load() != 0 {
				j++
			}
			if j < 4 {
				bk[j].w.Store(w)
				bk[j].r.Store(recs[ids[i]])
				break
			}
		}
	}
	return t
}

func (t *dense16) get(v uint32) (netip.Prefix, *rec) {
	bk := &t.b[(uint64(v>>8)*fib)>>t.shift]
	for i := range bk {
		w := bk[i].w.Load()
		l := int(w&63) - 1
		if w&63 == 0 || (uint32(w>>32)^v)&mask32(max(l, 24)) != 0 {
			continue
		}
		a := uint32(w>>32) & mask32(l)
		r := bk[i].r.Load()
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), l), r
	}
	return netip.Prefix{}, nil
}

var sink atomic.Pointer[rec]

// BenchmarkHit looks the stream's IPv4 addresses up in each structure, all
// built once, on one goroutine and under RunParallel, the sub-benchmarks
// interleaved by -count: run with
// -count 10 -benchtime 0.3s for medians of rounds a moment apart.
func BenchmarkHit(b *testing.B) {
	d := load(b)
	n := len(d.v4) - 1
	keys, _, ids, recs := entries(d)
	m24 := map[uint32]*rec{}
	for i, k := range keys {
		m24[k>>8] = recs[ids[i]]
	}
	b.Run("impl=map24", func(b *testing.B) {
		var last *rec
		i := 0
		for b.Loop() {
			last = m24[d.v4[i&n]>>8]
			i++
		}
		sink.Store(last)
	})
	// The tables at the sizes the library's first level would have, kept
	// for the parallel rows below.
	const libBuckets8 = 1 << 15
	var lib8 *dense8
	var lib16 *dense16
	for _, buckets := range []int{libBuckets8, 1 << 16} {
		t8, t16 := newDense8(d, buckets), newDense16(d, 2*buckets)
		if buckets == libBuckets8 {
			lib8, lib16 = t8, t16
		}
		b.Run("impl=dense8/buckets="+strconv.Itoa(buckets), func(b *testing.B) {
			var last *rec
			i := 0
			for b.Loop() {
				_, last = t8.get(d.v4[i&n])
				i++
			}
			sink.Store(last)
		})
		b.Run("impl=dense16/buckets="+strconv.Itoa(2*buckets), func(b *testing.B) {
			var last *rec
			i := 0
			for b.Loop() {
				_, last = t16.get(d.v4[i&n])
				i++
			}
			sink.Store(last)
		})
	}
	// Under RunParallel, each goroutine from its own place in the stream.
	par := func(name string, get func(uint32) *rec) {
		b.Run("mode=parallel/"+name, func(b *testing.B) {
			var g atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				var last *rec
				i := int(g.Add(1)) * 7919 * 4099
				for pb.Next() {
					last = get(d.v4[i&n])
					i++
				}
				sink.Store(last)
			})
		})
	}
	par("impl=map24", func(v uint32) *rec { return m24[v>>8] })
	par("impl=dense8/buckets="+strconv.Itoa(libBuckets8), func(v uint32) *rec { _, r := lib8.get(v); return r })
	par("impl=dense16/buckets="+strconv.Itoa(2*libBuckets8), func(v uint32) *rec { _, r := lib16.get(v); return r })
	b.Logf("%d entries, %d records, %d-byte slots at %d buckets: %d KiB", len(keys), len(recs), 8, libBuckets8, libBuckets8*64/1024)
	_ = unsafe.Sizeof(0)
}
