package triggertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Harness describes one message source to RunSourceSuite: how to make a
// fresh place on its broker for each case, and what the source promises.
type Harness struct {
	// Setup makes the target of one case: a topic, queue, stream or
	// subject with a unique name (and a session, consumer or client name
	// of its own where the source keeps one), removed when the test ends.
	// It skips the test when the broker is unreachable
	// (testenv.Unavailable).
	Setup func(t *testing.T) Target
	// Ordered says the source delivers the messages of one non-empty
	// Message.Key (a partition, subject, topic) in publishing order.
	Ordered bool
	// Reorders, when not "", says why a message delivered again after a
	// failed batch or a lost connection may come after later messages of
	// its key; those cases then skip their order checks, saying so.
	Reorders string
	// AtMostOnce, when not "", says why the source does not deliver again
	// what a stopped source held or a lost connection carried (core NATS):
	// the crash case is skipped with this reason, and the lost connection
	// case only checks that the source reconnects.
	AtMostOnce string
	// DeadLetter says that the target's Source can name a dead-letter
	// destination of the broker's own (SourceSetup.DeadLetter), which
	// Target.DeadLetters reads back. Without one, the dead-letter case
	// checks the trigger's failure destination instead.
	DeadLetter bool
}

// Target is one fresh place on a broker (see Harness.Setup).
type Target interface {
	// Addr is the broker's host:port, where a Proxy forwards to.
	Addr() string
	// Source returns a new Source consuming the target, with short
	// back-offs and probe intervals. Sources of one target run with the
	// same Options.Group share their broker state (consumer group,
	// session, consumer name): a new one resumes what a stopped one left.
	Source(t *testing.T, s SourceSetup) trigger.Source
	// Publish sends bodies in order, body i to ordering key i%keys (a
	// partition, subject or topic; a source without keys ignores it), and
	// returns once the broker has them all.
	Publish(t *testing.T, keys int, bodies ...[]byte)
	// DeadLetters returns the data of the messages in the target's
	// dead-letter destination (Harness.DeadLetter).
	DeadLetters(t *testing.T) [][]byte
	// Check checks what the source sets of its own on a message
	// published to key 0: Source, Type, Subject, Key and Extensions. The
	// suite checks ID, Time, DataContentType and Data itself.
	Check(t *testing.T, m trigger.Message)
}

// SourceSetup says how Target.Source makes a Source.
type SourceSetup struct {
	// Via, when set, is a host:port (a Proxy's) that the Source must
	// connect through instead of Addr.
	Via string
	// DeadLetter: the Config names the target's dead-letter destination.
	DeadLetter bool
}

// wait bounds every wait of the suite.
const wait = 30 * time.Second

// RunSourceSuite runs the conformance cases of a message source: 1,000 in
// and 1,000 out, batching, redelivery after a failed batch, after a crash
// and after a lost connection, dead letters, parallelism with a backlog,
// and the message fields. Each case runs as a subtest on a target of its
// own.
func RunSourceSuite(t *testing.T, h Harness) {
	cases := []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"ThousandInThousandOut", testThousand},
		{"Batching", testBatching},
		{"FailureRedelivery", testFailureRedelivery},
		{"CrashRedelivery", testCrashRedelivery},
		{"LostConnection", testLostConnection},
		{"DeadLetters", testDeadLetters},
		{"ParallelismWithBacklog", testParallelism},
		{"MessageFields", testMessageFields},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, h) })
	}
}

// group returns a consumer group name unique to this run.
func group() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "nimbus-test-" + hex.EncodeToString(b)
}

// options are the suite's options: a fresh group and Status.
func options(size int, window time.Duration, concurrency int) trigger.Options {
	return trigger.Options{BatchSize: size, BatchWindow: window, Concurrency: concurrency, Group: group(), Status: trigger.NewStatus()}
}

// bodies returns Body(from) .. Body(to-1).
func bodies(from, to int) [][]byte {
	out := make([][]byte, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, []byte(Body(i)))
	}
	return out
}

// waitActive waits until the source reports Active: connected and
// consuming, so that what is published now reaches it.
func waitActive(t *testing.T, o trigger.Options) {
	t.Helper()
	WaitFor(t, "the Active state", func() bool { return o.Status.View().State == trigger.StateActive })
}

// waitSettled waits, for a source that reports a backlog, until it is 0:
// everything delivered was acknowledged.
func waitSettled(t *testing.T, o trigger.Options) {
	t.Helper()
	if o.Status.View().Lag == nil {
		return
	}
	WaitFor(t, "a lag of 0", func() bool {
		lag := o.Status.View().Lag
		return lag != nil && *lag == 0
	})
}

// contains reports whether batch holds a message with data body.
func contains(batch []trigger.Message, body string) bool {
	return slices.ContainsFunc(batch, func(m trigger.Message) bool { return string(m.Data) == body })
}

// index reads back the number of a Body.
func index(m trigger.Message) int {
	i, err := strconv.Atoi(strings.TrimPrefix(string(m.Data), "m-"))
	if err != nil {
		return -1
	}
	return i
}

// InOrderPerKey checks that the first deliveries of messages made with
// Body came in publishing order within each non-empty Message.Key
// (redeliveries of earlier messages may come between).
func InOrderPerKey(t *testing.T, msgs []trigger.Message) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int{}
	for _, m := range msgs {
		if m.Key == "" || seen[string(m.Data)] {
			continue
		}
		seen[string(m.Data)] = true
		i := index(m)
		if prev, ok := last[m.Key]; ok && i < prev {
			t.Fatalf("key %s: %s came after %s: order broken", m.Key, m.Data, Body(prev))
		}
		last[m.Key] = i
	}
}

// checkOrder checks the order per key when the source keeps it, also after
// redeliveries unless redelivered says it does not.
func checkOrder(t *testing.T, h Harness, msgs []trigger.Message, redelivered bool) {
	t.Helper()
	switch {
	case !h.Ordered:
	case redelivered && h.Reorders != "":
		t.Logf("order not checked: %s", h.Reorders)
	default:
		InOrderPerKey(t, msgs)
	}
}

// testThousand: 1,000 messages over four keys, each delivered exactly once,
// in batches of at most BatchSize, in order per key.
func testThousand(t *testing.T, h Harness) {
	tg := h.Setup(t)
	o := options(50, 10*time.Millisecond, 4)
	sink := NewCheckSink(50)
	stop := Run(t, tg.Source(t, SourceSetup{}), sink, o)
	waitActive(t, o)
	tg.Publish(t, 4, bodies(0, 1000)...)
	sink.WaitDistinct(t, 1000, wait)
	waitSettled(t, o)
	stop()
	sink.Check(t)
	msgs := sink.Messages()
	if len(msgs) != 1000 {
		t.Errorf("delivered %d messages, want each of 1,000 once (no failures, no redeliveries)", len(msgs))
	}
	checkOrder(t, h, msgs, false)
}

// testBatching: a full batch goes at once whatever the window; a batch
// that does not fill goes when the window has passed, not before.
func testBatching(t *testing.T, h Harness) {
	t.Run("size", func(t *testing.T) {
		tg := h.Setup(t)
		o := options(5, time.Hour, 1)
		sink := &Sink{}
		stop := Run(t, tg.Source(t, SourceSetup{}), sink, o)
		waitActive(t, o)
		tg.Publish(t, 1, bodies(0, 20)...)
		sink.WaitDistinct(t, 20, wait)
		stop()
		for _, b := range sink.Batches() {
			if len(b) != 5 {
				t.Errorf("batch of %d, want 5: a full batch goes without waiting for the window", len(b))
			}
		}
		if n := len(sink.Messages()); n != 20 {
			t.Errorf("delivered %d messages, want 20", n)
		}
	})
	t.Run("window", func(t *testing.T) {
		tg := h.Setup(t)
		const window = 300 * time.Millisecond
		o := options(100, window, 1)
		sink := &Sink{}
		var first atomic.Int64
		sink.Fail = func([]trigger.Message) error {
			first.CompareAndSwap(0, time.Now().UnixNano())
			return nil
		}
		stop := Run(t, tg.Source(t, SourceSetup{}), sink, o)
		waitActive(t, o)
		published := time.Now()
		tg.Publish(t, 1, bodies(0, 3)...)
		sink.WaitDistinct(t, 3, wait)
		stop()
		if waited := time.Unix(0, first.Load()).Sub(published); waited < window {
			t.Errorf("the first batch went %s after the messages were published, before the %s window ended", waited, window)
		}
		if n := len(sink.Messages()); n != 3 {
			t.Errorf("delivered %d messages, want 3 (in batches smaller than 100, once the window ended)", n)
		}
	})
}

// testFailureRedelivery: a batch whose Deliver fails comes again until it
// succeeds; nothing is lost, and order per key holds.
func testFailureRedelivery(t *testing.T, h Harness) {
	tg := h.Setup(t)
	poison := Body(42)
	var failures atomic.Int32
	sink := &Sink{Fail: func(batch []trigger.Message) error {
		if contains(batch, poison) && failures.Add(1) <= 2 {
			return ErrRefused
		}
		return nil
	}}
	o := options(10, 5*time.Millisecond, 4)
	stop := Run(t, tg.Source(t, SourceSetup{}), sink, o)
	waitActive(t, o)
	tg.Publish(t, 4, bodies(0, 100)...)
	sink.WaitDistinct(t, 100, wait)
	waitSettled(t, o)
	stop()
	if n := failures.Load(); n < 3 {
		t.Errorf("the batch with %s was tried %d times, want 3 (two refusals, then success)", poison, n)
	}
	checkOrder(t, h, sink.Messages(), true)
}

// blockSink holds every batch until ctx ends, or refuses it when refuse is
// set; entered is closed on the first call.
type blockSink struct {
	entered chan struct{}
	once    sync.Once
	refuse  bool
}

func (s *blockSink) Deliver(ctx context.Context, _ []trigger.Message) error {
	s.once.Do(func() { close(s.entered) })
	if s.refuse {
		return ErrRefused
	}
	<-ctx.Done()
	return ctx.Err()
}

// testCrashRedelivery: a source stopped while it holds messages (its
// Deliver blocked, or failing) acknowledged none of them: the next source
// of the same group gets every one.
func testCrashRedelivery(t *testing.T, h Harness) {
	if h.AtMostOnce != "" {
		t.Skip(h.AtMostOnce)
	}
	tg := h.Setup(t)
	grp := group()
	for i, refuse := range []bool{false, true} {
		sink := &blockSink{entered: make(chan struct{}), refuse: refuse}
		o := options(10, 0, 1)
		o.Group = grp
		stop := Run(t, tg.Source(t, SourceSetup{}), sink, o)
		if i == 0 {
			waitActive(t, o)
			tg.Publish(t, 4, bodies(0, 200)...)
		}
		select {
		case <-sink.entered:
		case <-time.After(wait):
			t.Fatalf("source %d never called Deliver", i)
		}
		stop() // like a crash: nothing was acknowledged
	}
	sink := &Sink{}
	o := options(10, 0, 1)
	o.Group = grp
	stop := Run(t, tg.Source(t, SourceSetup{}), sink, o)
	sink.WaitDistinct(t, 200, wait)
	waitSettled(t, o)
	stop()
	checkOrder(t, h, sink.Messages(), true)
}

// testLostConnection: the connection is cut in the middle of a batch (its
// acknowledgement is lost) and refused for a while; the source reports the
// Error state, reconnects, reports Active again and loses nothing.
func testLostConnection(t *testing.T, h Harness) {
	tg := h.Setup(t)
	proxy := NewProxy(t, tg.Addr())
	var cut atomic.Bool
	sink := &Sink{Fail: func(batch []trigger.Message) error {
		if contains(batch, Body(300)) && !cut.Swap(true) {
			proxy.Cut()
		}
		return nil
	}}
	o := options(20, 5*time.Millisecond, 4)
	stop := Run(t, tg.Source(t, SourceSetup{Via: proxy.Addr()}), sink, o)
	waitActive(t, o)
	tg.Publish(t, 4, bodies(0, 1000)...)
	WaitFor(t, "the Error state after the cut", func() bool {
		return cut.Load() && o.Status.View().State == trigger.StateError
	})
	proxy.Restore()
	if h.AtMostOnce != "" {
		t.Logf("only the reconnection is checked: %s", h.AtMostOnce)
		waitActive(t, o)
		reconnected(t, tg, sink)
		stop()
		return
	}
	sink.WaitDistinct(t, 1000, wait)
	waitActive(t, o)
	waitSettled(t, o)
	stop()
	checkOrder(t, h, sink.Messages(), true)
}

// reconnected publishes a message every 100 ms until one of them arrives:
// an at-most-once source may miss those sent before it subscribed again.
func reconnected(t *testing.T, tg Target, sink *Sink) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		tg.Publish(t, 1, []byte("after-"+strconv.Itoa(i)))
		for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			for _, m := range sink.Messages() {
				if strings.HasPrefix(string(m.Data), "after-") {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing published after the reconnection arrived")
		}
	}
}

// testMessageFields: the CloudEvents attributes of a plain and a JSON
// message, and the source's own.
func testMessageFields(t *testing.T, h Harness) {
	tg := h.Setup(t)
	o := options(10, 0, 1)
	sink := &Sink{}
	stop := Run(t, tg.Source(t, SourceSetup{}), sink, o)
	waitActive(t, o)
	before := time.Now()
	payloads := [][]byte{[]byte(Body(0)), []byte(`{"n":1}`)}
	tg.Publish(t, 1, payloads...)
	sink.WaitDistinct(t, 2, wait)
	after := time.Now()
	stop()
	msgs := sink.Messages()
	if len(msgs) != 2 {
		t.Fatalf("delivered %d messages, want 2", len(msgs))
	}
	wantType := []string{"application/octet-stream", "application/json"}
	for i, m := range msgs {
		if string(m.Data) != string(payloads[i]) || m.DataContentType != wantType[i] {
			t.Errorf("message %d: data %q (%s), want %q (%s)", i, m.Data, m.DataContentType, payloads[i], wantType[i])
		}
		// A second of slack: brokers stamp times in milliseconds or
		// seconds.
		if m.Time.Before(before.Add(-time.Second)) || m.Time.After(after.Add(time.Second)) {
			t.Errorf("message %d: time %s, want between %s and %s", i, m.Time, before, after)
		}
		tg.Check(t, m)
	}
	if msgs[0].ID == "" || msgs[0].ID == msgs[1].ID {
		t.Errorf("ids %q and %q, want two different ones", msgs[0].ID, msgs[1].ID)
	}
}
