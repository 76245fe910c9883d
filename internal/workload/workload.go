// Package workload makes the seeded address streams that the benchmarks,
// the tests and `geocache bench` look up: the same streams everywhere, so
// figures from one compare with figures from another.
package workload

import (
	"math/rand/v2"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Networks returns the networks of r that hold data, aliases excluded.
func Networks(r *maxminddb.Reader) []netip.Prefix {
	var nets []netip.Prefix
	for res := range r.Networks() {
		if res.Err() == nil {
			nets = append(nets, res.Prefix())
		}
	}
	return nets
}

// Zipf returns n addresses with the skew of real traffic: networks of nets
// ranked by a seeded random permutation and drawn with Zipf s=1.1, a
// random address inside each.
func Zipf(nets []netip.Prefix, n int, seed uint64) []netip.Addr {
	rng := rand.New(rand.NewPCG(seed, seed))
	ranked := append([]netip.Prefix(nil), nets...)
	rng.Shuffle(len(ranked), func(i, j int) { ranked[i], ranked[j] = ranked[j], ranked[i] })
	z := rand.NewZipf(rng, 1.1, 1, uint64(len(ranked)-1))
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = RandomIn(rng, ranked[z.Uint64()])
	}
	return addrs
}

// Uniform returns n (at most 2^24) uniformly random IPv4 addresses, each in
// a different /24 block: a miss-heavy stream.
func Uniform(n int, seed uint64) []netip.Addr {
	rng := rand.New(rand.NewPCG(seed, seed))
	blocks := rng.Perm(1 << 24)
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		b := blocks[i]
		addrs[i] = netip.AddrFrom4([4]byte{byte(b >> 16), byte(b >> 8), byte(b), byte(rng.IntN(256))})
	}
	return addrs
}

// RandomIn returns a uniformly random address inside p.
func RandomIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	first := 128 - p.Addr().BitLen() + p.Bits() // first host bit in b
	for i := first; i < 128; i++ {
		if r.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		} else {
			b[i/8] &^= 0x80 >> (i % 8)
		}
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}
