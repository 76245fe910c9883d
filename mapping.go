package geocache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// mapping is a database file's bytes, owned by geocache: mmapped read-only,
// or read into the heap. Owning it (rather than letting maxminddb map the
// file) lets warmup advise and measure the very pages lookups read, and lets
// Close decide when unmapping is safe.
type mapping struct {
	data   []byte
	mapped bool // data is an mmap that release must unmap
	path   string
}

// load maps (or, with inMemory or where mmap is unavailable, reads) the file.
func load(path string, inMemory bool) (*mapping, error) {
	mmap := mmapFile
	if inMemory {
		mmap = nil
	}
	return loadWith(path, mmap)
}

// loadWith maps the file at path with mmap (nil: reads it into memory),
// and reads it instead when mmap fails with errors.ErrUnsupported.
func loadWith(path string, mmap func(*os.File, int) ([]byte, error)) (*mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geocache: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("geocache: %w", err)
	}
	size := fi.Size()
	if size == 0 {
		return nil, fmt.Errorf("geocache: open %s: %w: file is empty", path, ErrInvalidDatabase)
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("geocache: open %s: file too large", path)
	}
	if mmap != nil {
		data, err := mmap(f, int(size))
		if err == nil {
			return &mapping{data: data, mapped: true, path: path}, nil
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			return nil, fmt.Errorf("geocache: %s: %w", path, err)
		}
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("geocache: read %s: %w", path, err)
	}
	return &mapping{data: data, path: path}, nil
}

// release unmaps the file. Only a retired generation's last user calls it.
func (m *mapping) release() error {
	if !m.mapped {
		m.data = nil
		return nil
	}
	m.mapped = false
	data := m.data
	m.data = nil
	return munmap(data)
}

// guardFault turns a fault on the mapping (SIGBUS after the file was
// truncated under it) and any panic of the reader into an error. Deferred,
// with debug.SetPanicOnFault set for the goroutine.
func guardFault(path string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %s: %v", ErrFault, path, r)
	}
}

// setPanicOnFault is debug.SetPanicOnFault, named for what it is for here.
var setPanicOnFault = debug.SetPanicOnFault
