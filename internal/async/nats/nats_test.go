package nats_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/async/asynctest"
	asyncnats "github.com/nimbus-serverless/nimbus/internal/async/nats"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Connections the Crash of the suite cut are closed while they
		// try to reconnect.
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go.(*Conn).doReconnect"),
		// nats.go (v1.55) can leak this when a connection closes right
		// after its first async publish: the goroutine waits on the status
		// channel that the close set to nil.
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
}

// claimTTL is short, so that the suite sees a dead node's claims lapse.
const claimTTL = time.Second

var nodes atomic.Int64

// harness runs the suite against backends that share a NATS server at
// url (each node with a connection of its own, so that Crash can cut one).
func harness(url func(t *testing.T) (string, string)) asynctest.Harness {
	conns := map[async.Backend]*nats.Conn{}
	return asynctest.Harness{
		New: func(t *testing.T) func(*testing.T) async.Backend {
			u, prefix := url(t)
			return func(t *testing.T) async.Backend {
				nc, err := nats.Connect(u)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(nc.Close)
				js, err := jetstream.New(nc)
				if err != nil {
					t.Fatal(err)
				}
				b, err := asyncnats.Open(t.Context(), asyncnats.Config{
					JS: js, NC: nc, Prefix: prefix, IndexDir: t.TempDir(),
					NodeID: fmt.Sprintf("node-%d", nodes.Add(1)), ClaimTTL: claimTTL,
				})
				if err != nil {
					t.Fatal(err)
				}
				conns[b] = nc
				return b
			}
		},
		Crash:    func(_ *testing.T, b async.Backend) { conns[b].Close() },
		Now:      time.Now,
		Advance:  func(_ *testing.T, d time.Duration) { time.Sleep(d) },
		ClaimTTL: claimTTL,
	}
}

func TestSuiteEmbedded(t *testing.T) {
	asynctest.Run(t, harness(func(t *testing.T) (string, string) {
		s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		return s.ClientURL(), "nimbus"
	}))
}

func TestSuiteSharedNATS(t *testing.T) {
	asynctest.Run(t, harness(func(t *testing.T) (string, string) {
		return nodetest.SharedNATS, nodetest.SharedNATSPrefix(t)
	}))
}

// TestMigratesThePreviousQueue: events left in the previous design's work
// queue (with its consumer per function) are moved into the queue at Open.
func TestMigratesThePreviousQueue(t *testing.T) {
	s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	js := s.JetStream()
	old, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "nimbus_ASYNC", Subjects: []string{"nimbus.async.ev.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.CreateOrUpdateConsumer(t.Context(), jetstream.ConsumerConfig{Durable: "fn-legacy",
		FilterSubject: "nimbus.async.ev.legacy", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	batch := `[{"id":"a","fn":"legacy","p":{"n":1},"c":"2026-12-01T00:00:00Z"},{"id":"b","fn":"legacy","p":{"n":2},"c":"2026-12-01T00:00:00Z"}]`
	if _, err := js.Publish(t.Context(), "nimbus.async.ev.legacy", []byte(batch)); err != nil {
		t.Fatal(err)
	}
	b, err := asyncnats.Open(t.Context(), asyncnats.Config{JS: js, NC: s.Conn(), IndexDir: t.TempDir(), NodeID: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(t.Context())
	c, _, err := b.Claim(t.Context(), "legacy")
	if err != nil || c == nil || len(c.Events) != 2 || c.Events[1].ID != "b" || string(c.Events[1].Payload) != `{"n":2}` {
		t.Fatalf("claimed %+v, %v; want the two migrated events", c, err)
	}
	if _, err := js.Stream(t.Context(), "nimbus_ASYNC"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("the previous queue is still there: %v", err)
	}
}

// TestNoTaskWithoutItsEvent: a submission with a task id whose event the
// queue did not take stores no task record either, so that its retry with the same task
// id stores the event instead of finding the task (which would leave it
// never run).
func TestNoTaskWithoutItsEvent(t *testing.T) {
	s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	js := s.JetStream()
	b, err := asyncnats.Open(t.Context(), asyncnats.Config{JS: js, NC: s.Conn(), IndexDir: t.TempDir(), NodeID: "n",
		WriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	queue, err := js.Stream(t.Context(), "nimbus_QUEUE")
	if err != nil {
		t.Fatal(err)
	}
	cfg := queue.CachedInfo().Config
	setSubjects := func(subjects ...string) {
		t.Helper()
		c := cfg
		c.Subjects = subjects
		if _, err := js.UpdateStream(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	// The queue takes no event of fn: the tasks stream still takes records.
	setSubjects("nimbus.async.elsewhere.>")
	now := time.Now().UTC()
	put := func() error {
		return b.Put(t.Context(), []*nimbus.Task{{ID: "t1", Function: "fn", Status: nimbus.TaskEnqueued, Created: now, Updated: now}},
			[]*async.Event{{ID: "t1", Function: "fn", Payload: []byte(`{}`), Created: now, Keyed: true}})
	}
	if err := put(); err == nil {
		t.Fatal("Put succeeded with a queue that takes no event")
	}
	if task, err := b.Task(t.Context(), "fn", "t1"); !errors.Is(err, nimbus.ErrNotFound) {
		t.Fatalf("Task after a failed Put = %+v, %v; want ErrNotFound", task, err)
	}
	setSubjects(cfg.Subjects...)
	if err := put(); err != nil {
		t.Fatal(err)
	}
	c, _, err := b.Claim(t.Context(), "fn")
	if err != nil || c == nil || len(c.Events) != 1 || c.Events[0].ID != "t1" {
		t.Fatalf("claimed %+v, %v; want the event", c, err)
	}
}
