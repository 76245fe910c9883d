package geocache

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocache/geocache/internal/mmdbtest"
	"github.com/geocache/geocache/internal/workload"
)

var generated sync.Map // mmdbtest.Spec -> []byte

// genDB writes the database generated from spec to a temporary file. Each
// spec is generated once per test binary.
func genDB(tb testing.TB, spec mmdbtest.Spec) string {
	tb.Helper()
	v, ok := generated.Load(spec)
	if !ok {
		b, err := mmdbtest.Generate(spec)
		if err != nil {
			tb.Fatal(err)
		}
		v, _ = generated.LoadOrStore(spec, b)
	}
	path := filepath.Join(tb.TempDir(), "generated.mmdb")
	if err := os.WriteFile(path, v.([]byte), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// openReader opens the uncached reference reader the cache is checked
// against.
func openReader(tb testing.TB, path string) *maxminddb.Reader {
	tb.Helper()
	r, err := maxminddb.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// lastIn returns the last address of p.
func lastIn(p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	for i := 128 - p.Addr().BitLen() + p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}

// oracle returns the uncached reader's answer for a, the answer Lookup
// promises: the reader's own, except that an IPv4-only database (which
// refuses every IPv6 form) answers an IPv4-mapped address as IPv4.
func oracle(r *maxminddb.Reader, a netip.Addr) maxminddb.Result {
	if r.Metadata.IPVersion == 4 {
		a = a.Unmap()
	}
	return r.Lookup(a)
}

// samePrefix reports whether got, the network the cache answered with, is
// want, the reader's: equal, or the IPv4 form of an IPv4-mapped network
// (1.2.3.0/24 for ::ffff:1.2.3.0/120).
func samePrefix(got, want netip.Prefix) bool {
	if got == want {
		return true
	}
	return got.Addr().Is4() && want.Addr().Is4In6() &&
		netip.PrefixFrom(netip.AddrFrom16(got.Addr().As16()), got.Bits()+96) == want
}

// sampleAddrs returns n seeded addresses that exercise a database: inside
// its networks (half), their first and last addresses, uniformly random
// IPv4 and IPv6 (mostly misses or large networks), and IPv4-mapped forms of
// random addresses and of network boundaries.
func sampleAddrs(seed uint64, nets []netip.Prefix, n int, ipv6 bool) []netip.Addr {
	r := rand.New(rand.NewPCG(seed, 1))
	addrs := make([]netip.Addr, 0, n)
	for len(addrs) < n {
		var a netip.Addr
		switch k := r.IntN(11); {
		case k < 5 && len(nets) > 0:
			a = workload.RandomIn(r, nets[r.IntN(len(nets))])
		case k == 5 && len(nets) > 0:
			a = nets[r.IntN(len(nets))].Addr()
		case k == 6 && len(nets) > 0:
			a = lastIn(nets[r.IntN(len(nets))])
		case k == 7 && ipv6:
			a = workload.RandomIn(r, netip.MustParsePrefix("::/0"))
		case k == 8:
			a = netip.AddrFrom16(workload.RandomIn(r, netip.MustParsePrefix("0.0.0.0/0")).As16()) // IPv4-mapped
		case k == 9 && len(nets) > 0:
			p := nets[r.IntN(len(nets))]
			a = p.Addr()
			if r.IntN(2) == 0 {
				a = lastIn(p)
			}
			a = netip.AddrFrom16(a.As16()) // mapped, if IPv4
		default:
			a = workload.RandomIn(r, netip.MustParsePrefix("0.0.0.0/0"))
		}
		if !ipv6 && a.Is6() && !a.Is4In6() {
			continue
		}
		addrs = append(addrs, a)
	}
	return addrs
}

// rebuiltCopy writes a copy of the database at path whose metadata gives
// another build time: every answer the same, but not the same file, as
// when a weekly update changed nothing that the traffic asks.
func rebuiltCopy(tb testing.TB, path string) string {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	i := bytes.LastIndex(data, []byte("build_epoch"))
	if i < 0 {
		tb.Fatal("no build_epoch in the metadata")
	}
	data[i+len("build_epoch")+2]++ // past the control and type bytes: the epoch's top byte
	r0, err0 := maxminddb.Open(path)
	r1, err1 := maxminddb.OpenBytes(data)
	if err0 != nil || err1 != nil || r0.Metadata.BuildEpoch == r1.Metadata.BuildEpoch {
		tb.Fatalf("rebuilt copy: %v %v", err0, err1)
	}
	r0.Close()
	out := filepath.Join(tb.TempDir(), "rebuilt-"+filepath.Base(path))
	if err := os.WriteFile(out, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return out
}
