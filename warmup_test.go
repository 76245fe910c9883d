//go:build linux

package geocache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// bigDB is a generated database of a few MB, so that warmup takes a while
// (a third of that under -race, where generating it takes most of the
// time).
func bigDB(t testing.TB) string {
	n := 150_000
	if raceEnabled {
		n /= 3
	}
	return genDB(t, mmdbtest.Spec{Seed: 9, Networks: n})
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

// With RLIMIT_MEMLOCK below the file's size, Open with Mlock fails with an
// *MlockError that gives the size and the limit. The limit binds only a
// process without CAP_IPC_LOCK, so the check runs in a child process of
// this test binary, as the user nobody when the test runs as root.
func TestMlockError(t *testing.T) {
	const limit = 4096
	if path := os.Getenv("GEOCACHE_MLOCK_CHILD"); path != "" {
		lim := unix.Rlimit{Cur: limit, Max: limit}
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
			t.Fatal(err)
		}
		_, err := Open[any](path, &Options{Mlock: true})
		var me *MlockError
		if !errors.As(err, &me) || me.Limit != limit || me.Size != int64(len(mustRead(t, path))) ||
			!strings.Contains(err.Error(), "RLIMIT_MEMLOCK 4096") {
			t.Fatalf("Open with Mlock under a %d-byte limit: %v", limit, err)
		}
		fmt.Println("child:", err)
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // for nobody
	path := filepath.Join(dir, "db.mmdb")
	os.WriteFile(path, mustRead(t, bigDB(t)), 0o644)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestMlockError$", "-test.v")
	cmd.Env = append(os.Environ(), "GEOCACHE_MLOCK_CHILD="+path)
	if os.Geteuid() == 0 {
		// The child runs a copy of this binary that nobody may execute.
		if err := os.WriteFile(filepath.Join(dir, "test.bin"), mustRead(t, bin), 0o755); err != nil {
			t.Fatal(err)
		}
		for d := dir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()); d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
		cmd.Path, cmd.Dir = filepath.Join(dir, "test.bin"), dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "child: geocache: mlock") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}

// A filesystem that cannot map files (mmap answers ENODEV: FUSE with
// direct I/O, some network filesystems) gets the file read into memory, as
// maxminddb.Open does; any other mmap error fails.
func TestMmapUnsupportedReadsTheFile(t *testing.T) {
	path := genDB(t, mmdbtest.Spec{Seed: 3, Networks: 2000})
	enodev := func(*os.File, int) ([]byte, error) { return nil, mmapError(unix.ENODEV) }
	m, err := loadWith(path, enodev)
	if err != nil {
		t.Fatalf("ENODEV: %v", err)
	}
	if m.mapped || !bytes.Equal(m.data, mustRead(t, path)) {
		t.Fatalf("ENODEV: mapped %v, %d bytes", m.mapped, len(m.data))
	}
	eacces := func(*os.File, int) ([]byte, error) { return nil, mmapError(unix.EACCES) }
	if _, err := loadWith(path, eacces); !errors.Is(err, unix.EACCES) {
		t.Fatalf("EACCES: %v", err)
	}
	if err := mmapError(unix.ENODEV); !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err, unix.ENODEV) {
		t.Fatalf("mmapError(ENODEV) = %v", err)
	}
}
