package geocache_test

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/geoip2-golang/v2"

	"github.com/geocache/geocache"
)

func ExampleOpen() {
	c, err := geocache.Open[geoip2.City]("testdata/maxmind/test-data/GeoIP2-City-Test.mmdb", nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	res, err := c.Lookup(netip.MustParseAddr("81.2.69.160"))
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Found, res.Prefix, res.Record.City.Names.English, res.Record.Country.ISOCode)
	// Output: true 81.2.69.160/27 London GB
}

// A struct with maxminddb tags decodes only the fields it names, which
// makes records smaller and misses faster.
func ExampleOpen_customStruct() {
	type place struct {
		Country struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"country"`
		Location struct {
			TimeZone string `maxminddb:"time_zone"`
		} `maxminddb:"location"`
	}
	c, err := geocache.Open[place]("testdata/maxmind/test-data/GeoIP2-City-Test.mmdb", nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	for _, s := range []string{"81.2.69.160", "::ffff:81.2.69.160", "10.0.0.1"} {
		res, _ := c.Lookup(netip.MustParseAddr(s))
		if res.Found {
			fmt.Println(s, res.Prefix, res.Record.Country.ISOCode, res.Record.Location.TimeZone)
		} else {
			fmt.Println(s, res.Prefix, "not found")
		}
	}
	// Output:
	// 81.2.69.160 81.2.69.160/27 GB Europe/London
	// ::ffff:81.2.69.160 81.2.69.160/27 GB Europe/London
	// 10.0.0.1 10.0.0.0/8 not found
}
