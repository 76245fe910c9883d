package geocache

import (
	"cmp"
	"math/bits"
	"slices"
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
