package mqtt

import (
	"context"
	"encoding/json"
	"path"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// publishTopics sends bodies m-0000..m-<n-1> to each topic at QoS 1,
// round-robin (m-0000 to every topic, then m-0001, ...), and waits for the
// broker to take all of them.
func publishTopics(t testing.TB, topics []string, n int) {
	t.Helper()
	c := client(t, brokerAddr(), "nimbus-test-pub-"+randomID(), true, nil)
	for i := range n {
		for j, tp := range topics {
			method := paho.PublishMethod_AsyncSend
			if i == n-1 && j == len(topics)-1 {
				method = paho.PublishMethod_Blocking
			}
			p := &paho.Publish{QoS: 1, Topic: tp, Payload: []byte(triggertest.Body(i))}
			if _, err := c.PublishWithOptions(t.Context(), p, paho.PublishOptions{Method: method}); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
	}
}

// gateSink records batches and how many are in flight at once, overall and
// per topic. While held, each Deliver waits for release (or ctx).
type gateSink struct {
	mu       sync.Mutex
	held     bool
	release  chan struct{}
	active   int
	peak     int
	perTopic map[string]int
	overlap  string // a topic that had two batches out at once
	batches  [][]trigger.Message
	seen     map[string]bool // topic + body
	changed  chan struct{}
}

func newGateSink(held bool) *gateSink {
	return &gateSink{held: held, release: make(chan struct{}), perTopic: map[string]int{},
		seen: map[string]bool{}, changed: make(chan struct{})}
}

// signal wakes waiters; called with s.mu held.
func (s *gateSink) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *gateSink) Deliver(ctx context.Context, batch []trigger.Message) error {
	topic := batch[0].Subject
	s.mu.Lock()
	s.active++
	s.peak = max(s.peak, s.active)
	s.perTopic[topic]++
	if s.perTopic[topic] > 1 {
		s.overlap = topic
	}
	s.batches = append(s.batches, batch)
	held, release := s.held, s.release
	s.signal()
	s.mu.Unlock()
	var err error
	if held {
		select {
		case <-release:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	s.mu.Lock()
	s.active--
	s.perTopic[topic]--
	if err == nil {
		for _, m := range batch {
			s.seen[m.Subject+" "+string(m.Data)] = true
		}
	}
	s.signal()
	s.mu.Unlock()
	return err
}

// open lets every held Deliver, and all later ones, return.
func (s *gateSink) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held {
		s.held = false
		close(s.release)
	}
}

// wait waits until cond (called with s.mu held) holds, failing the test
// after 20 s.
func (s *gateSink) wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			s.mu.Lock()
			active, peak := s.active, s.peak
			s.mu.Unlock()
			t.Fatalf("timed out waiting for %s (%d batches in flight, at most %d at once)", what, active, peak)
		}
	}
}

func (s *gateSink) messages() []trigger.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []trigger.Message
	for _, b := range s.batches {
		out = append(out, b...)
	}
	return out
}

// byTopic splits messages by topic, keeping their order.
func byTopic(msgs []trigger.Message) map[string][]trigger.Message {
	out := map[string][]trigger.Message{}
	for _, m := range msgs {
		out[m.Subject] = append(out[m.Subject], m)
	}
	return out
}

// topics returns n fresh topics under one root.
func topics(n int) (root string, out []string) {
	root = topic()
	for i := range n {
		out = append(out, root+"/"+string(rune('a'+i)))
	}
	return root, out
}

func TestOrderByNone(t *testing.T) {
	root := topic()
	sink := newGateSink(true)
	o := triggertest.Options(5, 0)
	o.Concurrency = 4
	raw, _ := json.Marshal(Config{URL: "mqtt://" + brokerAddr(), Topic: root, ClientID: "nimbus-test-" + randomID(),
		SessionExpirySeconds: 300, OrderBy: OrderNone})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	src.minBackoff, src.maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	forget(t, src.cfg.ClientID)
	stop := run(t, src, sink, o)
	publish(t, root, 0, 100)
	// With orderBy topic, one topic never has two batches out.
	sink.wait(t, "4 batches of one topic in flight at once", func() bool { return sink.active == 4 })
	sink.open()
	sink.wait(t, "all 100 messages", func() bool { return len(sink.seen) == 100 })
	triggertest.WaitFor(t, "100 acknowledged", func() bool { return o.Status.View().Delivered >= 100 })
	stop()
	for _, m := range sink.messages() {
		if m.Key != "" || m.Subject != root {
			t.Fatalf("message %s has key %q and subject %q, want no key and subject %s", m.Data, m.Key, m.Subject, root)
		}
	}
}

// failSink fails, once, the batch holding target's message, as soon as two
// batches of other topics are out; those were held until then and finish
// after it. Successful batches are recorded in Sink.
type failSink struct {
	triggertest.Sink
	topic, body string // the message whose batch fails

	mu        sync.Mutex
	changed   chan struct{}
	failed    chan struct{} // closed when the batch failed
	others    int           // batches of other topics out
	outAtFail int           // of those, how many when it failed
	waiting   int           // held batches that have not returned yet
	early     bool          // a redelivered message came while one was still out
	cancelled int           // held batches that saw ctx end
}

func (s *failSink) Deliver(ctx context.Context, batch []trigger.Message) error {
	s.mu.Lock()
	done := isClosed(s.failed)
	target, redelivered := false, false
	for _, m := range batch {
		target = target || (m.Subject == s.topic && string(m.Data) == s.body)
		redelivered = redelivered || m.Extensions["redelivered"] == true
	}
	if redelivered && s.waiting > 0 {
		s.early = true
	}
	held := !done && batch[0].Subject != s.topic
	if held {
		s.others++
		s.waiting++
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	switch {
	case !done && target:
		return s.fail()
	case held:
		select {
		case <-s.failed:
		case <-ctx.Done(): // the test gave up
		}
		err := s.Sink.Deliver(ctx, batch)
		s.mu.Lock()
		if ctx.Err() != nil {
			s.cancelled++
		}
		s.waiting--
		s.mu.Unlock()
		return err
	}
	return s.Sink.Deliver(ctx, batch)
}

// fail waits until two batches of other topics are out, then fails.
func (s *failSink) fail() error {
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		n, ch := s.others, s.changed
		if n >= 2 {
			s.outAtFail = n
			close(s.failed)
		}
		s.mu.Unlock()
		if n >= 2 {
			return triggertest.ErrRefused
		}
		select {
		case <-ch:
		case <-deadline:
			close(s.failed)
			return triggertest.ErrRefused // the test sees outAtFail 0
		}
	}
}

// distinct counts different messages (topic and body).
func distinct(msgs []trigger.Message) int {
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.Subject+" "+string(m.Data)] = true
	}
	return len(seen)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestFailureAmongConcurrentBatches(t *testing.T) {
	root, tps := topics(4)
	// The target is among the first messages, so that the held batches of
	// the other topics (whose acknowledgements, in arrival order, come
	// first) do not stall the broker's window before it arrives.
	sink := &failSink{topic: tps[1], body: triggertest.Body(3), changed: make(chan struct{}), failed: make(chan struct{})}
	o := triggertest.Options(5, 0)
	o.Concurrency = 4
	stop := run(t, source(t, brokerAddr(), root+"/+", "nimbus-test-"+randomID()), sink, o)
	publishTopics(t, tps, 50)
	triggertest.WaitFor(t, "all 200 messages", func() bool { return distinct(sink.Messages()) >= 200 })
	stop()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.outAtFail < 2 {
		t.Fatalf("%d batches of other topics out when the target's failed, want at least 2", sink.outAtFail)
	}
	if sink.cancelled > 0 {
		t.Errorf("%d batches out at the failure saw ctx cancelled, want them to finish", sink.cancelled)
	}
	if sink.early {
		t.Error("the broker redelivered while batches out at the failure were still running, want the session to wait for them")
	}
	msgs := sink.Messages()
	for tp, group := range byTopic(msgs) {
		t.Run(path.Base(tp), func(t *testing.T) { triggertest.InOrder(t, group) })
		seen := map[string]bool{}
		for _, m := range group {
			seen[string(m.Data)] = true
		}
		if len(seen) != 50 {
			t.Errorf("%s: %d distinct messages, want 50", tp, len(seen))
		}
	}
	for _, m := range msgs {
		if m.Subject == sink.topic && string(m.Data) == sink.body && m.Extensions["redelivered"] != true {
			t.Errorf("%s delivered with redelivered=%v, want true (the broker sent it again)", m.Data, m.Extensions["redelivered"])
		}
	}
}

// TestStopWhileSaturated stops a source whose workers all block and whose
// lanes are full (QoS 0 messages, which Receive Maximum does not bound):
// Run must return and leak nothing (goleak checks).
func TestStopWhileSaturated(t *testing.T) {
	root := topic()
	raw, _ := json.Marshal(Config{URL: "mqtt://" + brokerAddr(), Topic: root + "/+", QoS: new(0),
		ClientID: "nimbus-test-" + randomID(), SessionExpirySeconds: 300})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	forget(t, src.cfg.ClientID)
	sink := newGateSink(true)
	o := triggertest.Options(1, 0)
	o.Concurrency = 2
	stop := run(t, src, sink, o)
	publishTopics(t, []string{root + "/a", root + "/b"}, 50)
	sink.wait(t, "both workers blocked", func() bool { return sink.active == 2 })
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20 s of ctx ending while saturated")
	}
}
