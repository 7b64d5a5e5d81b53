package dispatch

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// Batch jobs read and record their rows Config.Writers at a time; a job
// waiting for its turn gives up when its context ends.
func TestAsWriter(t *testing.T) {
	t.Parallel()
	r := &Relay{writers: make(chan struct{}, 2)}
	var now, most atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			err := r.asWriter(context.Background(), func() error {
				n := now.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				<-release
				now.Add(-1)
				return nil
			})
			if err != nil {
				t.Errorf("asWriter: %v", err)
			}
		})
	}
	// Two hold the slots; the others wait. One that gives up returns its
	// context's error without running.
	for len(r.writers) < 2 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := r.asWriter(ctx, func() error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Errorf("asWriter with every slot taken and a cancelled context: err = %v, ran %v; want context.Canceled, not run", err, ran)
	}
	close(release)
	wg.Wait()
	if most.Load() != 2 {
		t.Errorf("at most %d ran at once, want 2 (Writers)", most.Load())
	}
	want := errors.New("recording failed")
	if err := r.asWriter(context.Background(), func() error { return want }); !errors.Is(err, want) {
		t.Errorf("asWriter returned %v, want fn's error", err)
	}
}
