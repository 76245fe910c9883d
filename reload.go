package geocache

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
)

// Why reload this way: MMDB files are replaced weekly (geoipupdate writes
// NAME.temporary and renames it over the old file), and a service must
// pick the new one up without a restart, a pause, or a crash. A reload
// builds a complete new generation (mapping, reader, cache) beside the
// serving one, warms it, fills its cache with what is hot now, and swaps
// one pointer. Lookups in flight finish on the old generation, which is
// unmapped when its last reader is done; answers never mix the two.

// Reload replaces the database being served with the file at path (empty:
// the file last opened). It opens and checks the new file (its metadata,
// lookups of a few addresses across the space, and with Options.Verify
// the reader's full structural check, 7-14 s for GeoLite2-City), pre-faults it
// (unless Options.Warmup is WarmupOff), looks the networks that are hot in
// the current cache up again in it (paced to Options.ReloadCPU, so it
// takes seconds rather than the serving cores), and then swaps it in
// atomically. A
// file byte-identical to the one serving is not swapped in: the serving
// database and its cache go on (counted in Stats.Unchanged). On
// error the current database keeps serving. Reload returns once the old
// database is unmapped, which waits for lookups still reading it.
// Concurrent calls are serialized.
func (c *Cache[T]) Reload(path string) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	err := c.reload(path)
	c.reported(path, err)
	return err
}

func (c *Cache[T]) reload(path string) error {
	old := c.cur.Load()
	if old == nil {
		return ErrClosed
	}
	if path == "" {
		if path = c.path; path == "" {
			return ErrNoPath
		}
	}
	m, err := load(path, c.opts.InMemory)
	if err != nil {
		return err
	}
	if sameBytes(old.m, m) {
		m.release()
		c.path = path
		c.unchanged.Add(1)
		return nil
	}
	g, err := open[T](m, &c.opts)
	if err != nil {
		return err
	}
	if err := g.sanity(); err != nil {
		g.retire()
		return err
	}
	hot := func(ctx context.Context) { g.prewarm(ctx, old.front.hot, c.opts.ReloadCPU) }
	if err := g.start(c.ctx, &c.opts, hot, nil, true); err != nil {
		g.retire()
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return err
	}
	if !c.cur.CompareAndSwap(old, g) {
		g.retire()
		return ErrClosed
	}
	c.ready.mark() // g is ready: Open's warmup may still have been running
	c.path = path
	c.reloads.Add(1)
	return old.retire()
}

// sameBytes reports whether b holds the same database as a, byte for byte.
// Reloads on a timer, and watchers that see a touch or chmod, often find
// the file unchanged; the serving generation then goes on, with its warm
// cache, and the reload costs one comparison (~10 ms for GeoLite2-City).
// A fault (the serving file truncated under its mapping, the usual reason
// to reload) makes them different.
func sameBytes(a, b *mapping) (same bool) {
	if len(a.data) != len(b.data) {
		return false
	}
	defer setPanicOnFault(setPanicOnFault(true))
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	// The metadata, at the end, holds the build time, which every new
	// edition changes: comparing it first makes a changed file cheap.
	tail := max(len(a.data)-64<<10, 0)
	return bytes.Equal(a.data[tail:], b.data[tail:]) && bytes.Equal(a.data[:tail], b.data[:tail])
}

// sanityAddrs spread over the address space; a database that answers
// them without error has a walkable tree and decodable records.
var sanityAddrs = []netip.Addr{
	netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("81.2.69.160"),
	netip.MustParseAddr("128.101.101.101"), netip.MustParseAddr("223.255.255.255"),
	netip.MustParseAddr("2001:4860::8888"), netip.MustParseAddr("2a02:ff0::1"),
}

// sanity looks sanityAddrs up and decodes them, so that a file whose
// metadata parses but whose tree or data is broken fails the reload
// instead of the traffic after it.
func (g *generation[T]) sanity() (err error) {
	defer setPanicOnFault(setPanicOnFault(true))
	defer guardFault(g.m.path, &err)
	for _, a := range sanityAddrs {
		if g.ipv4 && a.Is6() {
			continue
		}
		var v T
		if err := g.reader.Lookup(a).Decode(&v); err != nil {
			return fmt.Errorf("%w: %s: lookup %s: %w", ErrInvalidDatabase, g.m.path, a, err)
		}
	}
	return nil
}

// reported logs a reload's outcome and counts failures.
func (c *Cache[T]) reported(path string, err error) {
	if path == "" {
		path = c.path
	}
	if err != nil {
		c.reloadFailures.Add(1)
	}
	if l := c.opts.Logger; l != nil {
		if g := c.cur.Load(); err != nil || g == nil {
			l.Error("geocache: reload failed; the previous database keeps serving", "path", path, "err", err)
		} else {
			md := g.reader.Metadata
			l.Info("geocache: reloaded", "path", path, "type", md.DatabaseType, "build", md.BuildTime().UTC())
		}
	}
	if f := c.opts.OnReload; f != nil {
		f(path, err)
	}
}
