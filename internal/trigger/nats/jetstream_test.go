package nats

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

func TestJetStreamNodesShareTheConsumer(t *testing.T) {
	url := shared(t)
	_, js := connect(t, url)
	name, prefix := stream(t, js, jetstream.MemoryStorage)
	shared := triggertest.NewCheckSink(10)
	shared.Delay = time.Millisecond
	group := unique("g")
	cfg := Config{URL: url, Stream: name, StartPosition: StartTrimHorizon}
	newSrc := func() *Source {
		src := testSource(t, cfg)
		// A message can still reach the stopping node's pull request
		// after its subscription ended; it comes back after AckWait.
		src.ackWait = 2 * time.Second
		return src
	}
	first := start(t, newSrc(), shared, options(group, 10, 4))
	second := start(t, newSrc(), shared, options(group, 10, 4))
	publish(t, js, prefix, 0, 500, 16)
	shared.WaitDistinct(t, 200, waitLong)
	if err := first.stop(); err != nil { // its held messages are nak'ed
		t.Fatal(err)
	}
	publish(t, js, prefix, 500, 500, 16)
	shared.WaitDistinct(t, 1000, waitLong)
	if err := second.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestJetStreamLagReported(t *testing.T) {
	url := shared(t)
	_, js := connect(t, url)
	name, prefix := stream(t, js, jetstream.MemoryStorage)
	publish(t, js, prefix, 0, 50, 1)
	release := make(chan struct{})
	sink := &triggertest.Sink{Fail: func([]trigger.Message) error { <-release; return nil }}
	opts := options(unique("g"), 100, 1)
	start(t, testSource(t, Config{URL: url, Stream: name, StartPosition: StartTrimHorizon}), sink, opts)
	waitLag(t, opts.Status, 50)
	close(release)
	sink.WaitDistinct(t, 50, waitLong)
	waitLag(t, opts.Status, 0)
}

func TestJetStreamLatestSkipsStoredMessages(t *testing.T) {
	url := shared(t)
	_, js := connect(t, url)
	name, prefix := stream(t, js, jetstream.MemoryStorage)
	publish(t, js, prefix, 0, 20, 1)
	sink := &triggertest.Sink{}
	opts := options(unique("g"), 10, 1)
	start(t, testSource(t, Config{URL: url, Stream: name}), sink, opts)
	waitLag(t, opts.Status, 0) // the consumer exists
	publish(t, js, prefix, 1000, 5, 1)
	sink.WaitDistinct(t, 5, waitLong)
	for _, m := range sink.Messages() {
		var v struct{ N int }
		if err := json.Unmarshal(m.Data, &v); err != nil || v.N < 1000 {
			t.Errorf("LATEST source delivered stored message %s", m.Data)
		}
	}
}

func TestJetStreamRefusedConfigEndsRun(t *testing.T) {
	url := startEmbedded(t).url() // servers before 2.10 accept a changed deliver policy
	_, js := connect(t, url)
	name, _ := stream(t, js, jetstream.MemoryStorage)
	durable := unique("c")
	if _, err := js.CreateConsumer(t.Context(), name, jetstream.ConsumerConfig{Durable: durable, DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	tests := []Config{
		{URL: url, Stream: name, Consumer: durable, StartPosition: StartLatest}, // the durable starts elsewhere
	}
	for _, cfg := range tests {
		opts := options(unique("g"), 10, 1)
		ctx, cancel := context.WithTimeout(t.Context(), waitLong)
		err := testSource(t, cfg).Run(ctx, &triggertest.Sink{}, opts)
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run(%+v) = %v, want the server's refusal", cfg, err)
			continue
		}
		if v := opts.Status.View(); v.State != trigger.StateError || v.Reason == "" {
			t.Errorf("Run(%+v): status %+v, want Error with the reason", cfg, v)
		}
	}
}

func TestJetStreamMissingStreamShowsInStatus(t *testing.T) {
	url := shared(t)
	opts := options(unique("g"), 10, 1)
	r := start(t, testSource(t, Config{URL: url, Stream: unique("NIMBUS_MISSING")}), &triggertest.Sink{}, opts)
	waitFor(t, "the Error state", waitLong, func() bool { return opts.Status.View().State == trigger.StateError })
	if v := opts.Status.View(); !strings.Contains(v.Reason, "stream not found") {
		t.Errorf("reason = %q, want stream not found", v.Reason)
	}
	if err := r.stop(); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}

func TestJetStreamSurvivesServerRestart(t *testing.T) {
	e := startEmbedded(t)
	nc, js := connect(t, e.url())
	name, prefix := stream(t, js, jetstream.FileStorage)
	publish(t, js, prefix, 0, 500, 8)

	// After 100 messages the sink holds its batches until the server is
	// down, so the restart happens mid-stream with batches in flight.
	var taken atomic.Int64
	gate := make(chan struct{})
	sink := &triggertest.Sink{Fail: func(batch []trigger.Message) error {
		if taken.Add(int64(len(batch))) > 100 {
			<-gate
		}
		return nil
	}}
	src := testSource(t, Config{URL: e.url(), Stream: name, StartPosition: StartTrimHorizon})
	src.ackWait = 2 * time.Second // messages pulled before the crash come back soon
	opts := options("g-restart", 10, 4)
	start(t, src, sink, opts)
	waitFor(t, "100 messages taken", waitLong, func() bool { return taken.Load() > 100 })

	e.stop()
	waitFor(t, "the Error state", waitLong, func() bool { return opts.Status.View().State == trigger.StateError })
	close(gate) // the batches in flight succeed while the server is down
	e.start()
	waitFor(t, "the test's reconnect", waitLong, nc.IsConnected)
	publish(t, js, prefix, 500, 500, 8)
	sink.WaitDistinct(t, 1000, waitLong)
	waitFor(t, "Active again", waitLong, func() bool { return opts.Status.View().State == trigger.StateActive })
	waitLag(t, opts.Status, 0)
}

// TestJetStreamHeartbeatsKeepLongDeliveries checks that a Deliver longer
// than AckWait is not redelivered meanwhile.
func TestJetStreamHeartbeatsKeepLongDeliveries(t *testing.T) {
	url := shared(t)
	_, js := connect(t, url)
	name, prefix := stream(t, js, jetstream.MemoryStorage)
	publish(t, js, prefix, 0, 3, 1)
	var calls atomic.Int64
	release := make(chan struct{})
	sink := &triggertest.Sink{Fail: func([]trigger.Message) error {
		calls.Add(1)
		<-release
		return nil
	}}
	src := testSource(t, Config{URL: url, Stream: name, StartPosition: StartTrimHorizon})
	src.ackWait = 300 * time.Millisecond
	opts := options(unique("g"), 1, 4)
	start(t, src, sink, opts)
	waitFor(t, "the first delivery", waitLong, func() bool { return calls.Load() == 1 })
	// Several AckWaits pass while the batch is out: the server must not
	// redeliver (a redelivery would arrive on another key-free slot only
	// as a second call for the same message; with one subject it would
	// queue, so check the consumer instead).
	cons, err := js.Consumer(t.Context(), name, durableName(opts.Group))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(4 * src.ackWait)
	for time.Now().Before(deadline) {
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumRedelivered > 0 {
			t.Fatalf("%d messages redelivered during a long Deliver", info.NumRedelivered)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(release)
	sink.WaitDistinct(t, 3, waitLong)
}

func TestJetStreamForgetDeletesNimbusConsumerOnly(t *testing.T) {
	url := shared(t)
	_, js := connect(t, url)
	name, _ := stream(t, js, jetstream.MemoryStorage)
	ctx := t.Context()

	opts := options(unique("g"), 10, 1)
	src := testSource(t, Config{URL: url, Stream: name})
	r := start(t, src, &triggertest.Sink{}, opts)
	waitLag(t, opts.Status, 0) // the consumer exists
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Consumer(ctx, name, durableName(opts.Group)); err != nil {
		t.Fatalf("the durable consumer is gone after a plain stop: %v", err)
	}
	for range 2 { // the second finds it gone: success
		if err := src.Forget(ctx, opts); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Consumer(ctx, name, durableName(opts.Group)); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("consumer after Forget: %v, want not found", err)
	}

	// A consumer the user named is theirs.
	own := unique("own")
	opts = options(unique("g"), 10, 1)
	src = testSource(t, Config{URL: url, Stream: name, Consumer: own})
	r = start(t, src, &triggertest.Sink{}, opts)
	waitLag(t, opts.Status, 0)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if err := src.Forget(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Consumer(ctx, name, own); err != nil {
		t.Fatalf("Forget removed the user's consumer: %v", err)
	}
}
