//go:build unix

package geocache

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func mmapFile(f *os.File, size int) ([]byte, error) {
	data, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	return data, mmapError(err)
}

// mmapError returns mmap's error, marked errors.ErrUnsupported where the
// filesystem cannot map files (ENODEV: FUSE with direct I/O, some network
// filesystems), so that load reads the file instead, as maxminddb.Open
// does.
func mmapError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("%w: %w", errors.ErrUnsupported, os.NewSyscallError("mmap", err))
	}
	return os.NewSyscallError("mmap", err)
}

func munmap(b []byte) error { return unix.Munmap(b) }
