package geocache

import "sync/atomic"

// doorkeeper remembers which keys were seen recently, so that a key is
// offered to the cache only on its second sighting: TinyLFU's doorkeeper
// (Einziger et al., "TinyLFU: A Highly Efficient Cache Admission
// Policy"), in front of ristretto rather than inside it. Most networks of
// a long-tailed stream are asked once; offering them cost a Set, the
// sizing of a record and an admission decision each, all wasted when the
// policy turns them away, and under a flood of never-repeating addresses
// it is all that a miss does beyond the reader's own work.
//
// It is a Bloom filter with two bits per key, set with atomic ORs so that
// concurrent misses need no lock (ristretto's z.Bloom is not safe for
// concurrent use). After as many keys as an eighth of its bits (a 5%
// false-positive rate) it starts empty again, so it remembers the last
// stretch of traffic, as TinyLFU resets its doorkeeper with its sketch.
type doorkeeper struct {
	bits  atomic.Pointer[[]atomic.Uint64]
	mask  uint64 // bit index mask
	added atomic.Int64
	limit int64
}

// newDoorkeeper returns a doorkeeper for windows of about keys keys.
func newDoorkeeper(keys int64) *doorkeeper {
	n := doorkeeperBits(keys)
	d := &doorkeeper{mask: n - 1, limit: int64(n / 8)}
	d.reset()
	return d
}

func doorkeeperBits(keys int64) uint64 {
	n := uint64(64)
	for n < uint64(keys)*8 {
		n <<= 1
	}
	return n
}

func doorkeeperBytes(keys int64) int64 { return int64(doorkeeperBits(keys) / 8) }

func (d *doorkeeper) reset() {
	w := make([]atomic.Uint64, (d.mask+1)/64)
	d.bits.Store(&w)
	d.added.Store(0)
}

// seen reports whether key (a hash) was seen since the last reset, and
// remembers it.
func (d *doorkeeper) seen(key uint64) bool {
	w := *d.bits.Load()
	b1, b2 := key&d.mask, (key>>32|key<<32)&d.mask
	m1, m2 := uint64(1)<<(b1%64), uint64(1)<<(b2%64)
	had := w[b1/64].Load()&m1 != 0 && w[b2/64].Load()&m2 != 0
	if !had {
		w[b1/64].Or(m1)
		w[b2/64].Or(m2)
		if d.added.Add(1) >= d.limit {
			d.reset()
		}
	}
	return had
}
