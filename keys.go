package geocache

import (
	"encoding/binary"
	"net/netip"

	"github.com/cespare/xxhash/v2"
)

// How networks become cache keys.
//
// Every address belongs to exactly one network of the database (the search
// tree partitions the address space), so an entry for network N answers
// every address inside N. Each family has a stride S, the length of the
// blocks the first level hashes: /24 for IPv4, /48 for IPv6, chosen from
// GeoLite2-City's histogram (72% of its IPv4 networks are /24 or shorter;
// IPv6 networks spread from /29 to /64 around /48).
//
//   - An IPv4 network of /24 or longer is keyed by itself, in the bucket of
//     its /24 and the buckets after it: a /24 holds at most 256 networks,
//     so its chain stays short (GeoLite2-City's densest /24 blocks cost a
//     lookup a few lines at worst), and a lookup reads one bucket nearly
//     always.
//   - An IPv4 network shorter than /24 is keyed by itself too (by its /16
//     block if it is shorter than /16), in the chain of its /16 block: one
//     entry answers all of its /24 blocks, so a new /24 of a cached network
//     is a hit, not a tree walk, and the budget holds one entry for the
//     network, not one per /24 asked about (a /16 holds at most 254 networks
//     shorter than /24). Which chain a lookup reads first, table4.shortAt
//     says.
//   - An IPv6 /48 is keyed by itself, in the bucket of its block: one
//     probe. A network shorter than /48 is keyed as an IPv4 network
//     shorter than /24 is, a short stride up: by itself (by its /40 block
//     if it is shorter than /40), in the chain of its /40 block, which
//     table6.shortAt hints at (a /40 holds at most 128 networks of /41
//     to /47, where a /32 could hold thousands). One entry answers every
//     /48 of a /40-/47, where keyed by /48 a popular /32 network cost an
//     entry, and a miss, for each /48 asked about.
//   - An IPv6 network longer than /48 is keyed by itself, in its /48's
//     bucket, while the block holds few of them (at most splitAt cached):
//     one probe, and one entry answers all of the network.
//   - But an IPv6 /48 can hold thousands of networks (GeoLite2-City splits
//     some into 2,920), so past splitAt the block gets a marker in its
//     bucket and its networks move to the buckets of a second, finer
//     block, the /64 sub-block, and a lookup that finds the marker reads
//     a second bucket (see front). In a split block a network of length
//     48 < L < 64 is cached once per sub-block asked about (one that was
//     keyed by itself before the split stays so, in the bucket of its
//     first sub-block, and answers that one); a /64 or longer, by itself.
//   - IPv6 addresses in ::/64 (where IPv4-compatible and IPv4-mapped
//     addresses live, in databases that do not alias them to the IPv4
//     tree) are sub-blocked at /120, the IPv4 /24 inside them, since their
//     /64 is one sub-block for all of IPv4.
//
// The key block of an entry is the network masked to its key length, so
// the slot holds what it needs to check that the entry covers the address:
// a hash collision is a miss, never a wrong answer. Ristretto's key for an
// entry is the xxhash of its key block and length.
const (
	strideV4    = 24
	shortV4     = 16 // the block of IPv4 networks shorter than strideV4
	strideV6    = 48
	shortV6     = 40 // the block of IPv6 networks shorter than strideV6
	subStrideV6 = 64
	// subStrideV6Zero is the sub-block length in ::/64.
	subStrideV6Zero = 120
)

// keyBits4 is the key length of an IPv4 network of length bits.
func keyBits4(bits int) int { return max(bits, shortV4) }

// keyBits6 is the key length of an IPv6 network of length bits whose
// address's top 64 bits are hi, cached while its /48 block is split or
// not.
func keyBits6(hi uint64, bits int, split bool) int {
	switch {
	case bits <= strideV6:
		return max(bits, shortV6)
	case hi == 0:
		return max(bits, subStrideV6Zero)
	case !split:
		return bits
	}
	return max(bits, subStrideV6)
}

// fibonacci is 2^64 divided by the golden ratio. A block number times it,
// top bits kept, indexes a power-of-two table (Knuth's multiplicative
// hashing): one multiply on every lookup's critical path, where a mixing
// hash of three multiplies cost 4 ns more. Doubling the table splits each
// bucket in two, so growing never overfills a bucket.
const fibonacci = 0x9e3779b97f4a7c15

// blockHash4 and blockHash6 hash the /S block of an address for the first
// level, shortHash4 and shortHash6 its short block (apart from every
// /S block's hash); subHash6 an IPv6 sub-block in a split block. The
// table keeps the top bits.
func blockHash4(v uint32) uint64  { return uint64(v>>(32-strideV4)) * fibonacci }
func shortHash4(v uint32) uint64  { return uint64(v>>(32-shortV4)|1<<strideV4) * fibonacci }
func blockHash6(hi uint64) uint64 { return (hi >> (64 - strideV6)) * fibonacci }
func shortHash6(hi uint64) uint64 { return (hi>>(64-shortV6) | 1<<strideV6) * fibonacci }
func subHash6(hi, lo uint64) uint64 {
	if hi == 0 {
		return (lo>>(128-subStrideV6Zero) | 1<<48) * fibonacci
	}
	return (hi ^ 0x5bd1e995) * fibonacci
}

// entryKey4 is ristretto's key for the IPv4 entry keyed by block/bits:
// the xxhash of the block's address and length. Its 5 bytes never equal
// an IPv6 entry key's 17 or a record key's 8 (see recordKey), so families
// and kinds never share a key.
func entryKey4(block uint32, bits int) uint64 {
	var k [5]byte
	binary.BigEndian.PutUint32(k[:4], block&mask32(bits))
	k[4] = byte(bits)
	return xxhash.Sum64(k[:])
}

// entryKey6 is entryKey4 for the IPv6 block hi:lo/bits.
func entryKey6(hi, lo uint64, bits int) uint64 {
	var k [17]byte
	binary.BigEndian.PutUint64(k[:8], hi&mask64(bits))
	binary.BigEndian.PutUint64(k[8:16], lo&mask64(bits-64))
	k[16] = byte(bits)
	return xxhash.Sum64(k[:])
}

// addr4 returns the IPv4 address a as a number.
func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// addr6 returns the IPv6 address a as two numbers.
func addr6(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// from4 and from6 are the inverses of addr4 and addr6.
func from4(v uint32) netip.Addr {
	var b [4]byte // written whole, so that the compiler moves it as one word
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func from6(hi, lo uint64) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

// mask32 returns the IPv4 netmask of length bits, clamped to 0..32.
func mask32(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - min(bits, 32))
}

// mask64 returns a 64-bit netmask of length bits, clamped to 0..64.
func mask64(bits int) uint64 {
	switch {
	case bits <= 0:
		return 0
	case bits >= 64:
		return ^uint64(0)
	}
	return ^uint64(0) << (64 - bits)
}
