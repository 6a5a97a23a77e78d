package nats

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// countBodies counts delivered messages whose body starts with prefix.
func countBodies(msgs []trigger.Message, prefix string) int {
	n := 0
	for _, m := range msgs {
		if strings.HasPrefix(string(m.Data), prefix) {
			n++
		}
	}
	return n
}

// warmUp publishes warm-up messages until every sink got one, so the
// subscriptions are known to be in place (core NATS keeps nothing for
// late subscribers).
func warmUp(t *testing.T, nc *nats.Conn, subject string, sinks ...*triggertest.Sink) {
	t.Helper()
	waitFor(t, "the subscriptions", waitLong, func() bool {
		for _, s := range sinks {
			if countBodies(s.Messages(), "warm") == 0 {
				if err := nc.Publish(subject, []byte("warm-"+nuid.Next())); err != nil {
					t.Fatal(err)
				}
				return false
			}
		}
		return true
	})
}

func TestCoreQueueGroupSplits(t *testing.T) {
	url := shared(t)
	nc, _ := connect(t, url)
	subject := unique("nimbustest") + ".split"
	a, b := &triggertest.Sink{}, &triggertest.Sink{}
	cfg := Config{URL: url, Subject: subject, Queue: unique("q")}
	start(t, testSource(t, cfg), a, options("ignored", 10, 2))
	start(t, testSource(t, cfg), b, options("ignored", 10, 2))
	warmUp(t, nc, subject, a, b)

	for i := range 1000 {
		if err := nc.Publish(subject, fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (int, int) { return countBodies(a.Messages(), `{"n":`), countBodies(b.Messages(), `{"n":`) }
	waitFor(t, "1000 messages between the two", waitLong, func() bool { x, y := count(); return x+y >= 1000 })
	x, y := count()
	if x+y != 1000 || x == 0 || y == 0 {
		t.Errorf("queue members got %d and %d messages, want a split of 1000", x, y)
	}
}

func TestUnreachableServerShowsInStatus(t *testing.T) {
	e := startEmbedded(t)
	url := e.url()
	e.stop() // nothing listens there now
	opts := options("g-down", 10, 1)
	for _, cfg := range []Config{{URL: url, Subject: "a"}, {URL: url, Stream: "S"}} {
		r := start(t, testSource(t, cfg), &triggertest.Sink{}, opts)
		waitFor(t, "the Error state with the connection refusal", waitLong, func() bool {
			v := opts.Status.View()
			return v.State == trigger.StateError && strings.Contains(v.Reason, "refused")
		})
		if err := r.stop(); err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
		opts.Status = trigger.NewStatus()
	}
}

func TestRunWithoutGroupFails(t *testing.T) {
	for _, cfg := range []Config{{URL: "nats://127.0.0.1:1", Subject: "a"}, {URL: "nats://127.0.0.1:1", Stream: "S"}} {
		err := testSource(t, cfg).Run(t.Context(), &triggertest.Sink{}, trigger.Options{})
		if err == nil || !strings.Contains(err.Error(), "no ") {
			t.Errorf("Run(%+v) without a group = %v, want an error", cfg, err)
		}
	}
}

// TestCoreActiveMeansSubscribed checks that a core NATS source reports
// Active only once the server has its subscription: a message published
// as soon as the state is Active is delivered (core NATS keeps nothing for
// late subscribers).
func TestCoreActiveMeansSubscribed(t *testing.T) {
	url := startEmbedded(t).url()
	nc, _ := connect(t, url)
	for i := range 20 {
		subject := unique("nimbustest") + ".active"
		sink := &triggertest.Sink{}
		opts := options("g-active", 1, 1)
		r := start(t, testSource(t, Config{URL: url, Subject: subject}), sink, opts)
		for deadline := time.Now().Add(waitLong); opts.Status.View().State != trigger.StateActive; {
			if time.Now().After(deadline) {
				t.Fatal("never Active")
			}
		}
		if err := nc.Publish(subject, []byte("first")); err != nil {
			t.Fatal(err)
		}
		sink.WaitDistinct(t, 1, 10*time.Second)
		if err := r.stop(); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}
