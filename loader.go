package geocache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocache/geocache/internal/pcpu"
)

// mapping is a database file's bytes, owned by geocache: mmapped read-only,
// or read into the heap. Owning it (rather than letting maxminddb map the
// file) lets warmup advise and measure the very pages lookups read, and lets
// Close decide when unmapping is safe.
type mapping struct {
	data   []byte
	mapped bool // data is an mmap that release must unmap
	path   string
}

// load maps (or, with inMemory or where mmap is unavailable, reads) the file.
func load(path string, inMemory bool) (*mapping, error) {
	mmap := mmapFile
	if inMemory {
		mmap = nil
	}
	return loadWith(path, mmap)
}

// loadWith maps the file at path with mmap (nil: reads it into memory),
// and reads it instead when mmap fails with errors.ErrUnsupported.
func loadWith(path string, mmap func(*os.File, int) ([]byte, error)) (*mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geocache: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("geocache: %w", err)
	}
	size := fi.Size()
	if size == 0 {
		return nil, fmt.Errorf("geocache: open %s: %w: file is empty", path, ErrInvalidDatabase)
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("geocache: open %s: file too large", path)
	}
	if mmap != nil {
		data, err := mmap(f, int(size))
		if err == nil {
			return &mapping{data: data, mapped: true, path: path}, nil
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			return nil, fmt.Errorf("geocache: %s: %w", path, err)
		}
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("geocache: read %s: %w", path, err)
	}
	return &mapping{data: data, path: path}, nil
}

// release unmaps the file. Only a retired generation's last user calls it.
func (m *mapping) release() error {
	if !m.mapped {
		m.data = nil
		return nil
	}
	m.mapped = false
	data := m.data
	m.data = nil
	return munmap(data)
}

// generation is one opened database with its own cache. A reload makes a
// new generation and retires the old one, so answers never mix databases.
type generation[T any] struct {
	m      *mapping
	reader *maxminddb.Reader
	store  *store[T]
	ipv4   bool // IPv4-only database
	unmap  bool // key IPv4-mapped addresses as IPv4 (see ipv4Aliased)

	// users counts lookups on the miss path (the only path that reads the
	// mapping or calls into ristretto), per P, so entering costs no
	// contended write. Cell.A is the count; retiring sets closing and waits
	// for the sum to reach zero.
	users   *pcpu.Cells
	closing atomic.Bool
	ctx     context.Context // done when retiring starts
	cancel  context.CancelFunc

	warm *warmer
}

// open builds a generation over m; it takes ownership of m.
func open[T any](m *mapping, o *Options) (*generation[T], error) {
	r, err := maxminddb.OpenBytes(m.data)
	if err != nil {
		m.release()
		return nil, fmt.Errorf("geocache: open %s: %w: %w", m.path, ErrInvalidDatabase, err)
	}
	if o.Verify {
		if err := r.Verify(); err != nil {
			m.release()
			return nil, fmt.Errorf("geocache: verify %s: %w: %w", m.path, ErrInvalidDatabase, err)
		}
	}
	if o.Mlock && m.mapped {
		if err := lockMemory(m.data); err != nil {
			m.release()
			return nil, err
		}
	}
	s, err := newStore[T](o.MaxCost)
	if err != nil {
		m.release()
		return nil, err
	}
	tree := int(r.Metadata.NodeCount * r.Metadata.RecordSize / 4)
	aliased, err := readTree(m, func() bool { return ipv4Aliased(m.data[:tree], r.Metadata) })
	if err != nil {
		s.close()
		m.release()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &generation[T]{
		ctx:    ctx,
		cancel: cancel,
		m:      m,
		reader: r,
		store:  s,
		ipv4:   r.Metadata.IPVersion == 4,
		unmap:  aliased,
		users:  pcpu.New(),
		warm:   newWarmer(m.data, tree),
	}, nil
}

// readTree runs f, which reads m, turning a fault into ErrFault.
func readTree(m *mapping, f func() bool) (v bool, err error) {
	defer setPanicOnFault(setPanicOnFault(true))
	defer guardFault(m.path, &err)
	return f(), nil
}

// key returns the form of ip that keys g's cache and asks its reader:
// IPv4-mapped addresses become IPv4 where the tree aliases them.
func (g *generation[T]) key(ip netip.Addr) netip.Addr {
	if g.unmap {
		return ip.Unmap()
	}
	return ip
}

// start gets g ready to serve, the one way a generation starts (Open and
// Reload alike): it pre-faults the mapping unless it is resident already
// (read into memory, or locked with mlock) or o.Warmup is WarmupOff,
// caches the hot set with hot (if not nil), calls ready (if not nil), then
// keeps the mapping warm every o.KeepWarm. With wait, or when there is
// nothing to pre-fault or cache, it does the steps up to ready on the
// calling goroutine and returns their error (ctx's); otherwise on the
// warmer's goroutine, which Close stops.
func (g *generation[T]) start(ctx context.Context, o *Options, hot func(context.Context), ready func(), wait bool) error {
	resident := !g.m.mapped || o.Mlock
	if resident {
		g.warm.setPhase(PhaseDone)
	}
	warm := !resident && o.Warmup != WarmupOff
	keep := o.KeepWarm
	if resident {
		keep = 0
	}
	boot := func(ctx context.Context) error {
		if warm {
			if err := g.warm.pass(ctx); err != nil {
				return err
			}
		}
		if hot != nil {
			phase := g.warm.getPhase()
			g.warm.setPhase(PhaseHotSet)
			hot(ctx)
			g.warm.setPhase(phase)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if ready != nil {
			ready()
		}
		return nil
	}
	if wait || (!warm && hot == nil) {
		if err := boot(ctx); err != nil {
			return err
		}
		boot = nil
	}
	g.warm.start(keep, boot)
	return nil
}

// within returns a context derived from ctx that is also done once g
// starts retiring, and its cancel function.
func (g *generation[T]) within(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(g.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// enter registers a user of the mapping and the store. It fails once the
// generation is retiring; the caller then retries on the current one.
// The returned cell must be passed to exit.
func (g *generation[T]) enter() (*pcpu.Cell, bool) {
	c := g.users.Local()
	c.A.Add(1)
	if g.closing.Load() {
		c.A.Add(-1)
		return nil, false
	}
	return c, true
}

func (g *generation[T]) exit(c *pcpu.Cell) { c.A.Add(-1) }

// current returns the serving generation with the caller entered as a
// user of it, so that Close waits for the caller before it unmaps; or
// ErrClosed. The caller passes the cell to g.exit.
func (c *Cache[T]) current() (*generation[T], *pcpu.Cell, error) {
	g := c.cur.Load()
	if g == nil {
		return nil, nil, ErrClosed
	}
	u, ok := g.enter()
	if !ok {
		return nil, nil, ErrClosed
	}
	return g, u, nil
}

// retire waits for the generation's last user, then closes its cache and
// unmaps its file. Cache hits never need the mapping, so they go on being
// served from the front table while this waits.
func (g *generation[T]) retire() error {
	if !g.closing.CompareAndSwap(false, true) {
		return nil
	}
	g.cancel()
	g.warm.stop() // nothing touches the mapping after this
	// A user increments its cell before it reads closing, and retire sets
	// closing before it reads the cells; with sequentially consistent
	// atomics one of the two sees the other, so no user is missed.
	for wait := time.Microsecond; ; wait = min(2*wait, time.Millisecond) {
		if n, _, _ := g.users.Sum(); n == 0 {
			break
		}
		time.Sleep(wait)
	}
	g.store.close()
	g.reader.Close()
	return g.m.release()
}
