package geocache

import "github.com/oschwald/maxminddb-golang/v2"

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
//
// rootBits is N where the database has no IPv4 subtree and the reader
// answers every IPv4 address with the IPv6 network ::/N (the walk to the
// subtree ends on a record at depth N < 96); else 0.
func ipv4Aliased(tree []byte, md maxminddb.Metadata) (aliased bool, rootBits int) {
	if md.IPVersion == 4 {
		return true, 0
	}
	n4, d4 := walk96(tree, md, [12]byte{})
	n6, d6 := walk96(tree, md, [12]byte{10: 0xff, 11: 0xff})
	if d4 < 96 {
		rootBits = d4
	}
	return n4 == n6 && d4 == d6 && (d4 == 96 || d4 <= 80), rootBits
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
