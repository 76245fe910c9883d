package geocache

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestMasksMatchNetip checks mask32, mask64 and the address conversions
// against netip's own prefix masking, at every length.
func TestMasksMatchNetip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for range 200 {
		v := rnd.Uint32()
		hi, lo := rnd.Uint64(), rnd.Uint64()
		a4, a6 := from4(v), from6(hi, lo)
		if addr4(a4) != v {
			t.Fatalf("addr4(from4(%#x)) = %#x", v, addr4(a4))
		}
		if h, l := addr6(a6); h != hi || l != lo {
			t.Fatalf("addr6(from6(%#x, %#x)) = %#x, %#x", hi, lo, h, l)
		}
		for bits := 0; bits <= 32; bits++ {
			want := addr4(netip.PrefixFrom(a4, bits).Masked().Addr())
			if got := v & mask32(bits); got != want {
				t.Fatalf("%#x & mask32(%d) = %#x, want %#x", v, bits, got, want)
			}
		}
		for bits := 0; bits <= 128; bits++ {
			wh, wl := addr6(netip.PrefixFrom(a6, bits).Masked().Addr())
			if h, l := hi&mask64(bits), lo&mask64(bits-64); h != wh || l != wl {
				t.Fatalf("%v/%d masked to %#x:%#x, want %#x:%#x", a6, bits, h, l, wh, wl)
			}
		}
	}
}

// TestEntryKeys checks that an entry's key depends on its network only:
// the same for every address inside it, different for every other network
// (a sweep of nested and neighbouring networks; a 64-bit hash could
// collide, so only this set is checked, and a collision would cost a
// miss, never a wrong answer: the slot holds the block it answers).
func TestEntryKeys(t *testing.T) {
	seen := map[uint64]string{}
	add := func(k uint64, name string) {
		if other, ok := seen[k]; ok && other != name {
			t.Fatalf("%s and %s share key %#x", name, other, k)
		}
		seen[k] = name
	}
	rnd := rand.New(rand.NewPCG(7, 8))
	for _, base := range []uint32{0, 0x51_02_45_00, 0xff_ff_ff_00} {
		for bits := 0; bits <= 32; bits++ {
			p := netip.PrefixFrom(from4(base), bits).Masked()
			k := entryKey4(base, bits)
			add(k, "v4 "+p.String())
			inside := addr4(p.Addr()) | rnd.Uint32()&^mask32(bits)
			if entryKey4(inside, bits) != k {
				t.Fatalf("%v: another address inside has another key", p)
			}
		}
	}
	for _, hi := range []uint64{0, 0x2001_0db8_0000_0000, ^uint64(0)} {
		for bits := 0; bits <= 128; bits++ {
			p := netip.PrefixFrom(from6(hi, ^uint64(0)), bits).Masked()
			k := entryKey6(hi, ^uint64(0), bits)
			add(k, "v6 "+p.String())
			h, l := addr6(p.Addr())
			if entryKey6(h|rnd.Uint64()&^mask64(bits), l|rnd.Uint64()&^mask64(bits-64), bits) != k {
				t.Fatalf("%v: another address inside has another key", p)
			}
		}
	}
}

// TestSlot4 checks the IPv4 word's fields and which addresses an entry
// covers, at every length, against netip.
func TestSlot4(t *testing.T) {
	rnd := rand.New(rand.NewPCG(9, 10))
	for bits := 0; bits <= 32; bits++ {
		v := rnd.Uint32()
		s := makeSlot4(v, bits, bits%2 == 0).withSample(uint8(bits))
		if s.bits() != bits || s.v6Root() != (bits%2 == 0) || s.sample() != uint8(bits) || s.empty() {
			t.Fatalf("makeSlot4(%#x, %d): bits %d, v6Root %v, sample %d", v, bits, s.bits(), s.v6Root(), s.sample())
		}
		versioned := s | slot4Overflow | 77<<slot4VersionShift
		if versioned.entry() != s.entry() || versioned.version() != 77 || !versioned.overflowed() {
			t.Fatalf("bits %d: version and overflow mark leak into the entry", bits)
		}
		block := netip.PrefixFrom(from4(v), keyBits4(bits)).Masked()
		for range 50 {
			w := v ^ rnd.Uint32()>>rnd.IntN(33)
			if got, want := s.covers(w), block.Contains(from4(w)); got != want {
				t.Fatalf("entry %v/%d keyed by %v: covers(%v) = %v", from4(s.network()), bits, block, from4(w), got)
			}
		}
	}
	if slot4(0).covers(0) {
		t.Error("an empty slot covers an address")
	}
}

// TestBlockHashSpreads checks that consecutive blocks, the common case
// (a provider's neighbouring /24s), spread over a small table's buckets
// better than random ones would (which fill 1-1/e, 63%).
func TestBlockHashSpreads(t *testing.T) {
	const buckets = 256
	shift := shiftFor(buckets)
	used := map[uint64]bool{}
	for b := range uint32(buckets) {
		used[blockHash4(0x0a_00_00_00+b<<8)>>shift] = true
	}
	if len(used) < buckets*8/10 {
		t.Errorf("%d consecutive /24 blocks fill %d of %d buckets", buckets, len(used), buckets)
	}
}

// TestKeyBits checks the key lengths of networks shorter and longer than
// the strides: short blocks, blocks, IPv6 sub-blocks, and ::/64's
// IPv4-sized sub-blocks.
func TestKeyBits(t *testing.T) {
	for _, c := range []struct{ bits, want int }{{0, 16}, {8, 16}, {16, 16}, {20, 20}, {23, 23}, {24, 24}, {25, 25}, {28, 28}, {32, 32}} {
		if got := keyBits4(c.bits); got != c.want {
			t.Errorf("keyBits4(%d) = %d, want %d", c.bits, got, c.want)
		}
	}
	for _, c := range []struct {
		hi         uint64
		bits, want int
		split      bool
	}{
		{1, 0, 40, true}, {1, 32, 40, true}, {1, 40, 40, true}, {1, 44, 44, true}, {1, 47, 47, false}, {1, 48, 48, true}, {1, 49, 64, true}, {1, 64, 64, true}, {1, 80, 80, true},
		{1, 0, 40, false}, {1, 49, 49, false}, {1, 63, 63, false}, {1, 80, 80, false},
		{0, 32, 40, true}, {0, 48, 48, true}, {0, 49, 120, true}, {0, 96, 120, true}, {0, 120, 120, true}, {0, 128, 128, true},
		{0, 49, 120, false},
	} {
		if got := keyBits6(c.hi, c.bits, c.split); got != c.want {
			t.Errorf("keyBits6(%#x, %d, %v) = %d, want %d", c.hi, c.bits, c.split, got, c.want)
		}
		s := makeSlot6(c.hi, c.bits, c.split)
		if got := s.keyBits(c.hi); got != c.want || s.bits() != c.bits {
			t.Errorf("makeSlot6(%#x, %d, %v): keyBits %d, bits %d", c.hi, c.bits, c.split, got, s.bits())
		}
		if (s == makeSlot6(c.hi, c.bits, !c.split)) != (keyBits6(c.hi, c.bits, !c.split) == c.want) {
			t.Errorf("makeSlot6(%#x, %d): one meta for two keys, or two metas for one", c.hi, c.bits)
		}
	}
}
