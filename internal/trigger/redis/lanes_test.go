package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// trackSink records batches and what was in flight at once. Until open is
// called, every Deliver waits (for open or ctx); fail, when set, decides
// per batch after that wait; delay is how long each Deliver takes.
type trackSink struct {
	fail  func(ctx context.Context, batch []trigger.Message) error
	delay time.Duration

	mu          sync.Mutex
	gate        chan struct{}
	opened      bool
	out         map[string]int // batches in flight per key
	total       int            // batches in flight
	maxTotal    int
	maxKeyed    int // most batches of one non-empty key in flight at once
	maxKeys     int // most different non-empty keys in flight at once
	batches     [][]trigger.Message
	seen        map[string]bool
	first       []trigger.Message // first deliveries, in order
	deliverings int               // Deliver calls so far
	errs        int               // Deliver calls that failed
}

func newTrackSink(open bool) *trackSink {
	s := &trackSink{gate: make(chan struct{}), out: map[string]int{}, seen: map[string]bool{}}
	if open {
		s.open()
	}
	return s
}

// open lets every Deliver through.
func (s *trackSink) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.opened {
		s.opened = true
		close(s.gate)
	}
}

func (s *trackSink) Deliver(ctx context.Context, batch []trigger.Message) error {
	err := s.deliver(ctx, batch)
	if err != nil {
		s.mu.Lock()
		s.errs++
		s.mu.Unlock()
	}
	return err
}

func (s *trackSink) deliver(ctx context.Context, batch []trigger.Message) error {
	key := batch[0].Key
	s.mu.Lock()
	s.deliverings++
	s.out[key]++
	s.total++
	s.maxTotal = max(s.maxTotal, s.total)
	keys := 0
	for k, n := range s.out {
		if k != "" && n > 0 {
			keys++
			s.maxKeyed = max(s.maxKeyed, n)
		}
	}
	s.maxKeys = max(s.maxKeys, keys)
	gate := s.gate
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.out[key]--
		s.total--
		s.mu.Unlock()
	}()
	select {
	case <-gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.delay > 0 {
		if err := trigger.Sleep(ctx, s.delay); err != nil {
			return err
		}
	}
	if s.fail != nil {
		if err := s.fail(ctx, batch); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, batch)
	for _, m := range batch {
		if !s.seen[string(m.Data)] {
			s.seen[string(m.Data)] = true
			s.first = append(s.first, m)
		}
	}
	return nil
}

// get runs f under the sink's lock.
func (s *trackSink) get(f func(s *trackSink) int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f(s)
}

func (s *trackSink) distinct() int { return s.get(func(s *trackSink) int { return len(s.seen) }) }
func (s *trackSink) inFlight() int { return s.get(func(s *trackSink) int { return s.total }) }

func (s *trackSink) firsts() []trigger.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]trigger.Message(nil), s.first...)
}

// sourceOrdered is source with orderBy set.
func sourceOrdered(t testing.TB, s, consumer, orderBy string) *Source {
	t.Helper()
	raw, _ := json.Marshal(Config{URL: serverURL(), Stream: s, StartPosition: StartTrimHorizon,
		Consumer: consumer, DataField: "body", OrderBy: orderBy})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	src.minBackoff, src.maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	src.idleBlock, src.lagEvery = 50*time.Millisecond, 50*time.Millisecond
	return src
}

// addKeyed appends entries body=m-<i> for i in [from, to), with field k =
// "k<i%keys>" except on every sixth entry, which has no k.
func addKeyed(t testing.TB, rc *goredis.Client, s string, from, to, keys int) {
	t.Helper()
	p := rc.Pipeline()
	for i := from; i < to; i++ {
		values := []any{"body", triggertest.Body(i)}
		if i%6 != 5 {
			values = append(values, "k", keyOf(i, keys))
		}
		p.XAdd(t.Context(), &goredis.XAddArgs{Stream: s, Values: values})
	}
	if _, err := p.Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func keyOf(i, keys int) string { return fmt.Sprintf("k%d", i%keys) }

func index(m trigger.Message) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(string(m.Data), "m-"))
	return i
}

// inOrderPerKey checks that first deliveries came in stream order per key
// and that each message carries its key ("" without the field).
func inOrderPerKey(t *testing.T, msgs []trigger.Message, keys int) {
	t.Helper()
	last := map[string]int{}
	for _, m := range msgs {
		i := index(m)
		want := keyOf(i, keys)
		if i%6 == 5 {
			want = ""
		}
		if m.Key != want {
			t.Fatalf("%s has key %q, want %q", m.Data, m.Key, want)
		}
		if prev, ok := last[m.Key]; ok && m.Key != "" && i < prev {
			t.Fatalf("key %s: got %s after %s: order broken", m.Key, m.Data, triggertest.Body(prev))
		}
		last[m.Key] = i
	}
}

// pendingAt is the number of entries pending at consumer.
func pendingAt(t testing.TB, rc *goredis.Client, s, consumer string) int {
	t.Helper()
	p, err := rc.XPending(context.Background(), s, "test").Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(p.Consumers[consumer])
}

// TestReadingPausesAtHoldLimit checks that while every worker blocks, the
// reader takes entries up to the hold limit, BatchSize×Concurrency +
// BatchSize, and then stops reading (parallelism itself is in the
// conformance suite).
func TestReadingPausesAtHoldLimit(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	sink := newTrackSink(false)
	o := triggertest.Options(2, 0)
	o.Concurrency = 4
	const hold = 2*4 + 2
	stop := triggertest.Run(t, source(t, serverURL(), s, "c1"), sink, o)
	defer sink.open()
	add(t, rc, s, 0, 40)
	triggertest.WaitFor(t, "4 batches in flight", func() bool { return sink.inFlight() == 4 })
	// The consumer's idle time shows that the reader stopped reading.
	triggertest.WaitFor(t, "reading paused at the hold limit", func() bool {
		if pendingAt(t, rc, s, "c1") != hold {
			return false
		}
		cs, err := rc.XInfoConsumers(t.Context(), s, "test").Result()
		return err == nil && len(cs) == 1 && cs[0].Idle >= 300*time.Millisecond
	})
	if n := pendingAt(t, rc, s, "c1"); n != hold {
		t.Errorf("%d entries pending while saturated, want %d (the hold limit)", n, hold)
	}
	sink.open()
	triggertest.WaitFor(t, "40 delivered", func() bool { return sink.distinct() == 40 })
	triggertest.WaitFor(t, "40 acknowledged", func() bool { return o.Status.View().Delivered == 40 })
	stop()
	if n := pendingAt(t, rc, s, "c1"); n != 0 {
		t.Errorf("%d entries pending, want none", n)
	}
}

func TestOrderByStream(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	add(t, rc, s, 0, 200)
	sink := newTrackSink(true)
	sink.delay = time.Millisecond
	o := triggertest.Options(5, 0)
	o.Concurrency = 4
	stop := triggertest.Run(t, sourceOrdered(t, s, "c1", "STREAM"), sink, o)
	triggertest.WaitFor(t, "200 delivered", func() bool { return sink.distinct() == 200 })
	triggertest.WaitFor(t, "200 acknowledged", func() bool { return o.Status.View().Delivered == 200 })
	stop()
	if got := sink.get(func(s *trackSink) int { return s.maxTotal }); got != 1 {
		t.Errorf("%d batches in flight at once, want 1 with orderBy stream", got)
	}
	msgs := sink.firsts()
	triggertest.InOrder(t, msgs)
	for _, m := range msgs {
		if m.Key != s {
			t.Fatalf("key = %q, want the stream %q", m.Key, s)
		}
	}
}

func TestOrderByField(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	addKeyed(t, rc, s, 0, 120, 4)
	sink := newTrackSink(false)
	o := triggertest.Options(3, 0)
	o.Concurrency = 4
	stop := triggertest.Run(t, sourceOrdered(t, s, "c1", "field:k"), sink, o)
	defer sink.open()
	// All four workers busy before any batch ends: different values (and
	// the unordered entries) run in parallel.
	triggertest.WaitFor(t, "4 batches in flight", func() bool { return sink.inFlight() == 4 })
	if got := sink.get(func(s *trackSink) int { return s.maxKeys }); got < 2 {
		t.Errorf("%d different values in flight at once, want at least 2", got)
	}
	sink.open()
	triggertest.WaitFor(t, "120 delivered", func() bool { return sink.distinct() == 120 })
	triggertest.WaitFor(t, "120 acknowledged", func() bool { return o.Status.View().Delivered == 120 })
	stop()
	if got := sink.get(func(s *trackSink) int { return s.maxKeyed }); got != 1 {
		t.Errorf("%d batches of one value in flight at once, want 1", got)
	}
	inOrderPerKey(t, sink.firsts(), 4)
}

func TestFailureAmongConcurrentBatches(t *testing.T) {
	for _, orderBy := range []string{OrderNone, "field:k"} {
		t.Run(orderBy, func(t *testing.T) {
			rc := server(t)
			s := stream(t, rc)
			addKeyed(t, rc, s, 0, 200, 4)
			// The batch holding m-0002 fails once, while other batches are
			// in flight; they wait until it failed and then succeed.
			failed := make(chan struct{})
			var once sync.Once
			var concurrent atomic.Bool
			var sink *trackSink
			sink = newTrackSink(true)
			sink.fail = func(ctx context.Context, batch []trigger.Message) error {
				for _, m := range batch {
					if string(m.Data) != triggertest.Body(2) {
						continue
					}
					var err error
					once.Do(func() {
						// Not waitFor: this is not the test's goroutine.
						for end := time.Now().Add(20 * time.Second); sink.inFlight() < 3 && time.Now().Before(end); {
							time.Sleep(5 * time.Millisecond)
						}
						concurrent.Store(sink.inFlight() >= 3)
						close(failed)
						err = triggertest.ErrRefused
					})
					return err
				}
				select {
				case <-failed:
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Second):
				}
				// Still busy as the session ends: a batch in flight must not
				// be cancelled by its sibling's failure.
				return trigger.Sleep(ctx, 50*time.Millisecond)
			}
			o := triggertest.Options(5, 0)
			o.Concurrency = 4
			stop := triggertest.Run(t, sourceOrdered(t, s, "c1", orderBy), sink, o)
			triggertest.WaitFor(t, "200 delivered", func() bool { return sink.distinct() == 200 })
			triggertest.WaitFor(t, "200 acknowledged", func() bool { return o.Status.View().Delivered == 200 })
			stop()
			select {
			case <-failed:
			default:
				t.Fatal("the batch never failed")
			}
			if !concurrent.Load() {
				t.Error("the batch failed with fewer than 2 other batches in flight")
			}
			if n := pendingAt(t, rc, s, "c1"); n != 0 {
				t.Errorf("%d entries pending, want none", n)
			}
			// Batches in flight when one failed finished and were
			// acknowledged; those not started were not delivered: nothing
			// was delivered twice.
			if n := sink.get(func(s *trackSink) int { return len(slices.Concat(s.batches...)) }); n != 200 {
				t.Errorf("delivered %d messages, want 200 (each once)", n)
			}
			if n := sink.get(func(s *trackSink) int { return s.errs }); n != 1 {
				t.Errorf("%d Deliver calls failed, want 1 (batches in flight beside the failed one must finish, not be cancelled)", n)
			}
			if orderBy != OrderNone {
				inOrderPerKey(t, sink.firsts(), 4)
			}
		})
	}
}

// TestStopWhileBusy stops Run while every worker is inside Deliver and the
// reader waits for room, then while the reader blocks on an idle stream.
func TestStopWhileBusy(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	add(t, rc, s, 0, 40)
	sink := newTrackSink(false) // blocks until ctx ends
	o := triggertest.Options(2, 0)
	o.Concurrency = 4
	stop := triggertest.Run(t, source(t, serverURL(), s, "c1"), sink, o)
	triggertest.WaitFor(t, "4 batches in flight", func() bool { return sink.inFlight() == 4 })
	stopWithin(t, stop)
	if d := o.Status.View().Delivered; d != 0 {
		t.Errorf("%d acknowledged, want none", d)
	}

	again := newTrackSink(true)
	o = triggertest.Options(2, 0)
	o.Concurrency = 4
	stop = triggertest.Run(t, source(t, serverURL(), s, "c1"), again, o)
	triggertest.WaitFor(t, "40 delivered after the restart", func() bool { return again.distinct() == 40 })
	triggertest.WaitFor(t, "40 acknowledged", func() bool { return o.Status.View().Delivered == 40 })
	stopWithin(t, stop)

	src := source(t, serverURL(), s, "c2")
	src.idleBlock = time.Minute // the reader blocks on the drained stream
	stop = triggertest.Run(t, src, again, triggertest.Options(2, 0))
	triggertest.WaitFor(t, "c2 reading", func() bool {
		cs, err := rc.XInfoConsumers(t.Context(), s, "test").Result()
		return err == nil && slices.ContainsFunc(cs, func(c goredis.XInfoConsumer) bool { return c.Name == "c2" })
	})
	stopWithin(t, stop)
}

// stopWithin calls stop, failing the test if it does not return in 20 s.
func stopWithin(t *testing.T, stop func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}

// TestKeepClaimedWhileBusy checks that entries queued or in flight at one
// consumer are not taken over by another while the first is slow.
func TestKeepClaimedWhileBusy(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	const hold = 2*4 + 2
	add(t, rc, s, 0, hold)
	const idle = 1500 * time.Millisecond
	a := source(t, serverURL(), s, "a")
	a.claimIdle = idle
	slow := newTrackSink(false)
	o := triggertest.Options(2, 0)
	o.Concurrency = 4
	stopA := triggertest.Run(t, a, slow, o)
	defer slow.open()
	triggertest.WaitFor(t, "a holding every entry", func() bool {
		return slow.inFlight() == 4 && pendingAt(t, rc, s, "a") == hold
	})
	b := source(t, serverURL(), s, "b")
	b.claimIdle = idle
	other := newTrackSink(true)
	stopB := triggertest.Run(t, b, other, triggertest.Options(2, 0))
	// Past three claim periods, every entry must still be a's and none
	// idle for claimIdle.
	end := time.Now().Add(3 * idle)
	triggertest.WaitFor(t, "three claim periods", func() bool {
		ps, err := rc.XPendingExt(t.Context(), &goredis.XPendingExtArgs{Stream: s, Group: "test", Start: "-", End: "+", Count: 100}).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Consumer != "a" || p.Idle >= idle {
				t.Fatalf("entry %s pending at %s, idle %s; want a, idle under %s", p.ID, p.Consumer, p.Idle, idle)
			}
		}
		return time.Now().After(end)
	})
	if n := other.distinct(); n != 0 {
		t.Errorf("b was given %d of a's entries", n)
	}
	slow.open()
	triggertest.WaitFor(t, "a delivered everything", func() bool { return slow.distinct() == hold })
	stopA()
	stopB()
}
