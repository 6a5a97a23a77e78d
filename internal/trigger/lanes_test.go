package trigger

import (
	"context"
	"sync"
	"testing"
	"time"
)

// lanesRun feeds puts into Lanes worked by n workers whose deliver blocks
// until released, and records what was delivered.
type lanesRun struct {
	l       *Lanes[int]
	mu      sync.Mutex
	out     map[string]int // batches of a key out now
	maxOut  map[string]int
	total   int // batches out now
	maxTot  int
	got     map[string][]int
	release chan struct{}
	started chan []int
}

func newLanesRun(t *testing.T, opts Options, limit, workers int) (*lanesRun, context.CancelFunc) {
	r := &lanesRun{
		l: NewLanes[int](opts, limit), out: map[string]int{}, maxOut: map[string]int{},
		got: map[string][]int{}, release: make(chan struct{}), started: make(chan []int, 100),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.l.Work(ctx, workers, func(key string, batch []int) {
			r.mu.Lock()
			r.out[key]++
			r.total++
			r.maxOut[key] = max(r.maxOut[key], r.out[key])
			r.maxTot = max(r.maxTot, r.total)
			r.got[key] = append(r.got[key], batch...)
			r.mu.Unlock()
			r.started <- batch
			<-r.release
			r.mu.Lock()
			r.out[key]--
			r.total--
			r.mu.Unlock()
		})
	}()
	stop := func() {
		cancel()
		close(r.release)
		<-done
	}
	return r, stop
}

func TestLanesKeepOrderPerKeyAndRunKeysInParallel(t *testing.T) {
	r, stop := newLanesRun(t, Options{BatchSize: 2}, 100, 4)
	ctx := context.Background()
	for i := range 6 {
		r.l.Put(ctx, "a", i)
		r.l.Put(ctx, "b", 100+i)
	}
	// Two keys: two batches out at once, never two of one key.
	<-r.started
	<-r.started
	select {
	case b := <-r.started:
		t.Fatalf("a third batch %v went out while both keys were busy", b)
	case <-time.After(50 * time.Millisecond):
	}
	for range 4 {
		r.release <- struct{}{}
		<-r.started
	}
	r.release <- struct{}{}
	r.release <- struct{}{}
	stop()
	for k, want := range map[string][]int{"a": {0, 1, 2, 3, 4, 5}, "b": {100, 101, 102, 103, 104, 105}} {
		if got := r.got[k]; len(got) != len(want) {
			t.Fatalf("key %s: got %v, want %v", k, got, want)
		} else {
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("key %s out of order: got %v, want %v", k, got, want)
				}
			}
		}
		if r.maxOut[k] != 1 {
			t.Errorf("key %s had %d batches out at once, want 1", k, r.maxOut[k])
		}
	}
}

func TestLanesUnkeyedParallelismGrowsWithBacklog(t *testing.T) {
	r, stop := newLanesRun(t, Options{BatchSize: 2}, 100, 3)
	ctx := context.Background()
	r.l.Put(ctx, "", 1)
	// One message: one batch out, the other workers idle.
	if b := <-r.started; len(b) != 1 {
		t.Fatalf("first batch %v, want one message", b)
	}
	for i := 2; i <= 9; i++ {
		r.l.Put(ctx, "", i)
	}
	// A backlog: every worker busy.
	<-r.started
	<-r.started
	r.mu.Lock()
	tot := r.maxTot
	r.mu.Unlock()
	if tot != 3 {
		t.Fatalf("%d unkeyed batches out at once, want 3 (one per worker)", tot)
	}
	for range 3 {
		r.release <- struct{}{}
	}
	for range 2 { // 9 messages: 1 + 2 + 2, then 2 + 2
		<-r.started
		r.release <- struct{}{}
	}
	stop()
	seen := map[int]bool{}
	for _, v := range r.got[""] {
		seen[v] = true
	}
	if len(seen) != 9 {
		t.Fatalf("delivered %v, want 1..9 once each", r.got[""])
	}
}

func TestLanesPutBlocksAtLimitAndWindowFlushes(t *testing.T) {
	r, stop := newLanesRun(t, Options{BatchSize: 10, BatchWindow: 30 * time.Millisecond}, 10, 1)
	defer stop()
	ctx := context.Background()
	start := time.Now()
	r.l.Put(ctx, "k", 1)
	b := <-r.started // partial batch, sent once the window passed
	if len(b) != 1 || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("batch %v after %v; want [1] after the 30ms window", b, time.Since(start))
	}
	for i := 2; i <= 10; i++ {
		if !r.l.Put(ctx, "k", i) {
			t.Fatal("put failed below the limit")
		}
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if r.l.Put(short, "k", 11) {
		t.Fatal("put past the limit did not block")
	}
	if n := r.l.Held(); n != 10 {
		t.Fatalf("held %d, want 10", n)
	}
	r.release <- struct{}{} // frees one: the put goes through
	if !r.l.Put(ctx, "k", 11) {
		t.Fatal("put after a release failed")
	}
	var got []int
	for len(got) < 10 {
		got = append(got, <-r.started...)
		r.release <- struct{}{}
	}
	for i, v := range got {
		if v != i+2 {
			t.Fatalf("delivered %v, want 2..11 in order", got)
		}
	}
}

func TestLanesDrain(t *testing.T) {
	l := NewLanes[int](Options{BatchSize: 5}, 10)
	for i := range 3 {
		l.Put(context.Background(), "k", i)
	}
	if got := l.Drain(); len(got) != 3 || l.Held() != 0 {
		t.Fatalf("drain %v, held %d; want 3 messages and none held", got, l.Held())
	}
}

func TestLanesStopTakingOnceCancelled(t *testing.T) {
	l := NewLanes[int](Options{BatchSize: 1}, 10)
	for i := range 3 {
		l.Put(context.Background(), "", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var got []int
	l.Work(ctx, 1, func(_ string, batch []int) {
		got = append(got, batch...)
		cancel() // due batches remain, but no more are taken
	})
	if len(got) != 1 || l.Held() != 2 {
		t.Fatalf("delivered %v with %d held after cancel; want one batch and 2 held", got, l.Held())
	}
}
