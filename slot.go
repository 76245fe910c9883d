package geocache

// The first level's slots, packed so that a lookup reads few bytes: an
// IPv4 entry is a word and its record's pointer (16 bytes), an IPv6 entry
// three words and the pointer (32 bytes). A reader loads the word, the
// pointer (and address words), then the word again, and trusts what it
// read only if the word did not change; the version that every write
// bumps makes a slot rewritten between the two loads read as changed.

// slot4 is an IPv4 entry's word:
//
//	bits  0-5   the network's length plus one (0: an empty slot)
//	bit   6     answered with the IPv6 network ::/N (see generation.rootBits)
//	bit   7     in a bucket's last slot: the bucket overflowed (see front)
//	bits  8-23  a version that every write of the slot bumps
//	bits 24-31  the entry's sampling hash: the lower of its block's and
//	            its record's, so that a hit tests one (see sampler)
//	bits 32-63  the address of the block the entry is keyed by
type slot4 uint64

const (
	slot4LenMask      = 1<<6 - 1
	slot4V6Root       = 1 << 6
	slot4Overflow     = 1 << 7
	slot4VersionShift = 8
	slot4VersionMask  = 1<<16 - 1
	slot4SampleShift  = 24
	slot4AddrShift    = 32
)

// makeSlot4 encodes the entry for network bits long, keyed by the block of
// addr that keyBits4 names.
func makeSlot4(addr uint32, bits int, v6Root bool) slot4 {
	s := slot4(addr&mask32(keyBits4(bits)))<<slot4AddrShift | slot4(bits+1)
	if v6Root {
		s |= slot4V6Root
	}
	return s
}

func (s slot4) bits() int        { return int(s&slot4LenMask) - 1 }
func (s slot4) block() uint32    { return uint32(s >> slot4AddrShift) }
func (s slot4) v6Root() bool     { return s&slot4V6Root != 0 }
func (s slot4) network() uint32  { return s.block() & mask32(s.bits()) }
func (s slot4) key() uint64      { return entryKey4(s.block(), s.keyBits()) }
func (s slot4) empty() bool      { return s&slot4LenMask == 0 }
func (s slot4) overflowed() bool { return s&slot4Overflow != 0 }
func (s slot4) version() slot4   { return s >> slot4VersionShift & slot4VersionMask }
func (s slot4) sample() uint8    { return uint8(s >> slot4SampleShift) }
func (s slot4) withSample(h uint8) slot4 {
	return s&^(0xff<<slot4SampleShift) | slot4(h)<<slot4SampleShift
}

// entry is s without its bucket's overflow mark and its version: what
// names the entry.
func (s slot4) entry() slot4 {
	return s &^ (slot4Overflow | slot4VersionMask<<slot4VersionShift)
}

// keyBits is the length of the block s is keyed by.
func (s slot4) keyBits() int { return keyBits4(s.bits()) }

func (s slot4) covers(v uint32) bool {
	return !s.empty() && (v^s.block())&mask32(s.keyBits()) == 0
}

// slot6 is an IPv6 entry's meta word, beside the address of the block the
// entry is keyed by and its record's pointer (see bucket6):
//
//	bits  0-7   the network's length plus one (0: an empty slot; 255: a
//	            split block's marker, see keys.go)
//	bit   8     in a bucket's last slot: the bucket overflowed (see front)
//	bits  9-24  a version that every write of the slot bumps
//	bits 25-32  the entry's sampling hash, as in slot4
//	bit  33     keyed by its network although shorter than its sub-block:
//	            cached while its block was not split (see keys.go)
type slot6 uint64

const (
	slot6LenMask      = 1<<8 - 1
	slot6Marker       = slot6LenMask
	slot6Overflow     = 1 << 8
	slot6VersionShift = 9
	slot6VersionMask  = 1<<16 - 1
	slot6SampleShift  = 25
	slot6Whole        = 1 << 33
)

// makeSlot6 encodes the meta of an entry for a network bits long, at an
// address whose top 64 bits are hi, in a /48 block split or not. Its key
// length (keyBits) is keyBits6's; only where the split makes a difference
// does the meta say which, so that one key has one meta.
func makeSlot6(hi uint64, bits int, split bool) slot6 {
	s := slot6(bits + 1)
	if keyBits6(hi, bits, split) != keyBits6(hi, bits, true) {
		s |= slot6Whole
	}
	return s
}

func (s slot6) bits() int    { return int(s&slot6LenMask) - 1 }
func (s slot6) marker() bool { return s&slot6LenMask == slot6Marker }
func (s slot6) split() bool  { return s.bits() > strideV6 && !s.marker() }
func (s slot6) short() bool  { return uint(s.bits()) < strideV6 } // an empty slot's -1 is not

// keyBits is the length of the block s is keyed by, whose top 64 bits are
// hi; a marker's is its /48.
func (s slot6) keyBits(hi uint64) int {
	if s.marker() {
		return strideV6
	}
	return keyBits6(hi, s.bits(), s&slot6Whole == 0)
}
func (s slot6) empty() bool      { return s&slot6LenMask == 0 }
func (s slot6) overflowed() bool { return s&slot6Overflow != 0 }
func (s slot6) version() slot6   { return s >> slot6VersionShift & slot6VersionMask }
func (s slot6) sample() uint8    { return uint8(s >> slot6SampleShift) }
func (s slot6) withSample(h uint8) slot6 {
	return s&^(0xff<<slot6SampleShift) | slot6(h)<<slot6SampleShift
}
func (s slot6) entry() slot6 { return s &^ (slot6Overflow | slot6VersionMask<<slot6VersionShift) }
