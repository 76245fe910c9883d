package geocache

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Why persist the hot set: a restarted service starts with an empty cache,
// so its first minutes of traffic pay the database for every hot network.
// SaveHotSet writes which blocks are hot; a later Open (Options.HotSetFile)
// looks them up again before it reports ready. The file holds addresses,
// not answers, so a file saved against an older database is harmless: each
// address is answered by the database being served.

// The hot-set format, version 1, little-endian:
//
//	magic "GCHOTSET", version byte 1
//	uvarint n4, then n4 IPv4 block addresses, ascending, each a uvarint
//	    delta from the previous one (from 0)
//	uvarint n6, then n6 IPv6 block addresses, ascending by (hi, lo) words:
//	    uvarint delta of hi, then uvarint lo
//	CRC-32C of everything before it, 4 bytes
//
// Blocks are /24 and /48 or inside them, so deltas are small: about
// 2.5 bytes per IPv4 address.
const (
	hotSetMagic   = "GCHOTSET"
	hotSetVersion = 1
	// maxHotSet bounds the addresses a file may claim, so a corrupt
	// count cannot make ReadHotSet allocate without limit.
	maxHotSet = 1 << 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SaveHotSet writes the hot set, the blocks of the networks cached in the
// first level of the cache now, to w in a compact, versioned and
// checksummed format that ReadHotSet reads. It takes no lock that lookups
// take; its cost is a scan of the first-level table (about 1 ms per 64 MiB
// of budget).
func (c *Cache[T]) SaveHotSet(w io.Writer) error {
	g := c.cur.Load()
	if g == nil {
		return ErrClosed
	}
	var v4 []uint32
	var v6 [][2]uint64
	g.front.each(func(s slot4) bool { v4 = append(v4, s.block()); return true },
		func(_ slot6, hi, lo uint64) bool { v6 = append(v6, [2]uint64{hi, lo}); return true })
	_, err := w.Write(encodeHotSet(v4, v6))
	return err
}

func encodeHotSet(v4 []uint32, v6 [][2]uint64) []byte {
	slices.Sort(v4)
	v4 = slices.Compact(v4)
	slices.SortFunc(v6, func(a, b [2]uint64) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	v6 = slices.Compact(v6)
	buf := append([]byte(hotSetMagic), hotSetVersion)
	buf = binary.AppendUvarint(buf, uint64(len(v4)))
	prev := uint32(0)
	for _, v := range v4 {
		buf = binary.AppendUvarint(buf, uint64(v-prev))
		prev = v
	}
	buf = binary.AppendUvarint(buf, uint64(len(v6)))
	prevHi := uint64(0)
	for _, v := range v6 {
		buf = binary.AppendUvarint(buf, v[0]-prevHi)
		buf = binary.AppendUvarint(buf, v[1])
		prevHi = v[0]
	}
	return binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
}

// ReadHotSet reads a hot set written by SaveHotSet. A file that is not one
// (another format or version, truncated, or failing its checksum) gives an
// error matching ErrHotSet.
func ReadHotSet(r io.Reader) ([]netip.Addr, error) {
	data, err := io.ReadAll(io.LimitReader(r, 20*maxHotSet))
	if err != nil {
		return nil, err
	}
	return decodeHotSet(data)
}

func decodeHotSet(data []byte) ([]netip.Addr, error) {
	head := len(hotSetMagic) + 1
	if len(data) < head+4 || !bytes.HasPrefix(data, []byte(hotSetMagic)) {
		return nil, fmt.Errorf("%w: no hot-set header", ErrHotSet)
	}
	if v := data[len(hotSetMagic)]; v != hotSetVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrHotSet, v, hotSetVersion)
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrHotSet)
	}
	d := hotSetDecoder{buf: body[head:]}
	n4 := d.count()
	addrs := make([]netip.Addr, 0, min(n4, uint64(len(d.buf))))
	v := uint64(0)
	for range n4 {
		if v += d.uvarint(); v > 0xffffffff {
			d.err = errors.New("IPv4 address out of range")
		}
		if d.err != nil {
			break
		}
		addrs = append(addrs, netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}))
	}
	n6 := d.count()
	hi := uint64(0)
	for range n6 {
		hi += d.uvarint()
		lo := d.uvarint()
		if d.err != nil {
			break
		}
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], hi)
		binary.BigEndian.PutUint64(b[8:], lo)
		addrs = append(addrs, netip.AddrFrom16(b))
	}
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%d bytes after the addresses", len(d.buf))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHotSet, d.err)
	}
	return addrs, nil
}

// hotSetDecoder reads uvarints until the first error, which it keeps.
type hotSetDecoder struct {
	buf []byte
	err error
}

func (d *hotSetDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err = errors.New("truncated")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *hotSetDecoder) count() uint64 {
	n := d.uvarint()
	if n > maxHotSet {
		d.err = fmt.Errorf("count %d over the limit %d", n, maxHotSet)
		return 0
	}
	return n
}

// Prewarm looks up every address of addrs, so that their networks are
// cached before traffic asks for them. Addresses the database cannot
// answer (invalid, IPv6 in an IPv4-only database) are skipped. It stops
// early with ctx's error, or ErrClosed; a Reload ends it early without an
// error (the reload carries what was cached over to the new database).
// Its lookups are not counted in Stats' Hits and Misses, which describe
// traffic; it costs a miss per network not yet cached.
func (c *Cache[T]) Prewarm(ctx context.Context, addrs iter.Seq[netip.Addr]) error {
	g, u, err := c.current()
	if err != nil {
		return err
	}
	defer g.exit(u)
	gctx, cancel := g.within(ctx)
	defer cancel()
	g.prewarm(gctx, addrs, 1)
	if c.cur.Load() == nil {
		return ErrClosed
	}
	return ctx.Err()
}

// prewarm caches the answers for addrs in g until ctx is done, and waits
// for the cache to admit them. It returns how many it looked up. With
// share in (0, 1) it paces itself to that fraction of one CPU: after each
// batch it sleeps for the batch's time times (1/share - 1).
func (g *generation[T]) prewarm(ctx context.Context, addrs iter.Seq[netip.Addr], share float64) (n int) {
	const batch = 256
	start, seen := time.Now(), 0
	for a := range addrs {
		if seen++; seen%batch == 0 {
			if ctx.Err() != nil {
				break
			}
			if g.store.pending() > maxPending/2 {
				g.store.rc.Wait() // pace the burst rather than have it dropped
			}
			if share > 0 && share < 1 {
				pause(ctx, time.Duration(float64(time.Since(start))*(1/share-1)))
				start = time.Now()
			}
		}
		if a = g.key(a); a.IsValid() && a.Zone() == "" && !(g.ipv4 && a.Is6()) {
			g.resolve(a, true)
			n++
		}
	}
	g.store.rc.Wait() // admitted now, not after the first requests
	return n
}

// pause sleeps for d or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// loadHotSet prewarms g with the hot-set file at path. A missing file is
// normal (the first start); a bad one is logged and ignored.
func (c *Cache[T]) loadHotSet(ctx context.Context, g *generation[T], path string) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var addrs []netip.Addr
	if err == nil {
		addrs, err = ReadHotSet(f)
		f.Close()
	}
	if err != nil {
		if l := c.opts.Logger; l != nil {
			l.Warn("geocache: ignoring the hot-set file", "path", path, "err", err)
		}
		return
	}
	n := g.prewarm(ctx, slices.Values(addrs), 1) // before Ready: no traffic to yield to
	if l := c.opts.Logger; l != nil {
		l.Info("geocache: hot set loaded", "path", path, "addresses", n)
	}
}

// saveHotSet writes the hot set to path, atomically and durably.
func (c *Cache[T]) saveHotSet(path string) error {
	return writeFileAtomic(path, c.SaveHotSet, (*os.File).Sync)
}

// writeFileAtomic writes a file at path with write, so that a crash at any
// moment leaves either the previous file or the whole new one: it writes a
// temporary file beside path, syncs it (else the rename can reach the disk
// before the data, leaving an empty or partial file after a power loss),
// renames it over path, and syncs the directory (else the rename itself
// can be lost). sync is (*os.File).Sync.
func writeFileAtomic(path string, write func(io.Writer) error, sync func(*os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := sync(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return sync(d)
}
