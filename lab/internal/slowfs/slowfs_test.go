package slowfs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A read through the mount takes at least the delay, and returns the
// file's bytes.
func TestReadIsSlowed(t *testing.T) {
	if !Available() {
		t.Skip("FUSE unavailable (needs /dev/fuse and root)")
	}
	src, mnt := t.TempDir(), t.TempDir()
	want := bytes.Repeat([]byte("geocache"), 4096)
	if err := os.WriteFile(filepath.Join(src, "f"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	const delay = 50 * time.Millisecond
	srv, err := Mount(src, mnt, delay)
	if err != nil {
		t.Skipf("mount: %v", err)
	}
	defer srv.Unmount()
	start := time.Now()
	got, err := os.ReadFile(filepath.Join(mnt, "f"))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("content differs through the mount")
	}
	if took < delay {
		t.Errorf("read took %v, want at least %v", took, delay)
	}
	// The source itself is fast.
	start = time.Now()
	os.ReadFile(filepath.Join(src, "f"))
	if fast := time.Since(start); fast >= delay {
		t.Errorf("direct read took %v", fast)
	}
}
