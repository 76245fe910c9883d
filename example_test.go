package geocache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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

// geoKey is the request-context key under which geoMiddleware stores the
// client's record.
type geoKey struct{}

// geoMiddleware geolocates the client of each request and puts the record
// (nil when not found) in the request's context. The client is the peer
// of the connection, unless that peer is a trusted proxy: then it is the
// rightmost X-Forwarded-For address that is not itself a trusted proxy.
// Addresses left of it were written by the client and can be forged.
func geoMiddleware(c *geocache.Cache[geoip2.City], trusted []netip.Prefix, next http.Handler) http.Handler {
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := netip.Addr{}
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			client = ap.Addr().WithZone("")
		}
		if client.IsValid() && isTrusted(client) {
			hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
			for i := len(hops) - 1; i >= 0; i-- {
				a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
				if err != nil {
					break // a malformed hop: trust nothing further left
				}
				client = a.WithZone("")
				if !isTrusted(client) {
					break
				}
			}
		}
		var rec *geoip2.City
		if res, err := c.Lookup(client); err == nil && res.Found {
			rec = res.Record
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), geoKey{}, rec)))
	})
}

// An HTTP middleware puts the client's record in the request context,
// honouring X-Forwarded-For only from trusted proxies.
func Example_middleware() {
	c, err := geocache.Open[geoip2.City]("testdata/maxmind/test-data/GeoIP2-City-Test.mmdb", nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} // the load balancers
	h := geoMiddleware(c, trusted, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, _ := r.Context().Value(geoKey{}).(*geoip2.City); rec != nil {
			fmt.Fprintf(w, "%s", rec.Country.ISOCode)
		} else {
			fmt.Fprint(w, "unknown")
		}
	}))
	for _, tc := range []struct{ peer, xff string }{
		{"10.1.2.3:4711", "203.0.113.9, 81.2.69.160"}, // via the proxy: the client is 81.2.69.160
		{"10.1.2.3:4711", "81.2.69.160, 10.9.9.9"},    // two proxies deep
		{"175.16.199.1:4711", "81.2.69.160"},          // not a proxy: the header is ignored
		{"10.1.2.3:4711", ""},                         // the proxy itself
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = tc.peer
		if tc.xff != "" {
			req.Header.Set("X-Forwarded-For", tc.xff)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Body.String())
	}
	// Output:
	// GB
	// GB
	// CN
	// unknown
}

// Options.HotSetFile carries the hot set across restarts: Close writes it,
// and the next Open looks it up before Ready, so the first requests after
// a restart hit the cache.
func ExampleOptions_hotSetFile() {
	dir, err := os.MkdirTemp("", "geocache-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	opts := &geocache.Options{HotSetFile: filepath.Join(dir, "hotset")}
	const db = "testdata/maxmind/test-data/GeoIP2-City-Test.mmdb"
	london := netip.MustParseAddr("81.2.69.160")

	c, err := geocache.Open[geoip2.City](db, opts)
	if err != nil {
		panic(err)
	}
	c.Lookup(london) // a miss: the first lookup of its network
	c.Close()        // writes the hot set

	c, err = geocache.Open[geoip2.City](db, opts) // a restart
	if err != nil {
		panic(err)
	}
	defer c.Close()
	c.WaitReady(context.Background())
	c.Lookup(london)
	st := c.Stats()
	fmt.Println("hits", st.Hits, "misses", st.Misses)
	// Output: hits 1 misses 0
}
