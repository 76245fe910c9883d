package geocache

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Why warm up: a lookup that lands on a page of the mapping that is not in
// memory takes a major page fault, and a fault is not a syscall: the
// goroutine keeps its P while the kernel reads the disk, so at small
// GOMAXPROCS a few cold lookups stall every goroutine of the process.
// madvise(MADV_POPULATE_READ) does the same reads inside a syscall, which
// releases the P. Warmup runs those reads on its own goroutine, search tree
// first (every lookup walks it), then the data section, so that no fault is
// left for the request path.

// WarmupPhase is what the warmup of the database being served is doing.
type WarmupPhase string

// The warmup phases, in the order a warmup goes through them.
const (
	PhaseOff     WarmupPhase = "off"     // not started: Options.Warmup is WarmupOff
	PhaseTree    WarmupPhase = "tree"    // pre-faulting the search tree
	PhaseData    WarmupPhase = "data"    // pre-faulting the data section
	PhaseHotSet  WarmupPhase = "hotset"  // caching the hot set (Options.HotSetFile, or a reload's)
	PhaseDone    WarmupPhase = "done"    // resident: pre-faulted, read into memory, or locked
	PhaseStopped WarmupPhase = "stopped" // Close or a cancelled Warm ended it early
)

func (p WarmupPhase) String() string { return string(p) }

// WarmupStats is a snapshot of a warmup's progress.
type WarmupStats struct {
	Phase    WarmupPhase
	Bytes    int64         // bytes pre-faulted so far in this pass
	Total    int64         // bytes of the file
	Elapsed  time.Duration // time the first pass took, or has taken so far
	Passes   uint64        // completed passes: the first, then keep-warm re-faults
	Refaults int64         // bytes keep-warm found evicted and faulted in again
	// Fallbacks counts chunks pre-faulted by reading a byte per page,
	// where the kernel lacks MADV_POPULATE_READ (before Linux 5.14).
	Fallbacks int64
}

// warmChunk is how much one madvise call pre-faults: large enough to keep
// syscalls few, small enough to stop promptly on Close.
const warmChunk = 4 << 20

// warmer pre-faults one generation's mapping.
type warmer struct {
	data     []byte
	treeSize int

	cancel context.CancelFunc
	wg     sync.WaitGroup

	phase    atomic.Value // WarmupPhase
	bytes    atomic.Int64
	passes   atomic.Uint64
	refaults atomic.Int64
	fallback atomic.Int64 // chunks pre-faulted by touching pages (no POPULATE_READ)
	started  atomic.Int64 // unix ns when the current pass started
	elapsed  atomic.Int64 // ns, set when the first pass ends
}

func newWarmer(data []byte, treeSize int) *warmer {
	w := &warmer{data: data, treeSize: min(treeSize, len(data))}
	w.setPhase(PhaseOff)
	return w
}

func (w *warmer) setPhase(p WarmupPhase) { w.phase.Store(p) }

func (w *warmer) getPhase() WarmupPhase { return w.phase.Load().(WarmupPhase) }

// start runs boot (if not nil), then keep-warm passes every keep (if
// keep > 0), on a goroutine that stop ends.
func (w *warmer) start(keep time.Duration, boot func(context.Context) error) {
	if boot == nil && keep <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if boot != nil {
			if err := boot(ctx); err != nil {
				return
			}
		}
		if keep <= 0 {
			return
		}
		t := time.NewTicker(keep)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				w.keepWarm(ctx)
			}
		}
	}()
}

// stop ends the goroutine and waits for it: after stop nothing touches the
// mapping, so it may be unmapped.
func (w *warmer) stop() {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
	if p := w.getPhase(); p == PhaseTree || p == PhaseData {
		w.setPhase(PhaseStopped)
	}
}

// pass pre-faults the whole file, tree first.
func (w *warmer) pass(ctx context.Context) (err error) {
	defer setPanicOnFault(setPanicOnFault(true)) // the touch fallback reads the mapping
	defer guardFault("", &err)
	start := time.Now()
	w.started.Store(start.UnixNano())
	w.bytes.Store(0)
	// madvise wants page-aligned addresses: the tree phase ends on the
	// page that holds the tree's last byte.
	page := os.Getpagesize()
	tree := min((w.treeSize+page-1)/page*page, len(w.data))
	for _, ph := range []struct {
		name     WarmupPhase
		from, to int
	}{{PhaseTree, 0, tree}, {PhaseData, tree, len(w.data)}} {
		w.setPhase(ph.name)
		for off := ph.from; off < ph.to; off += warmChunk {
			if err := ctx.Err(); err != nil {
				w.setPhase(PhaseStopped)
				return err
			}
			end := min(off+warmChunk, ph.to)
			// An error (a file truncated under us) leaves the chunk to
			// fault on demand, where fill turns the fault into ErrFault.
			if fb, _ := populate(w.data[off:end]); fb {
				w.fallback.Add(1)
			}
			w.bytes.Add(int64(end - off))
		}
	}
	w.elapsed.Store(int64(time.Since(start)))
	w.setPhase(PhaseDone)
	w.passes.Add(1)
	return nil
}

// keepWarm faults in again what memory pressure evicted since the last
// pass, found page by page with mincore.
func (w *warmer) keepWarm(ctx context.Context) {
	resident, err := residentPages(w.data)
	if err != nil {
		return
	}
	page := os.Getpagesize()
	for i := 0; i < len(resident); {
		if resident[i] {
			i++
			continue
		}
		j := i
		for j < len(resident) && !resident[j] && (j-i)*page < warmChunk {
			j++
		}
		if ctx.Err() != nil {
			return
		}
		lo, hi := i*page, min(j*page, len(w.data))
		if _, err := populate(w.data[lo:hi]); err == nil {
			w.refaults.Add(int64(hi - lo))
		}
		i = j
	}
	w.passes.Add(1)
}

func (w *warmer) stats() WarmupStats {
	st := WarmupStats{
		Phase:     w.getPhase(),
		Bytes:     w.bytes.Load(),
		Total:     int64(len(w.data)),
		Passes:    w.passes.Load(),
		Refaults:  w.refaults.Load(),
		Fallbacks: w.fallback.Load(),
	}
	if e := w.elapsed.Load(); e > 0 {
		st.Elapsed = time.Duration(e)
	} else if t := w.started.Load(); t != 0 && (st.Phase == PhaseTree || st.Phase == PhaseData) {
		st.Elapsed = time.Since(time.Unix(0, t))
	}
	return st
}

// residency returns the resident fraction of data.
func residency(data []byte) (float64, error) {
	if len(data) == 0 {
		return 1, nil
	}
	pages, err := residentPages(data)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range pages {
		if r {
			n++
		}
	}
	return float64(n) / float64(len(pages)), nil
}

// readiness is a Cache's Ready channel: closed once the database being
// served is ready, or the cache closed. It belongs to the cache, not to a
// database: a reload swaps in only a database that is ready, so readiness
// carries over, and a caller waiting through a reload is not lost.
type readiness struct {
	ch   chan struct{}
	once sync.Once
}

func newReadiness() *readiness { return &readiness{ch: make(chan struct{})} }

func (r *readiness) mark() { r.once.Do(func() { close(r.ch) }) }

// Ready returns a channel that is closed once the database being served is
// resident in memory (the first warmup pass is done, or there is nothing
// to warm: Options.InMemory, Mlock, WarmupOff) and the hot set of
// Options.HotSetFile, if any, is cached. It stays closed: a reload swaps
// in only a database that is ready. Close closes it too (Lookup then
// returns ErrClosed).
func (c *Cache[T]) Ready() <-chan struct{} { return c.ready.ch }

// WaitReady blocks until Ready is closed or ctx is done, and returns nil,
// ctx's error, or ErrClosed if the cache is closed.
func (c *Cache[T]) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready.ch:
		if c.cur.Load() == nil {
			return ErrClosed
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Warm pre-faults the whole mapping now, on the calling goroutine, and
// closes Ready when done. It is what Open's warmup runs; call it with
// WarmupOff to choose the moment, or to see progress in Stats as it runs.
func (c *Cache[T]) Warm(ctx context.Context) error {
	g, u, err := c.current()
	if err != nil {
		return err
	}
	defer g.exit(u)
	if g.m.mapped {
		ctx, cancel := g.within(ctx)
		defer cancel()
		if err := g.warm.pass(ctx); err != nil {
			return err
		}
	}
	c.ready.mark()
	return nil
}

// Residency returns the fraction of the database file's pages that are in
// memory now (mincore). A database read into memory reports 1.
func (c *Cache[T]) Residency() (float64, error) {
	g, u, err := c.current()
	if err != nil {
		return 0, err
	}
	defer g.exit(u)
	if !g.m.mapped {
		return 1, nil
	}
	return residency(g.m.data)
}

// ReadyHandler returns an http.Handler for a readiness probe: 503 while
// the database is warming (with the progress in the body), 200 once Ready
// is closed, 503 after Close.
func (c *Cache[T]) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		g := c.cur.Load()
		if g == nil {
			http.Error(w, "closed", http.StatusServiceUnavailable)
			return
		}
		select {
		case <-c.ready.ch:
			fmt.Fprintln(w, "ready")
		default:
			st := g.warm.stats()
			http.Error(w, fmt.Sprintf("warming: %s %d/%d bytes", st.Phase, st.Bytes, st.Total), http.StatusServiceUnavailable)
		}
	})
}
