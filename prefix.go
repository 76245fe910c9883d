package geocache

import (
	"encoding/binary"
	"net/netip"

	"github.com/cespare/xxhash/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// How networks become cache keys.
//
// Every address belongs to exactly one network of the database (the search
// tree partitions the address space), so an entry for network N answers
// every address inside N. To find that entry with a fixed number of probes,
// whatever the prefix lengths of the database, each family has a stride S:
//
//   - A network of length L <= S covers whole /S blocks. It is stored under
//     the /S block of the address that missed: one probe finds it.
//   - A /S block that the database splits into longer networks holds a
//     marker instead, which records the longest length M seen inside the
//     block so far. Networks there are stored under the address's /M block:
//     a second probe finds them.
//
// So a hit costs one probe, or two inside split blocks. A large network is
// stored once per /S block it is asked about, and a short network in a split
// block once per /M block, but all of them share one decoded record. The
// strides come from GeoLite2-City's histogram: 72% of its IPv4 networks are
// /24 or shorter, and IPv6 networks spread from /29 to /64 around /48.
//
// Every probe checks that the entry's network contains the address, so a
// 64-bit hash collision is a miss, never a wrong answer.
const (
	strideV4 = 24
	strideV6 = 48
)

// ipv4Aliased reports whether the search tree sends IPv4-mapped addresses
// (::ffff:0:0/96) to the same place as IPv4 addresses (::/96), as every
// MaxMind database and mmdbwriter's default do. Only then is the reader's
// answer for ::ffff:a.b.c.d the answer for a.b.c.d, so that the cache may
// key both forms as IPv4; elsewhere the mapped form is a distinct IPv6
// address. The two paths share their first 80 bits: they are the same
// path if they end on the same record within those bits, and aliased if
// they reach the same node at depth 96 (the IPv4 subtree, or one record
// answering for all of IPv4). An IPv4-only database has no IPv6 tree: the
// mapped form can only name the IPv4 address.
func ipv4Aliased(tree []byte, md maxminddb.Metadata) bool {
	if md.IPVersion == 4 {
		return true
	}
	n4, d4 := walk96(tree, md, [12]byte{})
	n6, d6 := walk96(tree, md, [12]byte{10: 0xff, 11: 0xff})
	return n4 == n6 && d4 == d6 && (d4 == 96 || d4 <= 80)
}

// walk96 follows the first 96 bits of an IPv6 address from the root of
// the search tree and returns the node or record it reaches and its depth.
// It reads the tree directly: the reader walks to the IPv4 subtree itself
// but keeps the node it finds private. A node outside tree ends the walk
// (maxminddb.OpenBytes checked the tree's size already).
func walk96(tree []byte, md maxminddb.Metadata, addr [12]byte) (node uint, depth int) {
	for ; depth < 96 && node < md.NodeCount; depth++ {
		bit := uint(addr[depth/8]>>(7-depth%8)) & 1
		var ok bool
		if node, ok = child(tree, md.RecordSize, node, bit); !ok {
			return md.NodeCount, depth
		}
	}
	return node, depth
}

// child returns record bit (0 left, 1 right) of node n, as the format's
// specification lays records of 24, 28 and 32 bits out.
func child(tree []byte, recordSize, n, bit uint) (uint, bool) {
	b := func(i uint) uint { return uint(tree[i]) }
	switch recordSize {
	case 24:
		o := n*6 + bit*3
		if o+3 > uint(len(tree)) {
			return 0, false
		}
		return b(o)<<16 | b(o+1)<<8 | b(o+2), true
	case 28:
		o := n * 7
		if o+7 > uint(len(tree)) {
			return 0, false
		}
		if bit == 0 {
			return (b(o+3)&0xf0)<<20 | b(o)<<16 | b(o+1)<<8 | b(o+2), true
		}
		return (b(o+3)&0x0f)<<24 | b(o+4)<<16 | b(o+5)<<8 | b(o+6), true
	case 32:
		o := n*8 + bit*4
		if o+4 > uint(len(tree)) {
			return 0, false
		}
		return b(o)<<24 | b(o+1)<<16 | b(o+2)<<8 | b(o+3), true
	}
	return 0, false
}

// stride returns the first-level block length for a's family.
func stride(a netip.Addr) int {
	if a.Is4() {
		return strideV4
	}
	return strideV6
}

// blockKey hashes the /bits block that holds a with xxhash: the key of
// ristretto's entry. The family is part of the key, so 1.2.3.0/24 and
// ::102:300/120 never share one. Keys need spread, not collision
// resistance: every probe verifies the network, so a collision is only a
// miss. A hit that the front table answers does not compute it (see
// frontSet).
func blockKey(a netip.Addr, bits int) uint64 {
	if a.Is4() {
		b := a.As4()
		return key4(binary.BigEndian.Uint32(b[:]), bits)
	}
	hi, lo := addrWords(a)
	var k [17]byte
	binary.BigEndian.PutUint64(k[:8], hi&mask64(bits))
	binary.BigEndian.PutUint64(k[8:16], lo&mask64(bits-64))
	k[16] = byte(bits)
	return xxhash.Sum64(k[:])
}

// key4 is blockKey for the IPv4 address v, without building a netip.Addr.
// Its 8 bytes never equal an IPv6 key's 17.
func key4(v uint32, bits int) uint64 {
	var k [8]byte
	binary.BigEndian.PutUint32(k[:4], v&mask32(bits))
	k[4] = byte(bits)
	return xxhash.Sum64(k[:])
}

// frontSet returns the front-table set of a's first-level block, and
// frontSet4 that of the IPv4 address v. Every hit computes it before its
// one memory read, so it is on the critical path: the murmur3 finalizer's
// three multiplies cost ~4 ns of latency there, where xxhash's longer
// chain over the same bytes cost 14-16 ns, a quarter of an L1-resident hit
// (measured with the benchmark's profile).
func frontSet(a netip.Addr) uint64 {
	if a.Is4() {
		b := a.As4()
		return frontSet4(binary.BigEndian.Uint32(b[:]))
	}
	hi, _ := addrWords(a)
	return mix(hi & mask64(strideV6))
}

func frontSet4(v uint32) uint64 { return mix(uint64(v&mask32(strideV4)) | 1<<63) }

// mix is the murmur3 64-bit finalizer.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// mask32 returns the IPv4 netmask of length bits (0..32).
func mask32(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
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

// coverOf returns the network answered for a, in a's own family. The reader
// answers an IPv4 address in an IPv6 database with an IPv6 prefix (::/N)
// when the tree ends above the IPv4 subtree; that answer holds for every
// IPv4 address, so its cover is 0.0.0.0/0.
func coverOf(a netip.Addr, answered netip.Prefix) netip.Prefix {
	if a.Is4() && !answered.Addr().Is4() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return answered
}

// block returns the /bits block holding a.
func block(a netip.Addr, bits int) netip.Prefix {
	p, _ := a.Prefix(bits)
	return p
}
