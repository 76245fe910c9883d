package workload

import (
	"encoding/binary"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// BlockMap is the reference a cache hit is measured against: a prebuilt Go
// map from each /24 (IPv4) and /48 (IPv6) block of a stream to its
// record (or to a value made of the record and its network), the fastest
// structure that holds the same answers for the stream.
type BlockMap[V any] struct {
	v4 map[uint32]V
	v6 map[uint64]V
}

// NewBlockMap maps each block of stream to its record: BlockMapOf with
// the record alone.
func NewBlockMap[T any](r *maxminddb.Reader, stream []netip.Addr) (*BlockMap[*T], error) {
	return BlockMapOf(r, stream, func(rec *T, _ netip.Prefix) *T { return rec })
}

// BlockMapOf looks up every address of stream in r and maps its block to
// val of its record, decoded into a new T once per data offset (shared as
// a cache shares records), and of the network the reader answered with. A
// block that the database splits keeps the network last asked about.
func BlockMapOf[T, V any](r *maxminddb.Reader, stream []netip.Addr, val func(rec *T, network netip.Prefix) V) (*BlockMap[V], error) {
	m := &BlockMap[V]{v4: map[uint32]V{}, v6: map[uint64]V{}}
	byOff := map[uintptr]*T{}
	for _, a := range stream {
		res := r.Lookup(a)
		rec := byOff[res.Offset()]
		if rec == nil {
			rec = new(T)
			if err := res.Decode(rec); err != nil {
				return nil, err
			}
			byOff[res.Offset()] = rec
		}
		if v := val(rec, res.Prefix()); a.Is4() {
			m.v4[block24(a)] = v
		} else {
			m.v6[block48(a)] = v
		}
	}
	return m, nil
}

// Get returns the value of a's block, or the zero V.
func (m *BlockMap[V]) Get(a netip.Addr) V {
	if a.Is4() {
		return m.v4[block24(a)]
	}
	return m.v6[block48(a)]
}

func block24(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:]) >> 8
}

func block48(a netip.Addr) uint64 {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]) >> 16
}
