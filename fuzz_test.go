package geocache

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// FuzzOpen feeds untrusted bytes to OpenBytes and looks a few addresses up
// in whatever opens: errors, never a panic, and every error typed.
func FuzzOpen(f *testing.F) {
	for _, pattern := range []string{"testdata/maxmind/test-data/*.mmdb", "testdata/maxmind/bad-data/*/*.mmdb"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
	f.Add([]byte{})
	f.Add([]byte("\xab\xcd\xefMaxMind.com"))
	addrs := []netip.Addr{
		netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("81.2.69.160"),
		netip.MustParseAddr("::1.1.1.1"), netip.MustParseAddr("2001:218::1"),
		netip.MustParseAddr("::ffff:1.2.3.4"), netip.MustParseAddr("255.255.255.255"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A hang is a failure too: the fuzzer keeps the input.
		timer := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("Open and lookups of %d bytes took over 5s", len(data))) })
		defer timer.Stop()
		c, err := OpenBytes[any](data, &Options{MaxCost: 1 << 20})
		if err != nil {
			if !errors.Is(err, ErrInvalidDatabase) {
				t.Fatalf("untyped Open error: %v", err)
			}
			return
		}
		defer c.Close()
		for _, a := range addrs {
			for range 2 { // the second may be a hit
				if _, err := c.Lookup(a); err != nil {
					var le *LookupError
					if !errors.As(err, &le) || le.Addr != a {
						t.Fatalf("untyped Lookup error: %v", err)
					}
				}
			}
		}
	})
}

// FuzzLookup asks the City test database arbitrary addresses (IPv4,
// IPv6, mapped, zoned, zero) and checks every answer against the uncached
// reader.
func FuzzLookup(f *testing.F) {
	const path = "testdata/maxmind/test-data/GeoIP2-City-Test.mmdb"
	c, err := Open[any](path, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	r, err := maxminddb.Open(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	for res := range r.Networks() {
		p := res.Prefix()
		f.Add(p.Addr().AsSlice(), "")
		f.Add(lastIn(p).AsSlice(), "")
	}
	f.Add([]byte{}, "")
	f.Add(make([]byte, 16), "")
	f.Add([]byte{0xfe, 0x80, 15: 1}, "eth0")
	f.Add([]byte{10: 0xff, 11: 0xff, 12: 81, 13: 2, 14: 69, 15: 160}, "")
	f.Fuzz(func(t *testing.T, b []byte, zone string) {
		a, ok := netip.AddrFromSlice(b)
		if ok && a.Is6() {
			a = a.WithZone(zone)
		}
		for pass := range 2 {
			got, err := c.Lookup(a)
			switch {
			case !a.IsValid() || a.Zone() != "":
				if !errors.Is(err, ErrInvalidAddress) {
					t.Fatalf("%v: want ErrInvalidAddress, got %v", a, err)
				}
				return
			case err != nil:
				t.Fatalf("pass %d: %v: %v", pass, a, err)
			}
			want := r.Lookup(a.Unmap())
			if got.Prefix != want.Prefix() || got.Found != want.Found() {
				t.Fatalf("pass %d: %v: cache %v %v, reader %v %v", pass, a, got.Prefix, got.Found, want.Prefix(), want.Found())
			}
		}
	})
}
