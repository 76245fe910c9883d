// Package workload makes the seeded address streams that the benchmarks,
// the tests, `geocache bench` and the lab look up: the same streams
// everywhere, so figures from one compare with figures from another.
package workload

import (
	"encoding/binary"
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
// random address inside each. Popularity(nets, seed).Draw(n, seed)
// returns other draws from the same ranking.
func Zipf(nets []netip.Prefix, n int, seed uint64) []netip.Addr {
	p := Popularity(nets, seed)
	return p.draw(n, p.rng)
}

// Ranking is a popularity order of networks.
type Ranking struct {
	ranked []netip.Prefix
	rng    *rand.Rand // the ranking's own, for Zipf's draws
}

// Popularity ranks nets by a permutation seeded with seed.
func Popularity(nets []netip.Prefix, seed uint64) *Ranking {
	rng := rand.New(rand.NewPCG(seed, seed))
	ranked := append([]netip.Prefix(nil), nets...)
	rng.Shuffle(len(ranked), func(i, j int) { ranked[i], ranked[j] = ranked[j], ranked[i] })
	return &Ranking{ranked: ranked, rng: rng}
}

// Draw returns n addresses drawn from the ranking with Zipf s=1.1, with
// draws seeded by seed: new traffic with the same popularity.
func (p *Ranking) Draw(n int, seed uint64) []netip.Addr {
	return p.draw(n, rand.New(rand.NewPCG(seed, ^seed)))
}

func (p *Ranking) draw(n int, rng *rand.Rand) []netip.Addr {
	z := rand.NewZipf(rng, 1.1, 1, uint64(len(p.ranked)-1))
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = RandomIn(rng, p.ranked[z.Uint64()])
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

// Flood yields addresses that never repeat, a cache-busting attack: IPv4
// by the LCG x -> 1664525x + 1013904223 (mod 2^32, full period, so no
// address repeats within 2^32), every fourth one IPv6 from 2000::/3 by a
// splitmix generator. The zero Flood is usable; Next is not safe for
// concurrent use.
type Flood struct {
	x, s uint64
	i    int
}

// Next returns the next address.
func (f *Flood) Next() netip.Addr {
	f.i++
	if f.i%4 == 0 {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], f.mix())
		binary.BigEndian.PutUint64(b[8:], f.mix())
		b[0] = 0x20 | b[0]&0x1f // 2000::/3, the global unicast space
		return netip.AddrFrom16(b)
	}
	f.x = (f.x*1664525 + 1013904223) & 0xffffffff
	v := uint32(f.x)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (f *Flood) mix() uint64 {
	f.s += 0x9e3779b97f4a7c15
	z := f.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
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
