package geocache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/oschwald/geoip2-golang/v2"

	"github.com/geocache/geocache/internal/mmdbtest"
	"github.com/geocache/geocache/internal/workload"
)

func TestHotSetRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	var v4 []uint32
	var v6 [][2]uint64
	want := map[netip.Addr]bool{}
	for range 5000 {
		v := r.Uint32() &^ 0xff
		v4 = append(v4, v, v) // duplicates are written once
		want[netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})] = true
		hi, lo := r.Uint64()&^0xffff, uint64(0)
		if r.IntN(4) == 0 {
			lo = r.Uint64()
		}
		v6 = append(v6, [2]uint64{hi, lo})
		var b [16]byte
		putWords(b[:], hi, lo)
		want[netip.AddrFrom16(b)] = true
	}
	data := encodeHotSet(v4, v6)
	got, err := decodeHotSet(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d addresses, wrote %d distinct", len(got), len(want))
	}
	for _, a := range got {
		if !want[a] {
			t.Fatalf("read %s, never written", a)
		}
	}
	t.Logf("%d addresses in %d bytes", len(got), len(data))
}

func putWords(b []byte, hi, lo uint64) {
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
}

// TestHotSetCorrupt: every truncation and every single-bit flip of a valid
// file is refused with ErrHotSet, never a panic or a wrong address list.
func TestHotSetCorrupt(t *testing.T) {
	data := encodeHotSet([]uint32{0x01020300, 0x51024500, 0xdfffff00}, [][2]uint64{{0x2001_0db8_0000_0000, 0}, {0x2a02_0ff0_0001_0000, 1}})
	if _, err := decodeHotSet(data); err != nil {
		t.Fatal(err)
	}
	for n := range len(data) {
		if _, err := decodeHotSet(data[:n]); !errors.Is(err, ErrHotSet) {
			t.Fatalf("truncated to %d bytes: %v, want ErrHotSet", n, err)
		}
	}
	for i := range len(data) * 8 {
		b := slices.Clone(data)
		b[i/8] ^= 1 << (i % 8)
		if _, err := decodeHotSet(b); !errors.Is(err, ErrHotSet) {
			t.Fatalf("bit %d flipped: %v, want ErrHotSet", i, err)
		}
	}
	for _, junk := range []string{"", "GCHOTSET", "GCHOTSET\x02\x00\x00\x00\x00\x00\x00", "MMDB file, not a hot set"} {
		if _, err := ReadHotSet(strings.NewReader(junk)); !errors.Is(err, ErrHotSet) {
			t.Fatalf("%q: %v, want ErrHotSet", junk, err)
		}
	}
}

// TestSaveAndPrewarm: a hot set saved from one cache and prewarmed into a
// fresh one makes the same traffic hits there.
func TestSaveAndPrewarm(t *testing.T) {
	path := genDB(t, mmdbtest.Spec{Seed: 1})
	r := openReader(t, path)
	addrs := sampleAddrs(5, workload.Networks(r), 20_000, true)

	// What a cold cache pays on this traffic: a miss per network.
	cold := mustOpen[geoip2.City](t, path, &Options{MaxCost: 256 << 20})
	for _, a := range addrs {
		cold.Lookup(a)
	}
	prevMisses := cold.Stats().Misses
	cold.Close()

	prev := mustOpen[geoip2.City](t, path, &Options{MaxCost: 256 << 20})
	if err := prev.Prewarm(context.Background(), slices.Values(addrs)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := prev.SaveHotSet(&buf); err != nil {
		t.Fatal(err)
	}
	prev.Close()
	if err := prev.SaveHotSet(&buf); !errors.Is(err, ErrClosed) {
		t.Fatalf("SaveHotSet after Close: %v", err)
	}
	hot, err := ReadHotSet(&buf)
	if err != nil {
		t.Fatal(err)
	}

	c := mustOpen[geoip2.City](t, path, &Options{MaxCost: 256 << 20})
	defer c.Close()
	if err := c.Prewarm(context.Background(), slices.Values(hot)); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Hits+st.Misses != 0 || st.Entries == 0 {
		t.Fatalf("Prewarm counted as traffic, or cached nothing: %+v", st)
	}
	checkDifferential(t, c, r, addrs)
	st := c.Stats()
	// Without the hot set the first pass misses once per network
	// (prevMisses); with it, only what the first cache had not kept.
	if st.Misses*20 > prevMisses {
		t.Errorf("after Prewarm: %d misses, %d without it", st.Misses, prevMisses)
	}
	t.Logf("%d hot addresses; misses %d after Prewarm vs %d cold", len(hot), st.Misses, prevMisses)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Prewarm(ctx, slices.Values(hot)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Prewarm with a cancelled context: %v", err)
	}
}

// TestHotSetFile: Close writes Options.HotSetFile and the next Open
// prewarms from it before Ready; a file saved against another database
// still gives that database's answers; a corrupt file is logged and
// ignored.
func TestHotSetFile(t *testing.T) {
	path := genDB(t, mmdbtest.Spec{Seed: 1})
	other := genDB(t, mmdbtest.Spec{Seed: 3, Networks: 20_000})
	r := openReader(t, path)
	addrs := sampleAddrs(6, workload.Networks(r), 20_000, true)
	file := filepath.Join(t.TempDir(), "hotset")
	var logs bytes.Buffer
	o := &Options{HotSetFile: file, Logger: slog.New(slog.NewTextHandler(&logs, nil))}

	c := mustOpen[geoip2.City](t, path, o) // no file yet: the first start
	for i, a := range addrs {
		c.Lookup(a)
		if i%1000 == 0 {
			waitCache(c) // traffic paced as a service's would be
		}
	}
	waitCache(c)
	cold := c.Stats().Misses
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("Close did not write the hot set: %v", err)
	}

	c = mustOpen[geoip2.City](t, path, o)
	if err := c.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkDifferential(t, c, r, addrs[:len(addrs)/2])
	if warm := c.Stats().Misses; warm*20 > cold/2 {
		t.Errorf("with the hot set: %d misses over half the traffic, %d cold over all of it", warm, cold)
	}
	c.Close()

	// The file now lists path's hot blocks; other's answers differ.
	c = mustOpen[geoip2.City](t, other, o)
	c.WaitReady(context.Background())
	checkDifferential(t, c, openReader(t, other), addrs[:5000])
	c.Close()

	if err := os.WriteFile(file, []byte("GCHOTSET\x01garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	c = mustOpen[geoip2.City](t, path, o)
	if err := c.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "ignoring the hot-set file") {
		t.Errorf("corrupt hot set not logged: %q", logs.String())
	}
	checkDifferential(t, c, r, addrs[:5000])
	c.Close()

	// An unwritable path: Close reports it, and still closes.
	o.HotSetFile = filepath.Join(t.TempDir(), "missing-dir", "hotset")
	c = mustOpen[geoip2.City](t, path, o)
	if err := c.Close(); err == nil {
		t.Error("Close: no error for an unwritable hot-set file")
	}
	if _, err := c.Lookup(addrs[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Lookup after a failed save: %v", err)
	}
}

func mustOpen[T any](t *testing.T, path string, o *Options) *Cache[T] {
	t.Helper()
	c, err := Open[T](path, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func FuzzReadHotSet(f *testing.F) {
	f.Add(encodeHotSet([]uint32{0x01020300, 0x51024500}, [][2]uint64{{0x2001_0db8_0000_0000, 0}}))
	f.Add(encodeHotSet(nil, nil))
	f.Add([]byte("GCHOTSET\x01\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		addrs, err := ReadHotSet(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrHotSet) {
				t.Fatalf("error not ErrHotSet: %v", err)
			}
			return
		}
		// What reads back re-encodes to a file with the same addresses.
		var v4 []uint32
		var v6 [][2]uint64
		want := map[netip.Addr]bool{}
		for _, a := range addrs {
			want[a] = true
			hi, lo := addr6(a)
			if a.Is4() {
				v4 = append(v4, uint32(lo))
			} else {
				v6 = append(v6, [2]uint64{hi, lo})
			}
		}
		again, err := decodeHotSet(encodeHotSet(v4, v6))
		if err != nil {
			t.Fatalf("re-encoded file does not read: %v", err)
		}
		if len(again) != len(want) {
			t.Fatalf("re-encoded: %d addresses, want %d", len(again), len(want))
		}
		for _, a := range again {
			if !want[a] {
				t.Fatalf("re-encoded: %s appeared", a)
			}
		}
	})
}

// The hot-set file is written durably: the temporary file is synced before
// it is renamed over the old file, and the directory after, so a power
// loss leaves the old file or the whole new one.
func TestWriteFileAtomicSyncs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hotset")
	os.WriteFile(path, []byte("old"), 0o644)
	var synced []string
	sync := func(f *os.File) error {
		got, _ := os.ReadFile(path)
		synced = append(synced, fmt.Sprintf("%s with %s at path", filepath.Base(f.Name()), got))
		return f.Sync()
	}
	write := func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }
	if err := writeFileAtomic(path, write, sync); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 2 || !strings.HasPrefix(synced[0], "hotset.") || !strings.HasSuffix(synced[0], "with old at path") ||
		synced[1] != filepath.Base(dir)+" with new at path" {
		t.Fatalf("syncs: %q; want the temporary file before the rename, then the directory", synced)
	}
	if got, _ := os.ReadFile(path); string(got) != "new" {
		t.Fatalf("file holds %q", got)
	}
	// A failed sync leaves the old file and no temporary one.
	failing := func(*os.File) error { return errors.New("disk on fire") }
	os.WriteFile(path, []byte("old"), 0o644)
	if err := writeFileAtomic(path, write, failing); err == nil {
		t.Fatal("a failed sync was not reported")
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("after a failed sync the file holds %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
