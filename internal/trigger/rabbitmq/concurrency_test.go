package rabbitmq

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// gateSink counts the batches inside Deliver, in all and per key, lets
// fail refuse a batch (when set), holds the others until gate is closed
// (when set) or ctx ends, and records them in Sink.
type gateSink struct {
	triggertest.Sink
	gate chan struct{}
	fail func(ctx context.Context, batch []trigger.Message) error

	mu       sync.Mutex
	out      int            // batches inside Deliver now
	maxOut   int            // the most at once
	outKey   map[string]int // per non-empty key
	maxKey   int            // the most of one key at once
	mixed    bool           // a batch held messages of several keys
	attempts int
}

func newGateSink(gated bool) *gateSink {
	s := &gateSink{outKey: map[string]int{}}
	if gated {
		s.gate = make(chan struct{})
	}
	return s
}

func (s *gateSink) Deliver(ctx context.Context, batch []trigger.Message) error {
	key := batch[0].Key
	s.mu.Lock()
	s.attempts++
	s.out++
	s.maxOut = max(s.maxOut, s.out)
	for _, m := range batch {
		if m.Key != key {
			s.mixed = true
		}
	}
	if key != "" {
		s.outKey[key]++
		s.maxKey = max(s.maxKey, s.outKey[key])
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.out--
		if key != "" {
			s.outKey[key]--
		}
		s.mu.Unlock()
	}()
	if s.fail != nil {
		if err := s.fail(ctx, batch); err != nil {
			return err
		}
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Sink.Deliver(ctx, batch)
}

// now returns the batches inside Deliver and the keys they are of.
func (s *gateSink) now() (out int, keys int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.outKey {
		if n > 0 {
			keys++
		}
	}
	return s.out, keys
}

func (s *gateSink) peaks() (maxOut, maxKey int, mixed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxOut, s.maxKey, s.mixed
}

// orderedSource is source with orderBy set.
func orderedSource(t testing.TB, q, orderBy string) *Source {
	t.Helper()
	raw, _ := json.Marshal(Config{URL: brokerURL(), Queue: q, OrderBy: orderBy})
	s, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	s.minBackoff, s.maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	s.lagEvery = 50 * time.Millisecond
	return s
}

// ready is the queue's count of messages not handed to any consumer.
func ready(t testing.TB, c *amqp.Connection, q string) int {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	st, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.Messages
}

// TestPrefetchBoundsHeldMessages checks that a node whose workers all
// block holds no more than the prefetch, BatchSize×(Concurrency+1): the
// rest of the backlog stays ready in the queue, and the lag is refreshed
// meanwhile. (Parallelism itself is in the conformance suite.)
func TestPrefetchBoundsHeldMessages(t *testing.T) {
	c := broker(t)
	q := queue(t, c)
	sink := newGateSink(true)
	o := triggertest.Options(5, 0)
	o.Concurrency = 4
	stop := triggertest.Run(t, source(t, brokerURL(), q), sink, o)
	publish(t, c, q, 0, 100)
	triggertest.WaitFor(t, "4 batches in flight", func() bool { out, _ := sink.now(); return out == 4 })
	triggertest.WaitFor(t, "75 messages left ready", func() bool { return ready(t, c, q) == 75 })
	triggertest.WaitFor(t, "a lag of 75", func() bool {
		lag := o.Status.View().Lag
		return lag != nil && *lag == 75
	})
	close(sink.gate)
	sink.WaitDistinct(t, 100, 20*time.Second)
	triggertest.WaitFor(t, "100 acknowledged", func() bool { return o.Status.View().Delivered == 100 })
	stop()
}

func TestOrderByQueue(t *testing.T) {
	c := broker(t)
	q := queue(t, c)
	publish(t, c, q, 0, 200)
	sink := newGateSink(false)
	sink.Delay = 2 * time.Millisecond // gives concurrent batches a chance to overlap
	o := triggertest.Options(10, 0)
	o.Concurrency = 4
	stop := triggertest.Run(t, orderedSource(t, q, OrderQueue), sink, o)
	sink.WaitDistinct(t, 200, 20*time.Second)
	stop()
	if maxOut, _, _ := sink.peaks(); maxOut != 1 {
		t.Errorf("%d batches were in flight at once, want 1 with orderBy queue", maxOut)
	}
	msgs := sink.Messages()
	triggertest.InOrder(t, msgs)
	if len(msgs) != 200 || msgs[0].Key != q {
		t.Errorf("delivered %d messages with key %q, want 200 with key %q", len(msgs), msgs[0].Key, q)
	}
}

// keyedExchange declares a topic exchange bound to q for every routing
// key, deleted when the test ends.
func keyedExchange(t testing.TB, c *amqp.Connection, q string) string {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	x := q + "-x"
	if err := ch.ExchangeDeclare(x, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q, "#", x, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ch.ExchangeDelete(x, false, false)
		ch.Close()
	})
	return x
}

// publishKeyed sends n messages round-robin over keys, each with body
// "<key>-<seq>" (seq counting per key), routing key and header "tenant"
// both the key.
func publishKeyed(t testing.TB, c *amqp.Connection, x string, keys []string, n int) {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var last *amqp.DeferredConfirmation
	for i := range n {
		k := keys[i%len(keys)]
		last, err = ch.PublishWithDeferredConfirmWithContext(context.Background(), x, k, false, false, amqp.Publishing{
			Headers: amqp.Table{"tenant": k},
			Body:    fmt.Appendf(nil, "%s-%04d", k, i/len(keys)),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if last != nil && !last.Wait() {
		t.Fatal("broker nacked a publish")
	}
}

// inOrderPerKey checks that each key's first deliveries came in publishing
// order and that Message.Key is the body's key.
func inOrderPerKey(t *testing.T, msgs []trigger.Message) {
	t.Helper()
	next := map[string]int{}
	for _, m := range msgs {
		key, seq, _ := strings.Cut(string(m.Data), "-")
		i, _ := strconv.Atoi(seq)
		if m.Key != key {
			t.Fatalf("%s has key %q, want %q", m.Data, m.Key, key)
		}
		if i > next[key] {
			t.Fatalf("got %s before %s-%04d: order of key %s broken", m.Data, key, next[key], key)
		}
		if i == next[key] {
			next[key]++
		}
	}
}

func TestOrderByKey(t *testing.T) {
	for _, orderBy := range []string{OrderRoutingKey, OrderHeader + "tenant"} {
		t.Run(orderBy, func(t *testing.T) {
			c := broker(t)
			q := queue(t, c)
			x := keyedExchange(t, c, q)
			keys := []string{"a", "b", "c", "d"}
			publishKeyed(t, c, x, keys, 200)
			sink := newGateSink(true)
			o := triggertest.Options(5, 0)
			o.Concurrency = 4
			stop := triggertest.Run(t, orderedSource(t, q, orderBy), sink, o)
			// The prefetch (25) holds messages of every key: each worker
			// takes a batch of another key, never two of one.
			triggertest.WaitFor(t, "4 keys in flight", func() bool { out, n := sink.now(); return out == 4 && n == 4 })
			close(sink.gate)
			sink.WaitDistinct(t, 200, 20*time.Second)
			stop()
			maxOut, maxKey, mixed := sink.peaks()
			if maxOut != 4 || maxKey != 1 || mixed {
				t.Errorf("peaks: %d batches, %d of one key, mixed keys %v; want 4, 1, false", maxOut, maxKey, mixed)
			}
			inOrderPerKey(t, sink.Messages())
		})
	}
}

func TestOrderByHeaderWithoutHeaderIsUnordered(t *testing.T) {
	c := broker(t)
	q := queue(t, c)
	publish(t, c, q, 0, 100) // no headers
	sink := newGateSink(true)
	o := triggertest.Options(5, 0)
	o.Concurrency = 3
	stop := triggertest.Run(t, orderedSource(t, q, OrderHeader+"tenant"), sink, o)
	triggertest.WaitFor(t, "3 batches without key in flight", func() bool { out, n := sink.now(); return out == 3 && n == 0 })
	close(sink.gate)
	sink.WaitDistinct(t, 100, 20*time.Second)
	stop()
	for _, m := range sink.Messages() {
		if m.Key != "" {
			t.Fatalf("%s has key %q, want none", m.Data, m.Key)
		}
	}
}

func TestFailingBatchAmongConcurrentOnes(t *testing.T) {
	for _, orderBy := range []string{OrderNone, OrderRoutingKey} {
		t.Run(orderBy, func(t *testing.T) {
			c := broker(t)
			q := queue(t, c)
			x := keyedExchange(t, c, q)
			keys := []string{"a", "b", "c", "d"}
			publishKeyed(t, c, x, keys, 400)
			poison := "b-0042"
			var failures atomic.Int32
			sink := newGateSink(false)
			sink.Delay = time.Millisecond // keeps several batches out at once
			sink.fail = func(_ context.Context, batch []trigger.Message) error {
				for _, m := range batch {
					if string(m.Data) == poison && failures.Add(1) <= 2 {
						return triggertest.ErrRefused
					}
				}
				return nil
			}
			o := triggertest.Options(5, 0)
			o.Concurrency = 4
			stop := triggertest.Run(t, orderedSource(t, q, orderBy), sink, o)
			sink.WaitDistinct(t, 400, 20*time.Second)
			triggertest.WaitFor(t, "400 acknowledged", func() bool { return o.Status.View().Delivered == 400 })
			stop()
			if failures.Load() < 3 {
				t.Errorf("batch with %s was tried %d times, want 3 (two refusals)", poison, failures.Load())
			}
			if maxOut, _, _ := sink.peaks(); maxOut < 2 {
				t.Errorf("at most %d batches were in flight, want several", maxOut)
			}
			msgs := sink.Messages()
			if len(msgs) != 400 {
				t.Errorf("delivered %d messages, want each of 400 once (batches out when one failed are acknowledged)", len(msgs))
			}
			for _, m := range msgs {
				if string(m.Data) == poison && m.Extensions["redelivered"] != true {
					t.Errorf("%s delivered with redelivered=%v, want true", m.Data, m.Extensions["redelivered"])
				}
			}
			if orderBy == OrderRoutingKey {
				inOrderPerKey(t, msgs)
			}
			if n := ready(t, c, q); n != 0 {
				t.Errorf("%d messages left in the queue, want 0", n)
			}
		})
	}
}

func TestStopWithConcurrentBatches(t *testing.T) {
	c := broker(t)
	q := queue(t, c)
	publish(t, c, q, 0, 200)
	// blocked: every worker is inside Deliver when ctx ends. failing: a
	// batch failed while three others were out; the session waits for
	// those, and they block until ctx ends.
	for _, name := range []string{"blocked", "failing"} {
		sink := newGateSink(true)
		var failed atomic.Bool
		if name == "failing" {
			sink.fail = func(ctx context.Context, batch []trigger.Message) error {
				if string(batch[0].Data) != triggertest.Body(0) {
					return nil
				}
				for out, _ := sink.now(); out < 4 && ctx.Err() == nil; out, _ = sink.now() {
					time.Sleep(time.Millisecond)
				}
				failed.Store(true)
				return triggertest.ErrRefused
			}
		}
		o := triggertest.Options(10, 0)
		o.Concurrency = 4
		stop := triggertest.Run(t, source(t, brokerURL(), q), sink, o)
		// failing: ctx must end only once the batch failed, not as soon as
		// four batches are out (before it failed), when the three others
		// would end with ctx and the failing one would wait for a fourth.
		triggertest.WaitFor(t, name+": batches in flight", func() bool {
			out, _ := sink.now()
			if name == "failing" {
				return failed.Load() && out == 3
			}
			return out == 4
		})
		done := make(chan struct{})
		go func() { stop(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: Run did not return after ctx ended", name)
		}
		if d := o.Status.View().Delivered; d != 0 {
			t.Fatalf("%s: %d acknowledged, want none", name, d)
		}
	}
	sink := &triggertest.Sink{}
	stop := triggertest.Run(t, source(t, brokerURL(), q), sink, triggertest.Options(10, 0))
	sink.WaitDistinct(t, 200, 20*time.Second)
	stop()
	triggertest.InOrder(t, sink.Messages())
}
