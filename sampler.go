package geocache

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// The sampler that HitRatioAt estimates from (see mrc.go).
//
// Off the hit path: a sampled lookup (one in 64 at most, fewer for big
// budgets and as the traffic's objects grow) appends to a buffer of its
// P; a goroutine of the cache takes full buffers and keeps the trace. A
// hit that is not sampled pays one compare: its slot keeps the lower of its
// entry's and its record's hashes.

// sampleRef is one sampled lookup: the entry it used and the entry's
// record, each named if it is sampled.
type sampleRef struct {
	entry  uint64 // the entry's ristretto key; 0 if not sampled
	rec    uint64 // the record's data offset + 1; 0 if not sampled
	rcost  int32  // what the record costs
	eh, rh uint8  // their sampling hashes
	v6     bool   // an IPv6 entry (it costs more)
}

// The sampling: an object is sampled when its hash (8 bits) is below the
// limit, so the rate is limit/256. It starts at startLimit and drops while
// the trace names more objects than it follows.
const (
	maxSampleLimit = 4
	refsPerBuffer  = 128
	traceRefBytes  = int64(unsafe.Sizeof(traceRef{}))
	// sampledObjBytes is what the trace keeps for an object it follows:
	// a map slot, and the uses of it in the trace.
	sampledObjBytes = 64
)

// startLimit is the first sampling limit for a budget: 1 in 64 at 1 MiB,
// 1 in 128 at 2 MiB, 1 in 256 from 4 MiB. The trace holds a fixed number of
// uses, and it must span the traffic that competes for four times the
// budget, whose cache keeps objects across more lookups: sampled at 1 in
// 64, a 16 MiB cache's trace of GeoLite2-City traffic spanned too few
// lookups to see the tail that competes for 64 MiB, and its estimate for
// 64 MiB was 13 points too high. A lower rate needs more traffic before
// the estimate is ok.
func startLimit(maxCost int64) uint32 {
	return uint32(min(maxSampleLimit, max(1, (4<<20)/max(maxCost, 1))))
}

// traceLen is how many sampled uses the trace keeps, and maxSampled how
// many objects it follows, for a budget: enough for the estimate to err by
// a point or two, fewer for budgets too small to pay for them (see
// fixedCost).
func traceLen(maxCost int64) int   { return int(min(32768, max(2048, maxCost/256))) }
func maxSampled(maxCost int64) int { return int(min(4096, max(512, maxCost/2048))) }

// sampler gathers sampled lookups and feeds them to a reuseModel.
type sampler struct {
	limit   atomic.Uint32 // see maxSampleLimit
	dropped atomic.Int64  // sampled lookups dropped: the sampler's goroutine was behind
	bufs    []samplerBuf  // per P
	full    chan *[]sampleRef
	free    chan *[]sampleRef
	stop    chan struct{}
	done    chan struct{}
	lookups func() uint64 // lookups so far, sampled or not

	mu    sync.Mutex // guards trace
	trace trace
}

type samplerBuf struct {
	refs *[]sampleRef
	_    [64]byte
}

// samplerBuffers is how many buffers a sampler has for ps Ps.
func samplerBuffers(ps int) int { return 8*ps + 2 }

// newSampler starts a sampler for a cache of budget maxCost whose lookups
// are counted by lookups (called from the sampler's goroutine).
func newSampler(ps int, maxCost int64, lookups func() uint64) *sampler {
	s := &sampler{
		bufs:    make([]samplerBuf, ps),
		full:    make(chan *[]sampleRef, samplerBuffers(ps)),
		free:    make(chan *[]sampleRef, samplerBuffers(ps)),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		lookups: lookups,
	}
	s.trace = trace{refs: make([]traceRef, 0, traceLen(maxCost)), max: maxSampled(maxCost),
		limit: startLimit(maxCost), objs: map[uint64]*tracedObj{}}
	s.limit.Store(startLimit(maxCost))
	for range cap(s.free) {
		b := make([]sampleRef, 0, refsPerBuffer)
		s.free <- &b
	}
	go s.run()
	return s
}

// sampleHash is the sampling hash of an object whose key hashes to h (an
// entry's block hash, a record's ristretto key): its top 8 bits.
func sampleHash(h uint64) uint8 { return uint8(h >> 56) }

// sampled reports whether an object of hash h is sampled now.
func (s *sampler) sampled(h uint8) bool { return uint32(h) < s.limit.Load() }

// add appends r to b, and hands b over when it is full. It does not block
// or allocate: without a free buffer, or with the sampler's goroutine
// behind, it drops what it has (the model then misses some references,
// which only a sampler that cannot keep up would).
func (b *samplerBuf) add(s *sampler, r sampleRef) {
	if b.refs == nil {
		select {
		case b.refs = <-s.free:
		default:
			s.dropped.Add(1)
			return
		}
	}
	*b.refs = append(*b.refs, r)
	if len(*b.refs) == cap(*b.refs) {
		select {
		case s.full <- b.refs:
			b.refs = nil
		default:
			s.dropped.Add(int64(len(*b.refs)))
			*b.refs = (*b.refs)[:0]
		}
	}
}

func (s *sampler) run() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case p := <-s.full:
			at, dropped := s.lookups(), uint64(s.dropped.Load())
			s.mu.Lock()
			for _, r := range *p {
				s.trace.add(traceRef{sampleRef: r, at: at, dropped: dropped})
			}
			if l := s.trace.limit; l != s.limit.Load() {
				s.limit.Store(l)
			}
			s.mu.Unlock()
			*p = (*p)[:0]
			s.free <- p
		}
	}
}

func (s *sampler) close() {
	close(s.stop)
	<-s.done
}

// hitRatio is HitRatioAt for a budget whose items get itemBytes.
func (s *sampler) hitRatio(itemBytes int64) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trace.hitRatio(itemBytes)
}
