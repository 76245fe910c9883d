package geocache

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
	"golang.org/x/sys/cpu"

	"github.com/geocache/geocache/internal/pcpu"
)

// generation is one opened database with its own cache. A reload makes a
// new generation and retires the old one, so answers never mix databases.
type generation[T any] struct {
	// Read by every hit, on a line of their own: the records' first
	// shard lock, next in memory, is written by misses and by ristretto's
	// goroutine, and a write to a line moves it away from every core that
	// reads it.
	front    *front[T]
	rootBits int  // see ipv4Aliased
	unmap    bool // key IPv4-mapped addresses as IPv4 (see ipv4Aliased)
	ipv4     bool // an IPv4-only database
	_        cpu.CacheLinePad

	recs records[T]

	m      *mapping
	reader *maxminddb.Reader
	store  *store[T]
	warm   *warmer

	// users counts lookups on the miss path (the only path that reads the
	// mapping or calls into ristretto), per P, so entering costs no
	// contended write; retiring sets closing and waits for the sum to
	// reach zero.
	users   *pcpu.Counters
	closing atomic.Bool
	ctx     context.Context // done when retiring starts
	cancel  context.CancelFunc
}

// usersActive is the counter of generation.users.
const usersActive pcpu.Counter = 0

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
	tree := min(int(r.Metadata.NodeCount*r.Metadata.RecordSize/4), len(m.data))
	var aliased bool
	var rootBits int
	if err := readMapping(m, func() { aliased, rootBits = ipv4Aliased(m.data[:tree], r.Metadata) }); err != nil {
		m.release()
		return nil, err
	}
	g := &generation[T]{
		rootBits: rootBits,
		unmap:    aliased,
		ipv4:     r.Metadata.IPVersion == 4,
		m:        m,
		reader:   r,
		warm:     newWarmer(m.data, tree),
		users:    pcpu.New(),
	}
	g.front = newFront[T](&g.recs)
	if g.store, err = newStore(o.MaxCost, g.front, &g.recs); err != nil {
		m.release()
		return nil, err
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g, nil
}

// readMapping runs f, which reads m, turning a fault into ErrFault.
func readMapping(m *mapping, f func()) (err error) {
	defer setPanicOnFault(setPanicOnFault(true))
	defer guardFault(m.path, &err)
	f()
	return nil
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
	c := g.users.Local(usersActive)
	c.Add(1)
	if g.closing.Load() {
		c.Add(-1)
		return nil, false
	}
	return c, true
}

func (g *generation[T]) exit(c *pcpu.Cell) { c.Add(-1) }

// retire waits for the generation's last user, then closes its cache and
// unmaps its file. Hits never need the mapping, so they go on being served
// from the first level while this waits.
func (g *generation[T]) retire() error {
	if !g.closing.CompareAndSwap(false, true) {
		return nil
	}
	g.cancel()
	g.warm.stop() // nothing touches the mapping after this
	// A user increments its cell before it reads closing, and retire sets
	// closing before it reads the cells; with sequentially consistent
	// atomics one of the two sees the other, so no user is missed.
	for wait := time.Microsecond; g.users.Sum(usersActive) != 0; wait = min(2*wait, time.Millisecond) {
		time.Sleep(wait)
	}
	g.store.close()
	g.reader.Close()
	return g.m.release()
}
