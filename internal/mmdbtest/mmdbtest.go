// Package mmdbtest writes realistic MaxMind DB files for tests, fuzzing and
// benchmarks: tens of thousands of overlapping networks of mixed lengths,
// IPv4 and IPv6, over a smaller pool of GeoIP2-City-shaped records that
// many networks share, as in the real databases.
package mmdbtest

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Spec describes a database to generate. The zero value is usable.
type Spec struct {
	Seed     uint64
	Networks int // networks inserted (overlaps split some); default 40,000
	Records  int // distinct records; default Networks/8
	IPv4Only bool
	// RecordSize is the search tree's record size: 24, 28 (default) or 32.
	RecordSize int
	// NoIPv4Alias leaves ::ffff:0:0/96 out of the IPv4 subtree, as
	// mmdbwriter's DisableIPv4Aliasing does, and puts networks of their own
	// there (with records of their own), so that an IPv4-mapped address and
	// its IPv4 form have different answers.
	NoIPv4Alias bool
}

// Lengths as in GeoLite2-City: IPv4 networks mostly /20 to /30, IPv6 from
// /29 to /64 with a tail to /128. Weighted draws from these tables.
var (
	v4Lengths = weighted{{16, 2}, {18, 2}, {19, 3}, {20, 5}, {21, 10}, {22, 12}, {23, 14}, {24, 20}, {25, 9}, {26, 5}, {27, 4}, {28, 4}, {29, 5}, {30, 6}, {31, 1}, {32, 2}}
	v6Lengths = weighted{{29, 3}, {32, 6}, {36, 3}, {40, 4}, {44, 5}, {47, 5}, {48, 8}, {50, 5}, {52, 3}, {56, 3}, {60, 2}, {64, 3}, {80, 1}, {96, 1}, {112, 1}, {128, 1}}
)

type weighted [][2]int

func (w weighted) draw(r *rand.Rand) int {
	total := 0
	for _, x := range w {
		total += x[1]
	}
	n := r.IntN(total)
	for _, x := range w {
		if n -= x[1]; n < 0 {
			return x[0]
		}
	}
	return w[len(w)-1][0]
}

// Generate returns the bytes of a database built to spec.
func Generate(s Spec) ([]byte, error) {
	if s.Networks == 0 {
		s.Networks = 40_000
	}
	if s.Records == 0 {
		s.Records = max(s.Networks/8, 1)
	}
	ipVersion := 6
	if s.IPv4Only {
		ipVersion = 4
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "GeoIP2-City",
		Description:             map[string]string{"en": "geocache generated test database"},
		Languages:               []string{"en", "de"},
		IPVersion:               ipVersion,
		RecordSize:              cmp.Or(s.RecordSize, 28),
		IncludeReservedNetworks: true,
		DisableIPv4Aliasing:     s.NoIPv4Alias,
		BuildEpoch:              1_700_000_000 + int64(s.Seed),
	})
	if err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(s.Seed, 0x9e3779b97f4a7c15))
	records := make([]mmdbtype.Map, s.Records)
	for i := range records {
		records[i] = cityRecord(r, i)
	}
	for i := range s.Networks {
		p := randomNetwork(r, s.IPv4Only || i%4 != 0)
		ipnet := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := tree.Insert(ipnet, records[r.IntN(len(records))]); err != nil {
			return nil, fmt.Errorf("insert %s: %w", p, err)
		}
	}
	if s.NoIPv4Alias && !s.IPv4Only {
		for range s.Networks / 16 {
			v4 := randomNetwork(r, true)
			a := netip.AddrFrom16(v4.Addr().As16())
			ipnet := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(96+v4.Bits(), 128)}
			if err := tree.Insert(ipnet, records[r.IntN(len(records))]); err != nil {
				return nil, fmt.Errorf("insert %s: %w", ipnet, err)
			}
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// randomNetwork returns a network with a realistic length. IPv4 networks
// come from 1.0.0.0/8 to 223.0.0.0/8 but are clustered in a few /8s, so
// they overlap and split each other as in real data. IPv6 networks come from
// 2000::/3, outside 2002::/16 where the writer aliases IPv4.
func randomNetwork(r *rand.Rand, v4 bool) netip.Prefix {
	if v4 {
		var b [4]byte
		b[0] = byte(1 + r.IntN(24)*9)
		b[1], b[2], b[3] = byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))
		p, _ := netip.AddrFrom4(b).Prefix(v4Lengths.draw(r))
		return p
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	b[0] = 0x20 | byte(r.IntN(2))<<1 // 2000:: or 2a00::-ish, never 2002::/16
	b[1] = byte(r.IntN(16)) << 4
	if b[0] == 0x20 && b[1] == 0x00 {
		b[1] = 0x10
	}
	p, _ := netip.AddrFrom16(b).Prefix(v6Lengths.draw(r))
	return p
}

var countries = []struct {
	iso, en, de string
	geonameID   uint32
}{
	{"GB", "United Kingdom", "Vereinigtes Königreich", 2635167},
	{"US", "United States", "Vereinigte Staaten", 6252001},
	{"DE", "Germany", "Deutschland", 2921044},
	{"JP", "Japan", "Japan", 1861060},
	{"BR", "Brazil", "Brasilien", 3469034},
	{"FR", "France", "Frankreich", 3017382},
}

// cityRecord returns a record with the shape and size of a GeoIP2-City one.
func cityRecord(r *rand.Rand, i int) mmdbtype.Map {
	c := countries[r.IntN(len(countries))]
	names := func(en, de string) mmdbtype.Map {
		return mmdbtype.Map{"en": mmdbtype.String(en), "de": mmdbtype.String(de)}
	}
	city := fmt.Sprintf("City %d", i)
	return mmdbtype.Map{
		"city": mmdbtype.Map{
			"geoname_id": mmdbtype.Uint32(1_000_000 + i),
			"names":      names(city, city+"stadt"),
		},
		"continent": mmdbtype.Map{
			"code":       mmdbtype.String("EU"),
			"geoname_id": mmdbtype.Uint32(6255148),
			"names":      names("Europe", "Europa"),
		},
		"country": mmdbtype.Map{
			"iso_code":   mmdbtype.String(c.iso),
			"geoname_id": mmdbtype.Uint32(c.geonameID),
			"names":      names(c.en, c.de),
		},
		"location": mmdbtype.Map{
			"accuracy_radius": mmdbtype.Uint16(1 + r.IntN(500)),
			"latitude":        mmdbtype.Float64(r.Float64()*180 - 90),
			"longitude":       mmdbtype.Float64(r.Float64()*360 - 180),
			"time_zone":       mmdbtype.String("Europe/London"),
		},
		"postal": mmdbtype.Map{"code": mmdbtype.String(fmt.Sprintf("P%05d", r.IntN(100000)))},
		"subdivisions": mmdbtype.Slice{
			mmdbtype.Map{
				"iso_code":   mmdbtype.String(fmt.Sprintf("S%d", r.IntN(50))),
				"geoname_id": mmdbtype.Uint32(r.IntN(1 << 20)),
				"names":      names("Region", "Region"),
			},
		},
	}
}
