package geocache

import (
	"log/slog"
	"time"
)

// DefaultMaxCost is the cache budget when Options.MaxCost is zero.
const DefaultMaxCost = 64 << 20

// Options configure a Cache. The zero value (or a nil *Options) gives the
// documented defaults.
type Options struct {
	// MaxCost is the cache budget in bytes: cached networks, decoded
	// records and the cache's tables, all counted (Stats.Cost). Default
	// DefaultMaxCost (64 MiB). Values below 1 MiB are raised to 1 MiB.
	// HitRatioAt estimates what another budget would give.
	MaxCost int64

	// InMemory reads the whole file into the heap instead of mapping it:
	// no page faults after Open, at the cost of the file's size in heap.
	// Platforms without mmap always read into memory.
	InMemory bool

	// Verify runs the reader's full structural check of the database in
	// Open and Reload, so a corrupt file fails there instead of in Lookup.
	// It reads every record of the file: seconds for GeoLite2-City.
	Verify bool

	// Warmup says how Open pre-faults a mapped file so that lookups do
	// not take page faults: in the background (WarmupAsync, the default),
	// before Open returns (WarmupWait), or not at all (WarmupOff).
	Warmup WarmupMode

	// KeepWarm, if positive, re-checks the mapping's residency at this
	// interval after warmup and faults back in what memory pressure
	// evicted. Default 0: off.
	KeepWarm time.Duration

	// Mlock pins the mapping in memory (mlock) in Open, so it is never
	// evicted. Open fails with an *MlockError when RLIMIT_MEMLOCK is
	// below the file's size.
	Mlock bool

	// Watch reloads the database when its file changes (fsnotify on the
	// file's directory, so a rename over the file, as geoipupdate does,
	// is seen). Bursts of events within WatchDebounce (default 500 ms)
	// make one reload.
	Watch         bool
	WatchDebounce time.Duration

	// Logger, if set, gets one record per reload and per failed reload.
	Logger *slog.Logger

	// OnReload, if set, is called after every reload attempt, with the
	// error of a failed one. It runs on the reloading goroutine.
	OnReload func(path string, err error)

	// ReloadCPU is the fraction of one CPU that Reload may spend looking
	// the hot set up again in the new database, so that a reload does not
	// take the cores that serve lookups: at 0.05, the ~100k hot networks
	// of a 64 MiB geoip2.City cache take ~6 s instead of 0.3 s before the
	// swap. The swap waits for them either way, so the new database starts
	// warm. Default 0.05; 1 or more: as fast as it can.
	ReloadCPU float64

	// HotSetFile, if set, names a file that keeps the hot set across
	// restarts: Open looks its addresses up (after the warmup, before
	// Ready closes) and Close writes the hot set to it (see SaveHotSet).
	// A missing file is the first start; a corrupt or foreign one is
	// logged and ignored. Addresses, not answers, are saved, so a file
	// from an older database is harmless. Default "": off.
	HotSetFile string
}

func (o *Options) withDefaults() Options {
	var v Options
	if o != nil {
		v = *o
	}
	if v.MaxCost == 0 {
		v.MaxCost = DefaultMaxCost
	}
	v.MaxCost = max(v.MaxCost, 1<<20)
	if v.ReloadCPU <= 0 {
		v.ReloadCPU = 0.05
	}
	if v.WatchDebounce <= 0 {
		v.WatchDebounce = 500 * time.Millisecond
	}
	return v
}

// WarmupMode says how Open pre-faults a mapped database.
type WarmupMode int

const (
	// WarmupAsync pre-faults in a background goroutine; Ready closes
	// when the whole file is resident. The default.
	WarmupAsync WarmupMode = iota
	// WarmupWait pre-faults before Open returns.
	WarmupWait
	// WarmupOff does not pre-fault; Ready is closed at once. Warm can
	// still be called.
	WarmupOff
)
