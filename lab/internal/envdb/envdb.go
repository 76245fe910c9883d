// Package envdb opens the database that the lab's benchmarks measure: the
// file GEOCACHE_MMDB names.
package envdb

import (
	"os"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Open returns the path in GEOCACHE_MMDB and a reader over it, closed when
// tb ends. It skips tb if GEOCACHE_MMDB is not set.
func Open(tb testing.TB) (string, *maxminddb.Reader) {
	tb.Helper()
	path := os.Getenv("GEOCACHE_MMDB")
	if path == "" {
		tb.Skip("GEOCACHE_MMDB is not set")
	}
	r, err := maxminddb.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return path, r
}
