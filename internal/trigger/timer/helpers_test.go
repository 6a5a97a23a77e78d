package timer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// fakeClock moves only when told to.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters map[*fakeWaiter]struct{}
	changed chan struct{} // closed and replaced when waiters change
}

type fakeWaiter struct {
	t time.Time
	c chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, waiters: make(map[*fakeWaiter]struct{}), changed: make(chan struct{})}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) At(t time.Time) (<-chan time.Time, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan time.Time, 1)
	if !t.After(f.now) {
		c <- f.now
		return c, func() {}
	}
	w := &fakeWaiter{t: t, c: c}
	f.waiters[w] = struct{}{}
	f.notifyLocked()
	return c, func() {
		f.mu.Lock()
		delete(f.waiters, w)
		f.notifyLocked()
		f.mu.Unlock()
	}
}

func (f *fakeClock) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Set moves the clock to t and wakes the waiters that are due.
func (f *fakeClock) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
	for w := range f.waiters {
		if !w.t.After(t) {
			w.c <- t
			delete(f.waiters, w)
		}
	}
	f.notifyLocked()
}

func (f *fakeClock) Advance(d time.Duration) { f.Set(f.Now().Add(d)) }

// WaitWaiters waits until at least n timers wait for a time after now.
func (f *fakeClock) WaitWaiters(t testing.TB, n int) {
	t.Helper()
	f.waitCond(t, fmt.Sprintf("%d timers", n), func() bool { return len(f.waiters) >= n })
}

// WaitWaiterBy waits until a timer waits for a time at or before by.
func (f *fakeClock) WaitWaiterBy(t testing.TB, by time.Time) {
	t.Helper()
	f.waitCond(t, "a timer by "+by.String(), func() bool {
		for w := range f.waiters {
			if !w.t.After(by) {
				return true
			}
		}
		return false
	})
}

func (f *fakeClock) waitCond(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		ok, ch := cond(), f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s on the fake clock", what)
		}
	}
}

// tickSink records ticks by CloudEvent id.
type tickSink struct {
	mu      sync.Mutex
	got     map[string]int
	msgs    []trigger.Message
	tries   int
	fail    func(trigger.Message) error
	changed chan struct{}
}

func newTickSink() *tickSink {
	return &tickSink{got: make(map[string]int), changed: make(chan struct{})}
}

func (s *tickSink) Deliver(_ context.Context, batch []trigger.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		close(s.changed)
		s.changed = make(chan struct{})
	}()
	s.tries++
	for _, m := range batch {
		if s.fail != nil {
			if err := s.fail(m); err != nil {
				return err
			}
		}
	}
	for _, m := range batch {
		s.got[m.ID]++
		s.msgs = append(s.msgs, m)
	}
	return nil
}

func (s *tickSink) setFail(f func(trigger.Message) error) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

// waitFor waits until cond holds on the sink.
func (s *tickSink) waitFor(t testing.TB, what string, cond func(s *tickSink) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		ok, ch := cond(s), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; delivered %v", what, s.ids())
		}
	}
}

// waitIDs waits until every id was delivered.
func (s *tickSink) waitIDs(t testing.TB, ids ...string) {
	t.Helper()
	s.waitFor(t, "ticks "+strings.Join(ids, ","), func(s *tickSink) bool {
		for _, id := range ids {
			if s.got[id] == 0 {
				return false
			}
		}
		return true
	})
}

// ids returns the delivered ids in order (callers hold no lock).
func (s *tickSink) ids() []string {
	var out []string
	for _, m := range s.msgs {
		out = append(out, m.ID)
	}
	return out
}

// delivered returns the delivered ids and counts.
func (s *tickSink) delivered() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.got))
	for k, v := range s.got {
		out[k] = v
	}
	return out
}

func (s *tickSink) messages() []trigger.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// node is one running Source.
type node struct {
	cancel context.CancelFunc
	done   chan error
}

// startNode runs a Source of trigger fn/tr until stop.
func startNode(t *testing.T, timers *Timers, config string, sink trigger.Sink) *node {
	t.Helper()
	src, err := timers.NewSource("fn", "tr", []byte(config))
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- src.Run(ctx, sink, trigger.Options{Concurrency: 1, Status: trigger.NewStatus()}) }()
	t.Cleanup(n.stop)
	return n
}

// stop ends the node and waits for Run to return.
func (n *node) stop() {
	n.cancel()
	<-n.done
	n.done <- nil // later stops return at once
}

// waitDone waits until the tick's key says done: a delivery is finished
// only then, and moving the fake clock a lease ahead before that would let
// another node take the claim over (as it should when a node stalls that
// long).
func waitDone(t *testing.T, kv store.KV, tick time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	changes, err := kv.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("fn.tr.%d", tick.Unix())
	e, err := kv.Get(ctx, key)
	for {
		var st tickState
		if err == nil && json.Unmarshal(e.Value, &st) == nil && st.State == stateDone {
			return
		}
		for e = range changes {
			if e.Key == key {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("tick %s not done", tick)
		}
		err = nil
	}
}
