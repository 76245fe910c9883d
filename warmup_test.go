//go:build linux

package geocache

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/geocache/geocache/internal/mmdbtest"
)

// evict drops path's pages from the page cache (they must not be mapped).
// Dirty pages cannot be dropped, so it writes them back first.
func evict(t testing.TB, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// bigDB is a generated database of a few MB, so that warmup takes a while.
func bigDB(t testing.TB) string {
	return genDB(t, mmdbtest.Spec{Seed: 9, Networks: 150_000})
}

func TestWarmupMakesResident(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := bigDB(t)
	evict(t, path)
	c, err := Open[any](path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Ready():
	default:
		t.Fatal("WaitReady returned but Ready is open")
	}
	r, err := c.Residency()
	if err != nil || r != 1 {
		t.Fatalf("residency after warmup = %v, %v", r, err)
	}
	st := c.Stats().Warmup
	if st.Phase != "done" || st.Bytes != st.Total || st.Total == 0 || st.Passes != 1 || st.Elapsed <= 0 {
		t.Errorf("%+v", st)
	}
	var u unix.Utsname
	unix.Uname(&u)
	if st.Fallbacks != 0 {
		t.Errorf("%d chunks fell back from MADV_POPULATE_READ on %s", st.Fallbacks, unix.ByteSliceToString(u.Release[:]))
	}
}

func TestResidencyMeasuresEviction(t *testing.T) {
	path := bigDB(t)
	c, err := Open[any](path, &Options{Warmup: WarmupOff})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st := c.Stats().Warmup; st.Phase != "off" {
		t.Errorf("phase %q with WarmupOff", st.Phase)
	}
	// Evicting before Open proves little here: this machine's readahead
	// (read_ahead_kb) brings most of the file back on Open's first faults.
	// Page the mapping out instead.
	evict(t, path) // writes the file back, so its pages can be paged out
	if err := unix.Madvise(c.cur.Load().m.data, unix.MADV_PAGEOUT); err != nil {
		t.Skipf("MADV_PAGEOUT: %v", err)
	}
	before, err := c.Residency()
	if err != nil {
		t.Fatal(err)
	}
	if before >= 0.9 {
		t.Fatalf("paged-out mapping reads %.2f resident", before)
	}
	if err := c.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after, _ := c.Residency(); after != 1 {
		t.Fatalf("after Warm: %v (before %v)", after, before)
	}
}

func TestWarmupWaitAndInMemory(t *testing.T) {
	path := bigDB(t)
	for _, o := range []*Options{{Warmup: WarmupWait}, {InMemory: true}} {
		evict(t, path)
		c, err := Open[any](path, o)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Ready():
		default:
			t.Errorf("%+v: Ready open after Open", o)
		}
		if r, err := c.Residency(); r != 1 || err != nil {
			t.Errorf("%+v: residency %v %v", o, r, err)
		}
		c.Close()
	}
}

// Close in the middle of warmup stops it and leaves no goroutine behind
// (warmup's, ristretto's); so does cancelling Warm.
func TestCloseMidWarmup(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := bigDB(t)
	for range 5 {
		evict(t, path)
		c, err := Open[any](path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitReady(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("WaitReady after Close: %v", err)
		}
	}
	evict(t, path)
	c, err := Open[any](path, &Options{Warmup: WarmupOff})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Warm(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Warm with a cancelled context: %v", err)
	}
	c.Close()
}

func TestWaitReadyContext(t *testing.T) {
	c := openCity(t, &Options{Warmup: WarmupOff})
	c.ready = newReadiness() // a warmup that never ends
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady = %v", err)
	}
}

func TestReadyHandler(t *testing.T) {
	c := openCity(t, &Options{Warmup: WarmupOff})
	c.ready = newReadiness() // warming
	h := c.ReadyHandler()
	probe := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	if code := probe(); code != http.StatusServiceUnavailable {
		t.Errorf("warming: %d", code)
	}
	c.ready.mark()
	if code := probe(); code != http.StatusOK {
		t.Errorf("ready: %d", code)
	}
	c.Close()
	if code := probe(); code != http.StatusServiceUnavailable {
		t.Errorf("closed: %d", code)
	}
}

// KeepWarm faults back in what the kernel paged out.
func TestKeepWarm(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := bigDB(t)
	evict(t, path) // also writes the file back, so its pages can be paged out
	c, err := Open[any](path, &Options{Warmup: WarmupWait, KeepWarm: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := c.cur.Load().m.data
	if err := unix.Madvise(data, unix.MADV_PAGEOUT); err != nil {
		t.Skipf("MADV_PAGEOUT: %v", err)
	}
	if r, _ := c.Residency(); r == 1 {
		t.Skip("MADV_PAGEOUT paged nothing out here")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := c.Residency()
		if r == 1 && c.Stats().Warmup.Refaults > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keep-warm did not restore residency: %v %+v", r, c.Stats().Warmup)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMlock(t *testing.T) {
	path := bigDB(t)
	if os.Geteuid() != 0 {
		var lim unix.Rlimit
		unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
		old := lim
		lim.Cur = 4096
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err == nil {
			_, err := Open[any](path, &Options{Mlock: true})
			unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old)
			var me *MlockError
			if !errors.As(err, &me) || me.Limit != 4096 {
				t.Errorf("low RLIMIT_MEMLOCK: %v", err)
			}
		}
	}
	evict(t, path)
	c, err := Open[any](path, &Options{Mlock: true})
	if err != nil {
		var me *MlockError
		if errors.As(err, &me) {
			t.Skipf("this machine's memlock limit is too low: %v", err)
		}
		t.Fatal(err)
	}
	defer c.Close()
	if r, _ := c.Residency(); r != 1 {
		t.Errorf("locked mapping %v resident", r)
	}
}
