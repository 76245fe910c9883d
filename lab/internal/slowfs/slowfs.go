// Package slowfs mounts a read-only passthrough FUSE file system that adds
// a fixed latency to every read: slow storage on demand, to measure what
// page faults on a cold mapping cost (the experiment of
// MaxMind-DB-Reader-python PR #362, which used 10 ms).
//
// Serve it from a separate process from the one that maps its files: a
// goroutine blocked in a page fault keeps its P, so with every P faulting
// an in-process server could never run to answer the faults.
package slowfs

import (
	"context"
	"os"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Available reports whether this machine can mount FUSE file systems.
func Available() bool {
	_, err := os.Stat("/dev/fuse")
	return err == nil && os.Geteuid() == 0
}

// Mount serves the directory src at mnt, every read delayed by delay.
// Unmount the returned server to stop.
func Mount(src, mnt string, delay time.Duration) (*fuse.Server, error) {
	lr, err := fs.NewLoopbackRoot(src)
	if err != nil {
		return nil, err
	}
	root := &node{LoopbackNode: lr.(*fs.LoopbackNode), delay: delay}
	return fs.Mount(mnt, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			DirectMount: true, // as root, mount(2) directly: no fusermount needed
			FsName:      "slowfs",
			Name:        "slowfs",
		},
	})
}

// node is a loopback node whose files read slowly; it wraps every child
// the loopback creates, so the whole tree is slow.
type node struct {
	*fs.LoopbackNode
	delay time.Duration
}

var _ fs.NodeWrapChilder = (*node)(nil)

func (n *node) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), delay: n.delay}
}

var _ fs.NodeOpener = (*node)(nil)

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &file{f: fh.(*fs.LoopbackFile), delay: n.delay}, fl, 0
}

// file forwards to a loopback file, delaying reads. It does not embed the
// loopback file, so that it offers no kernel passthrough fd (which would
// let reads bypass the delay).
type file struct {
	f     *fs.LoopbackFile
	delay time.Duration
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
)

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	time.Sleep(f.delay)
	return f.f.Read(ctx, buf, off)
}

func (f *file) Release(ctx context.Context) syscall.Errno { return f.f.Release(ctx) }

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.f.Getattr(ctx, out)
}

func (f *file) Flush(ctx context.Context) syscall.Errno { return f.f.Flush(ctx) }

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.f.Lseek(ctx, off, whence)
}
