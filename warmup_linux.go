package geocache

import (
	"errors"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// populate faults b in. MADV_POPULATE_READ (Linux 5.14) reads inside the
// syscall; older kernels answer EINVAL, and get MADV_WILLNEED (readahead)
// plus a read of one byte per page, which faults on this goroutine.
// fallback reports whether it had to.
func populate(b []byte) (fallback bool, err error) {
	err = unix.Madvise(b, unix.MADV_POPULATE_READ)
	if err == nil || !errors.Is(err, unix.EINVAL) {
		return false, err
	}
	_ = unix.Madvise(b, unix.MADV_WILLNEED)
	touch(b)
	return true, nil
}

// sink keeps the reads of touch from being optimized away.
var sink atomic.Uint32

// touch reads one byte of every page of b.
func touch(b []byte) {
	page := os.Getpagesize()
	var s byte
	for i := 0; i < len(b); i += page {
		s += b[i]
	}
	sink.Store(uint32(s))
}

// residentPages reports, page by page, whether b is in memory. x/sys has
// no mincore wrapper on Linux, so this calls the syscall itself.
func residentPages(b []byte) ([]bool, error) {
	page := os.Getpagesize()
	vec := make([]byte, (len(b)+page-1)/page)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return nil, errno
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out, nil
}

// lockMemory pins b in memory (mlock), with the limit in the error when
// RLIMIT_MEMLOCK is too low.
func lockMemory(b []byte) error {
	err := unix.Mlock(b)
	if err == nil {
		return nil
	}
	var lim unix.Rlimit
	if errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EPERM) {
		if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil {
			return &MlockError{Size: int64(len(b)), Limit: int64(lim.Cur), Err: err}
		}
	}
	return &MlockError{Size: int64(len(b)), Limit: -1, Err: err}
}
