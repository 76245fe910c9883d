package geocache

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watcher reloads the cache when its file changes.
type watcher struct {
	w    *fsnotify.Watcher
	done chan struct{}
	wg   sync.WaitGroup
}

// watch starts watching c's file: the directory, since geoipupdate
// replaces the file by rename, which a watch on the file would lose.
// Bursts of events (write, chmod, rename) within debounce make one reload.
func (c *Cache[T]) watch(debounce time.Duration) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	path := c.path
	dir, base := filepath.Dir(path), filepath.Base(path)
	if err := fw.Add(dir); err != nil {
		fw.Close()
		return err
	}
	w := &watcher{w: fw, done: make(chan struct{})}
	c.watcher = w
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		var timer <-chan time.Time
		for {
			select {
			case <-w.done:
				return
			case ev, ok := <-fw.Events:
				if !ok {
					return
				}
				if filepath.Base(ev.Name) == base && !ev.Has(fsnotify.Remove) {
					timer = time.After(debounce)
				}
			case err, ok := <-fw.Errors:
				if !ok {
					return
				}
				if l := c.opts.Logger; l != nil {
					l.Warn("geocache: watching the database file", "path", path, "err", err)
				}
			case <-timer:
				timer = nil
				c.Reload("")
			}
		}
	}()
	return nil
}

func (w *watcher) stop() {
	close(w.done)
	w.w.Close()
	w.wg.Wait()
}
