package geocache

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
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

// FuzzLookup asks arbitrary addresses (IPv4, IPv6, mapped, zoned, zero) of
// two databases, one whose tree aliases IPv4-mapped addresses to IPv4 and
// one whose tree does not, and checks every answer (network, found and
// record) against the uncached reader.
func FuzzLookup(f *testing.F) {
	type db struct {
		c *Cache[any]
		r *maxminddb.Reader
	}
	var dbs []db
	for _, path := range []string{
		"testdata/maxmind/test-data/GeoIP2-City-Test.mmdb",
		"testdata/maxmind/test-data/MaxMind-DB-test-metadata-pointers.mmdb",
	} {
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
		dbs = append(dbs, db{c, r})
		for res := range r.Networks() {
			p := res.Prefix()
			for _, a := range []netip.Addr{p.Addr(), lastIn(p)} {
				mapped := a.As16()
				f.Add(a.AsSlice(), "")
				f.Add(mapped[:], "")
			}
		}
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
		for _, d := range dbs {
			for pass := range 2 {
				got, err := d.c.Lookup(a)
				switch {
				case !a.IsValid() || a.Zone() != "":
					if !errors.Is(err, ErrInvalidAddress) {
						t.Fatalf("%v: want ErrInvalidAddress, got %v", a, err)
					}
					return
				case err != nil:
					t.Fatalf("pass %d: %v: %v", pass, a, err)
				}
				want := oracle(d.r, a)
				var rec any
				if err := want.Decode(&rec); err != nil {
					t.Fatal(err)
				}
				if !samePrefix(got.Prefix, want.Prefix()) || got.Found != want.Found() {
					t.Fatalf("pass %d: %v: cache %v %v, reader %v %v", pass, a, got.Prefix, got.Found, want.Prefix(), want.Found())
				}
				if got.Found && !reflect.DeepEqual(*got.Record, rec) {
					t.Fatalf("pass %d: %v: records differ:\ncache  %v\nreader %v", pass, a, *got.Record, rec)
				}
			}
		}
	})
}
