//go:build linux

package geocache

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/geocache/geocache/internal/mmdbtest"
	"github.com/geocache/geocache/internal/workload"
)

// answer is what an uncached reader says for one address.
type answer struct {
	prefix netip.Prefix
	found  bool
	record any
}

// answers reads path into memory (so that the reference reader maps
// nothing: the leak checks look at /proc/self/maps) and asks it addrs.
func answers(t *testing.T, path string, addrs []netip.Addr) map[netip.Addr]answer {
	r, err := maxminddb.OpenBytes(mustRead(t, path))
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[netip.Addr]answer, len(addrs))
	for _, a := range addrs {
		res := oracle(r, a)
		var v any
		if err := res.Decode(&v); err != nil {
			t.Fatal(err)
		}
		out[a] = answer{res.Prefix(), res.Found(), v}
	}
	return out
}

func (w answer) matches(res Result[any]) bool {
	if !samePrefix(res.Prefix, w.prefix) || res.Found != w.found {
		return false
	}
	return !res.Found || reflect.DeepEqual(*res.Record, w.record)
}

// mapped reports whether path is mapped into this process.
func mapped(t *testing.T, path string) bool {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), path)
}

// Lookups racing reloads between two databases, then Close: every answer
// is one database's answer for that address, nothing panics, nothing leaks.
func TestReloadStress(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pathA := genDB(t, mmdbtest.Spec{Seed: 21, Networks: 20_000})
	pathB := genDB(t, mmdbtest.Spec{Seed: 22, Networks: 20_000})
	nets := append(workload.Networks(readBytes(t, pathA)), workload.Networks(readBytes(t, pathB))...)
	addrs := sampleAddrs(5, nets, 20_000, true)
	wantA, wantB := answers(t, pathA, addrs), answers(t, pathB, addrs)

	c, err := Open[any](pathA, &Options{MaxCost: 2 << 20, ReloadCPU: 1})
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var lookups, reloads atomic.Int64
	for i := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 9))
			for !stop.Load() {
				a := addrs[r.IntN(len(addrs))]
				res, err := c.Lookup(a)
				if err != nil {
					t.Errorf("%s: %v", a, err)
					return
				}
				if !wantA[a].matches(res) && !wantB[a].matches(res) {
					t.Errorf("%s: %+v matches neither database", a, res)
					return
				}
				lookups.Add(1)
			}
		})
	}
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			p := pathA
			if i%2 == 0 {
				p = pathB
			}
			if err := c.Reload(p); err != nil {
				t.Errorf("reload %d: %v", i, err)
				return
			}
			reloads.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	})
	// Run until enough has happened, not for a fixed time: under -race on a
	// loaded machine a reload takes hundreds of milliseconds.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if reloads.Load() >= 10 && lookups.Load() >= 20_000 {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	if !mapped(t, pathA) && !mapped(t, pathB) {
		t.Fatal("the serving database does not show in /proc/self/maps: the leak check below would prove nothing")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(addrs[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	t.Logf("%d lookups, %d reloads", lookups.Load(), reloads.Load())
	if reloads.Load() < 10 || lookups.Load() < 20_000 {
		t.Errorf("too little happened: %d lookups, %d reloads", lookups.Load(), reloads.Load())
	}
	if mapped(t, pathA) || mapped(t, pathB) {
		t.Error("a database is still mapped after Close")
	}
}

// Close while a reload is under way: the reload (looking a hot set up,
// paced to take far longer than the test waits) is cancelled and returns
// ErrClosed, Close returns promptly, and neither database stays mapped nor
// leaves a goroutine. The reload is known to be under way when its file
// shows in /proc/self/maps beside the serving one.
func TestCloseDuringReload(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := genDB(t, mmdbtest.Spec{Seed: 9, Networks: 20_000})
	other := rebuiltCopy(t, path)
	addrs := sampleAddrs(1, workload.Networks(readBytes(t, path)), 5000, true)
	for range 3 {
		c := mustOpen[any](t, path, &Options{ReloadCPU: 0.001})
		for _, a := range addrs {
			c.Lookup(a)
		}
		waitCache(c)
		done := make(chan error, 1)
		go func() { done <- c.Reload(other) }()
		for deadline := time.Now().Add(30 * time.Second); !mapped(t, other); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the reload never mapped its file")
			}
		}
		start := time.Now()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("Close waited %v for the reload", took)
		}
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("Reload cut short by Close: %v, want ErrClosed", err)
		}
		if mapped(t, path) || mapped(t, other) {
			t.Fatal("a database is still mapped after Close")
		}
	}
}

func TestReloadFailureKeepsServing(t *testing.T) {
	var calls []error
	c, err := Open[any](genDB(t, mmdbtest.Spec{Seed: 23, Networks: 2000}), &Options{
		Verify:   true, // so the broken tree below fails in Reload, not after
		OnReload: func(_ string, err error) { calls = append(calls, err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := netip.MustParseAddr("1.2.3.4")
	before, _ := c.Lookup(a)
	bad := filepath.Join(t.TempDir(), "bad.mmdb")
	os.WriteFile(bad, []byte("not a database"), 0o644)
	brokenTree := "testdata/maxmind/test-data/MaxMind-DB-test-broken-search-tree-24.mmdb"
	for _, p := range []string{filepath.Join(t.TempDir(), "missing.mmdb"), bad, brokenTree} {
		if err := c.Reload(p); err == nil {
			t.Errorf("Reload(%s) succeeded", p)
		}
	}
	after, err := c.Lookup(a)
	if err != nil || after != before {
		t.Errorf("after failed reloads: %+v %v, before %+v", after, err, before)
	}
	if st := c.Stats(); st.ReloadFails != 3 || st.Reloads != 0 || len(calls) != 3 || calls[2] == nil {
		t.Errorf("stats %+v, callbacks %v", st, calls)
	}
	if err := c.Reload(""); err != nil {
		t.Errorf("reloading the same file: %v", err)
	}
	if st := c.Stats(); st.Unchanged != 1 || st.Reloads != 0 || len(calls) != 4 || calls[3] != nil {
		t.Errorf("stats %+v, callbacks %v", st, calls)
	}
	// Without Verify, Reload still looks a few addresses up: a database
	// whose records are broken fails there, not in the traffic after.
	nv, err := Open[any]("testdata/maxmind/test-data/GeoIP2-City-Test.mmdb", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nv.Close()
	if err := nv.Reload("testdata/maxmind/test-data/GeoIP2-City-Test-Broken-Double-Format.mmdb"); !errors.Is(err, ErrInvalidDatabase) {
		t.Errorf("reload of broken records: %v", err)
	}
	b, err := OpenBytes[any](mustRead(t, "testdata/maxmind/test-data/GeoIP2-City-Test.mmdb"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Reload(""); !errors.Is(err, ErrNoPath) {
		t.Errorf("Reload(\"\") from bytes: %v", err)
	}
}

func readBytes(t *testing.T, path string) *maxminddb.Reader {
	r, err := maxminddb.OpenBytes(mustRead(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A file truncated in place under the mapping: lookups that read the lost
// pages fail with ErrFault, the process lives, cached answers are still
// served, and a Reload of a good file restores service.
func TestTruncatedUnderMapping(t *testing.T) {
	good := genDB(t, mmdbtest.Spec{Seed: 24, Networks: 40_000})
	path := filepath.Join(t.TempDir(), "db.mmdb")
	data := mustRead(t, good)
	os.WriteFile(path, data, 0o644)
	c, err := Open[any](path, &Options{Warmup: WarmupWait})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nets := workload.Networks(openReader(t, good))
	cached := nets[0].Addr()
	want, err := c.Lookup(cached)
	if err != nil {
		t.Fatal(err)
	}
	waitCache(c)
	if err := os.Truncate(path, int64(len(data)/4)); err != nil {
		t.Fatal(err)
	}
	faults := 0
	for _, a := range sampleAddrs(8, nets, 2000, true) {
		if _, err := c.Lookup(a); errors.Is(err, ErrFault) {
			faults++
		}
	}
	if faults == 0 {
		t.Fatal("no lookup hit the truncated part")
	}
	if got, err := c.Lookup(cached); err != nil || got != want {
		t.Errorf("cached answer after truncation: %+v %v", got, err)
	}
	if err := c.Reload(good); err != nil {
		t.Fatal(err)
	}
	wantAll := answers(t, good, sampleAddrs(9, nets, 2000, true))
	for a, w := range wantAll {
		res, err := c.Lookup(a)
		if err != nil || !w.matches(res) {
			t.Fatalf("after reload, %s: %+v %v", a, res, err)
		}
	}
	t.Logf("%d of 2000 lookups faulted", faults)
}

// Replacing the file by rename, as geoipupdate does, is picked up by the
// watcher; a broken replacement is reported and the last good one serves.
func TestWatchRename(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	path := filepath.Join(dir, "GeoLite2-City.mmdb")
	write := func(b []byte) {
		tmp := path + ".temporary"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	dbA := mustRead(t, genDB(t, mmdbtest.Spec{Seed: 31, Networks: 3000}))
	dbB := mustRead(t, genDB(t, mmdbtest.Spec{Seed: 32, Networks: 3000}))
	write(dbA)
	results := make(chan error, 10)
	c, err := Open[any](path, &Options{Watch: true, WatchDebounce: 20 * time.Millisecond,
		OnReload: func(_ string, err error) { results <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	epochA := c.Metadata().BuildEpoch
	write(dbB)
	select {
	case err := <-results:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s of the rename")
	}
	if e := c.Metadata().BuildEpoch; e == epochA {
		t.Fatalf("still serving the old database (epoch %d)", e)
	}
	write([]byte("garbage"))
	select {
	case err := <-results:
		if err == nil {
			t.Fatal("a garbage file reloaded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload attempt for the garbage file")
	}
	if _, err := c.Lookup(netip.MustParseAddr("1.2.3.4")); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
	if st := c.Stats(); st.Reloads != 1 || st.ReloadFails != 1 {
		t.Errorf("%+v", st)
	}
}

// A reload that finds the same bytes (here under another name) keeps the
// serving database and its warm cache; one byte of difference swaps.
func TestReloadUnchanged(t *testing.T) {
	path := genDB(t, mmdbtest.Spec{Seed: 1})
	data := mustRead(t, path)
	c := mustOpen[any](t, path, &Options{ReloadCPU: 1}) // unpaced: pacing is not under test
	defer c.Close()
	r := openReader(t, path)
	addrs := sampleAddrs(3, workload.Networks(r), 5000, true)
	for _, a := range addrs {
		c.Lookup(a)
	}
	waitCache(c)
	before := c.Stats()
	ready := c.Ready()

	same := filepath.Join(t.TempDir(), "copy.mmdb")
	os.WriteFile(same, data, 0o644)
	if err := c.Reload(same); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Unchanged != 1 || st.Reloads != 0 || st.Entries != before.Entries || c.Ready() != ready {
		t.Fatalf("unchanged reload replaced the generation: %+v", st)
	}
	checkDifferential(t, c, r, addrs)
	if c.Stats().Misses != before.Misses {
		t.Errorf("the warm cache was lost: %d misses, %d before\n%+v\n%+v", c.Stats().Misses, before.Misses, before, c.Stats())
	}

	// The same database with another build time in its metadata: a new
	// file, so a full reload.
	if err := c.Reload(rebuiltCopy(t, path)); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Reloads != 1 || st.Unchanged != 1 {
		t.Fatalf("changed file: %+v", st)
	}
	checkDifferential(t, c, r, addrs)
}

// A service waits for readiness while the first warmup is still running,
// held here in its hot-set phase (the hot-set file is a FIFO that nobody
// has opened for writing: storage as slow as it gets), and a reload lands
// meanwhile. WaitReady returns nil once the reloaded database is ready and
// the readiness handler answers 200; ErrClosed comes only after Close.
func TestWaitReadyAcrossReload(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := genDB(t, mmdbtest.Spec{Seed: 1, Networks: 5000})
	fifo := filepath.Join(t.TempDir(), "hotset")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// unblock lets the first warmup read its (empty) hot set, if it is
	// still waiting to: a writer that opens and closes the FIFO.
	unblock := func() {
		if w, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	}
	c := mustOpen[any](t, path, &Options{HotSetFile: fifo})
	defer c.Close()
	defer unblock() // before Close, which waits for the warmup
	probe := func() int {
		rec := httptest.NewRecorder()
		c.ReadyHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	waited := make(chan error, 1)
	go func() { waited <- c.WaitReady(context.Background()) }()
	select {
	case <-c.Ready():
		t.Fatal("ready before the hot set was read")
	case <-time.After(50 * time.Millisecond):
	}
	if code := probe(); code != http.StatusServiceUnavailable {
		t.Fatalf("readiness while warming: %d", code)
	}

	reloaded := make(chan error, 1)
	go func() { reloaded <- c.Reload(rebuiltCopy(t, path)) }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("WaitReady across a reload: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WaitReady still waiting 30s after the reload")
	}
	select {
	case <-c.Ready():
	default:
		t.Fatal("WaitReady returned, Ready is open")
	}
	if code := probe(); code != http.StatusOK {
		t.Errorf("readiness after the reload: %d", code)
	}
	unblock() // so that the reload can retire the database it was warming
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.WaitReady(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitReady after Close: %v", err)
	}
	if code := probe(); code != http.StatusServiceUnavailable {
		t.Errorf("readiness after Close: %d", code)
	}
}

// Open and Reload start a database the same way: for every combination
// of the options that shape it, the warmup state after Open's warmup and
// after a reload are equal.
func TestStartSameForOpenAndReload(t *testing.T) {
	path := genDB(t, mmdbtest.Spec{Seed: 2, Networks: 5000})
	other := rebuiltCopy(t, path)
	type state struct {
		Phase                WarmupPhase
		Total, Bytes         int64
		Fallbacks            int64
		FirstPass, KeepsWarm bool
	}
	observe := func(c *Cache[any]) state {
		if err := c.WaitReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		st := c.Stats().Warmup
		time.Sleep(60 * time.Millisecond) // several keep-warm intervals
		return state{st.Phase, st.Total, st.Bytes, st.Fallbacks, st.Elapsed > 0,
			c.Stats().Warmup.Passes > st.Passes}
	}
	for _, inMemory := range []bool{false, true} {
		for _, mode := range []WarmupMode{WarmupAsync, WarmupWait, WarmupOff} {
			for _, keep := range []time.Duration{0, 5 * time.Millisecond} {
				for _, mlock := range []bool{false, true} {
					o := &Options{InMemory: inMemory, Warmup: mode, KeepWarm: keep, Mlock: mlock}
					c, err := Open[any](path, o)
					var me *MlockError
					if errors.As(err, &me) {
						t.Logf("%+v: %v", o, err)
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					opened := observe(c)
					if err := c.Reload(other); err != nil {
						t.Fatal(err)
					}
					reloaded := observe(c)
					c.Close()
					if opened != reloaded {
						t.Errorf("%+v:\nafter Open   %+v\nafter Reload %+v", o, opened, reloaded)
					}
				}
			}
		}
	}
}
