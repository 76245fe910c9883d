package geocache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"time"

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

// A service holds its readiness probe until the database is resident, so
// that no request waits on a page fault.
func ExampleCache_WaitReady() {
	c, err := geocache.Open[geoip2.City]("testdata/maxmind/test-data/GeoIP2-City-Test.mmdb", nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	mux := http.NewServeMux()
	mux.Handle("/readyz", c.ReadyHandler()) // 503 until warm, then 200

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		panic(err)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	fmt.Println(rec.Code, c.Stats().Warmup.Phase)
	// Output: 200 done
}

// With Watch, replacing the file by rename (as geoipupdate does) swaps the
// new database in; lookups never pause.
func ExampleOptions_watch() {
	dir, err := os.MkdirTemp("", "geocache-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "GeoIP2.mmdb")
	replace := func(src string) { // write NAME.temporary, then rename over NAME
		b, err := os.ReadFile(src)
		if err != nil {
			panic(err)
		}
		os.WriteFile(path+".temporary", b, 0o644)
		os.Rename(path+".temporary", path)
	}
	replace("testdata/maxmind/test-data/GeoIP2-City-Test.mmdb")

	reloaded := make(chan error, 1)
	c, err := geocache.Open[any](path, &geocache.Options{
		Watch:         true,
		WatchDebounce: 50 * time.Millisecond,
		OnReload:      func(_ string, err error) { reloaded <- err },
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Println(c.Metadata().DatabaseType)

	replace("testdata/maxmind/test-data/GeoIP2-Country-Test.mmdb")
	if err := <-reloaded; err != nil {
		panic(err)
	}
	fmt.Println(c.Metadata().DatabaseType, c.Stats().Reloads)
	// Output:
	// GeoIP2-City
	// GeoIP2-Country 1
}
