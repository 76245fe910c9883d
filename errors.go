package geocache

import (
	"errors"
	"fmt"
	"net/netip"
)

var (
	// ErrClosed is returned by Lookup after Close.
	ErrClosed = errors.New("geocache: cache is closed")

	// ErrInvalidDatabase wraps every error that says the file is not a
	// usable MaxMind DB: empty, truncated, corrupt metadata or search tree.
	ErrInvalidDatabase = errors.New("geocache: invalid database")

	// ErrInvalidAddress is returned for the zero netip.Addr and for IPv6
	// addresses with a zone: a zone names a link, not a place.
	ErrInvalidAddress = errors.New("geocache: invalid address")

	// ErrIPv4Only is returned for an IPv6 address (other than an
	// IPv4-mapped one) looked up in an IPv4-only database.
	ErrIPv4Only = errors.New("geocache: IPv6 address in an IPv4-only database")

	// ErrFault is returned (wrapped, with the file's path) when reading
	// the mapped file faults: the file was truncated or rewritten in place
	// under the mapping. Cached answers go on being served; Reload a good
	// file.
	ErrFault = errors.New("geocache: fault reading the mapped file (truncated or rewritten in place?)")

	// ErrNoPath is returned by Reload("") on a cache opened with
	// OpenBytes.
	ErrNoPath = errors.New("geocache: no file to reload: the cache was opened from bytes")

	// ErrHotSet is returned (wrapped) by ReadHotSet for a file that is
	// not a hot set of this version: foreign, truncated or corrupt.
	ErrHotSet = errors.New("geocache: invalid hot-set file")
)

// LookupError reports a failed lookup of one address. Err is one of the
// errors above or an error of the maxminddb reader (a corrupt search tree,
// or a record that does not decode into the record type).
type LookupError struct {
	Addr netip.Addr
	Err  error
}

func (e *LookupError) Error() string {
	return "geocache: lookup " + e.Addr.String() + ": " + e.Err.Error()
}

// Unwrap returns the underlying error, for errors.Is and errors.As.
func (e *LookupError) Unwrap() error { return e.Err }

// MlockError reports that Options.Mlock could not pin the database:
// usually RLIMIT_MEMLOCK (Limit, in bytes; -1 if unknown) is below the
// file's size. Raise the limit (ulimit -l, LimitMEMLOCK= in systemd) or
// unset Mlock.
type MlockError struct {
	Size, Limit int64
	Err         error
}

func (e *MlockError) Error() string {
	return fmt.Sprintf("geocache: mlock %d bytes (RLIMIT_MEMLOCK %d): %v", e.Size, e.Limit, e.Err)
}

// Unwrap returns the system error.
func (e *MlockError) Unwrap() error { return e.Err }
