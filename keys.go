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
//   - A network of length L <= S covers whole /S blocks. It is cached once
//     per /S block it was asked about, keyed by that block.
//   - A /S block that the database splits holds only networks longer than
//     S, each keyed by itself.
//
// Either way an entry lives in the bucket of its /S block, so a lookup
// reads one bucket; and the entry's key block is the network masked to
// max(L, S), so the bucket holds what it needs to check that the entry
// covers the address: a hash collision is a miss, never a wrong answer.
// Ristretto's key for an entry is the xxhash of that block and its length.
const (
	strideV4 = 24
	strideV6 = 48
)

// fibonacci is 2^64 divided by the golden ratio. A block number times it,
// top bits kept, indexes a power-of-two table (Knuth's multiplicative
// hashing): one multiply on every lookup's critical path, where a mixing
// hash of three multiplies cost 4 ns more. Doubling the table splits each
// bucket in two, so growing never overfills a bucket.
const fibonacci = 0x9e3779b97f4a7c15

// blockHash4 and blockHash6 hash the /S block of an address for the first
// level; the table keeps the top bits.
func blockHash4(v uint32) uint64  { return uint64(v>>(32-strideV4)) * fibonacci }
func blockHash6(hi uint64) uint64 { return (hi >> (64 - strideV6)) * fibonacci }

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
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
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
