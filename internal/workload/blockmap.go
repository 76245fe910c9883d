package workload

import (
	"encoding/binary"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// BlockMap is the reference a cache hit is measured against: a prebuilt Go
// map from each /24 (IPv4) and /48 (IPv6) block of a stream to its
// record, the fastest structure that holds the same answers for the
// stream.
type BlockMap[T any] struct {
	v4 map[uint32]*T
	v6 map[uint64]*T
}

// NewBlockMap looks up every address of stream in r and maps its block to
// its record, decoded into a new T once per data offset, shared as a
// cache shares records.
func NewBlockMap[T any](r *maxminddb.Reader, stream []netip.Addr) (*BlockMap[T], error) {
	m := &BlockMap[T]{v4: map[uint32]*T{}, v6: map[uint64]*T{}}
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
		if a.Is4() {
			m.v4[Block24(a)] = rec
		} else {
			m.v6[Block48(a)] = rec
		}
	}
	return m, nil
}

// Get returns the record of a's block, or nil.
func (m *BlockMap[T]) Get(a netip.Addr) *T {
	if a.Is4() {
		return m.v4[Block24(a)]
	}
	return m.v6[Block48(a)]
}

// Block24 is the /24 block of the IPv4 address a, as a number: BlockMap's
// key.
func Block24(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:]) >> 8
}

// Block48 is the /48 block of the IPv6 address a, as a number.
func Block48(a netip.Addr) uint64 {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]) >> 16
}
