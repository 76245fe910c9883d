package flight

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDoMergesConcurrentCalls(t *testing.T) {
	var g Group[int]
	var runs atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	var shared atomic.Int32
	for range 50 {
		wg.Go(func() {
			v, err, sh := g.Do(7, func() (int, error) {
				runs.Add(1)
				<-release
				return 42, nil
			})
			if v != 42 || err != nil {
				t.Errorf("got %d %v", v, err)
			}
			if sh {
				shared.Add(1)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let the callers pile up on the first
	close(release)
	wg.Wait()
	if runs.Load() != 1 || shared.Load() != 49 {
		t.Errorf("fn ran %d times, %d shared", runs.Load(), shared.Load())
	}
}

func TestDoKeysIndependentAndErrors(t *testing.T) {
	var g Group[string]
	boom := errors.New("boom")
	if _, err, _ := g.Do(1, func() (string, error) { return "", boom }); err != boom {
		t.Fatal(err)
	}
	// A finished call is forgotten: the next Do runs fn again.
	if v, err, sh := g.Do(1, func() (string, error) { return "again", nil }); v != "again" || err != nil || sh {
		t.Fatal(v, err, sh)
	}
	if v, _, _ := g.Do(17, func() (string, error) { return "other shard key", nil }); v != "other shard key" {
		t.Fatal(v)
	}
}
