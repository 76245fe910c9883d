package geocache

import (
	"cmp"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Why the cache estimates other budgets: a service cannot know its hot set
// (how many networks and records its traffic keeps asking for, and what
// they cost), and the hit ratio a budget buys is a curve of it. The cache
// sees every lookup, so it can measure that curve as it serves. It samples
// entries and records spatially, as SHARDS does (Waldspurger et al.,
// "Efficient MRC Construction with SHARDS", FAST '15: an object is sampled
// when its hash is below a limit, so every use of a sampled object is
// seen), and keeps the recent sampled uses. To estimate a budget it runs a
// miniature cache over them, the budget scaled by the sampling rate
// (Waldspurger et al., "Cache Modeling and Optimization using Miniature
// Simulations", ATC '17), with this cache's policy in small: the
// doorkeeper once full, counts of the uses the cache reports, admission
// against the least counted of five sampled victims. A reuse-distance
// (LRU) curve, the first thing tried, misjudged this cache by 15-23 points
// on Zipf traffic: a frequency-based policy keeps what LRU would lose.
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

// traceRef is a sampled use in the trace, with the counts of lookups and
// of dropped sampled lookups before it (as of when its buffer was taken).
type traceRef struct {
	sampleRef
	at, dropped uint64
}

func (r *traceRef) ecost() int64 {
	if r.v6 {
		return entryCost6
	}
	return entryCost4
}

// trace is the recent sampled uses, at one sampling limit.
type trace struct {
	refs  []traceRef // a ring, next at pos once full
	pos   int
	seen  int                   // uses added
	max   int                   // objects followed
	limit uint32                // the sampling limit the refs were taken at
	objs  map[uint64]*tracedObj // objects named in refs
}

// tracedObj is what the trace knows of an object.
type tracedObj struct {
	inRefs int32 // uses in refs
	// uses counts its uses over a longer past than refs holds, halved
	// every len(refs) uses, for the miniature cache to start from: its
	// reuses reach back before the trace.
	uses float32
}

func objKey(k uint64, rec bool) uint64 {
	if rec {
		return k*fibonacci | 1
	}
	return k &^ 1
}

func (t *trace) add(r traceRef) {
	if uint32(r.eh) >= t.limit {
		r.entry = 0
	}
	if uint32(r.rh) >= t.limit {
		r.rec = 0
	}
	if r.entry == 0 && r.rec == 0 {
		return
	}
	if len(t.refs) < cap(t.refs) {
		t.refs = append(t.refs, r)
	} else {
		t.count(t.refs[t.pos], -1)
		t.refs[t.pos] = r
		t.pos = (t.pos + 1) % len(t.refs)
	}
	t.count(r, 1)
	if t.seen++; t.seen%cap(t.refs) == 0 {
		for _, o := range t.objs {
			o.uses /= 2
		}
	}
	for len(t.objs) > t.max && t.limit > 1 {
		t.lower()
	}
}

// count adds d to the uses in refs of r's objects (a new use counts in
// the longer past too), and forgets the objects no use in refs names.
func (t *trace) count(r traceRef, d int32) {
	for _, k := range [2]uint64{objKey(r.entry, false), objKey(r.rec, true)} {
		if k <= 1 {
			continue
		}
		o := t.objs[k]
		if o == nil {
			o = &tracedObj{}
			t.objs[k] = o
		}
		if o.inRefs += d; o.inRefs <= 0 {
			delete(t.objs, k)
		} else if d > 0 {
			o.uses++
		}
	}
}

// lower lowers the sampling limit by one and drops the uses of the objects
// above it: SHARDS at a fixed size.
func (t *trace) lower() {
	t.limit--
	kept := t.refs[:0]
	ordered := append(t.refs[t.pos:len(t.refs):len(t.refs)], t.refs[:t.pos]...)
	uses := make(map[uint64]float32, len(t.objs))
	for k, o := range t.objs {
		uses[k] = o.uses
	}
	clear(t.objs)
	for _, r := range ordered {
		if uint32(r.eh) >= t.limit {
			r.entry = 0
		}
		if uint32(r.rh) >= t.limit {
			r.rec = 0
		}
		if r.entry != 0 || r.rec != 0 {
			kept = append(kept, r)
			t.count(r, 1)
		}
	}
	for k, o := range t.objs {
		o.uses = uses[k]
	}
	t.refs, t.pos = kept, 0
}

// hitRatio replays the trace through a miniature cache of the sampled
// share of itemBytes and counts its entry hits. The cache starts as a
// frequency-based cache that had served this traffic would be: holding the
// objects the trace uses most, as many as fit, with their counts; a cold
// start would count as misses the reuses that reach back before the
// trace.
func (t *trace) hitRatio(itemBytes int64) (float64, bool) {
	n := len(t.refs)
	if n == 0 {
		return 0, false
	}
	m := newMiniCache(itemBytes*int64(t.limit)/256, n)
	cost := make(map[uint64]int64, len(t.objs))
	for _, r := range t.refs {
		if r.entry != 0 {
			cost[objKey(r.entry, false)] = r.ecost()
		}
		if r.rec != 0 {
			cost[objKey(r.rec, true)] = int64(r.rcost)
		}
	}
	byUse := make([]uint64, 0, len(t.objs))
	for k := range t.objs {
		byUse = append(byUse, k)
	}
	slices.SortFunc(byUse, func(a, b uint64) int {
		return cmp.Or(cmp.Compare(t.objs[b].uses, t.objs[a].uses), cmp.Compare(a, b))
	})
	for _, k := range byUse {
		if m.used+cost[k] <= m.room {
			m.add(k, cost[k])
			m.freq[k] = uint8(min(15, t.objs[k].uses/hitReportEvery))
		}
	}
	var hits, uses int
	for i := range n {
		r := t.refs[(t.pos+i)%n]
		hit := m.use(objKey(r.entry, false), r.ecost(), r.entry != 0, false)
		m.use(objKey(r.rec, true), int64(r.rcost), r.rec != 0, hit)
		if r.entry != 0 {
			uses++
			if hit {
				hits++
			}
		}
	}
	if uses == 0 {
		return 0, false
	}
	// SHARDS_adj: a few objects carry much of a skewed traffic, so a
	// sample that missed one of them (or took one) has far fewer (more)
	// uses than the sampling rate expects, all of them hits at any budget
	// a hot object fits in. The difference from the expected count is
	// taken as such hits.
	// Sampled lookups the sampler dropped are not such hits.
	first, last := t.refs[t.pos%n], t.refs[(t.pos+n-1)%n]
	expected := float64(last.at-first.at)*float64(t.limit)/256 - float64(last.dropped-first.dropped)
	if expected > 0 {
		adj := expected - float64(uses)
		return min(max((float64(hits)+adj)/expected, 0), 1), 2*n >= cap(t.refs)
	}
	return float64(hits) / float64(uses), 2*n >= cap(t.refs)
}

// miniCache is this cache's policy in small, for the trace.
type miniCache struct {
	room, used int64
	res        map[uint64]int // resident objects, at their index in keys
	keys       []uint64
	cost       map[uint64]int64
	freq       map[uint64]uint8
	door       map[uint64]bool
	counted    int
	window     int
	rng        uint64
}

func newMiniCache(room int64, window int) *miniCache {
	return &miniCache{room: room, res: map[uint64]int{}, cost: map[uint64]int64{},
		freq: map[uint64]uint8{}, door: map[uint64]bool{}, window: 10 * window, rng: 1}
}

// use is a use of object k (if named); it reports a hit. For a record,
// entryHit says whether its entry hit.
func (m *miniCache) use(k uint64, cost int64, named, entryHit bool) bool {
	if !named {
		return false
	}
	// Uses count as the cache reports them, while it is full: a hit's
	// entry one in hitReportEvery; a missed entry one in missReportEvery,
	// but not on its first sighting, which the doorkeeper holds back; the
	// record of a missed entry one in missReportEvery if it is cached (a
	// record decoded anew is offered, not reported). Records' keys are odd
	// (see objKey).
	_, hit := m.res[k]
	full := m.used > m.room-m.room/8
	var every uint
	switch {
	case !full:
	case k&1 == 1:
		if hit && !entryHit {
			every = missReportEvery
		}
	case hit:
		every = hitReportEvery
	case m.door[k]:
		every = missReportEvery
	}
	m.counted++
	if every > 0 && (k^uint64(m.counted))*fibonacci>>(64-bits.TrailingZeros(every)) == 0 {
		if m.freq[k] < 15 {
			m.freq[k]++
		}
	}
	if m.counted%m.window == 0 { // counts age, as TinyLFU's do
		for f, n := range m.freq {
			if n /= 2; n == 0 {
				delete(m.freq, f)
			} else {
				m.freq[f] = n
			}
		}
	}
	if hit {
		return true
	}
	if full && !m.door[k] {
		m.door[k] = true
		if len(m.door) > m.window/10 {
			clear(m.door)
		}
		return false
	}
	for m.used+cost > m.room {
		if len(m.keys) == 0 {
			return false
		}
		victim, least := 0, uint8(255)
		for range 5 {
			m.rng = m.rng*6364136223846793005 + 1442695040888963407
			i := int(m.rng>>33) % len(m.keys)
			if f := m.freq[m.keys[i]]; f < least {
				victim, least = i, f
			}
		}
		if m.freq[k] < least {
			return false
		}
		m.evict(victim)
	}
	m.add(k, cost)
	return false
}

func (m *miniCache) add(k uint64, cost int64) {
	m.res[k] = len(m.keys)
	m.keys = append(m.keys, k)
	m.cost[k] = cost
	m.used += cost
}

func (m *miniCache) evict(i int) {
	k := m.keys[i]
	last := m.keys[len(m.keys)-1]
	m.keys[i] = last
	m.res[last] = i
	m.keys = m.keys[:len(m.keys)-1]
	delete(m.res, k)
	m.used -= m.cost[k]
	delete(m.cost, k)
}
