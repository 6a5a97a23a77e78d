package timer

import (
	"context"
	"sort"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus/internal/store"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// openTicks opens the tick bucket of an embedded NATS store in dir.
func openTicks(t *testing.T, dir string) (*natsstore.Store, store.KV) {
	t.Helper()
	s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	kv, err := s.KV(t.Context(), TickBucket)
	if err != nil {
		s.Close(context.Background())
		t.Fatalf("open bucket: %v", err)
	}
	return s, kv
}

// A timer over several real ticks ("@every 1s"), two nodes sharing an
// embedded NATS store: every tick is delivered once.
func TestRealTicksTwoNodesNATS(t *testing.T) {
	defer goleak.VerifyNone(t)
	s, kv := openTicks(t, t.TempDir())
	defer s.Close(context.Background())
	sink := newTickSink()
	cfg := `{"schedule":"@every 1s"}`
	a := startNode(t, New(Deps{KV: kv}), cfg, sink)
	b := startNode(t, New(Deps{KV: kv}), cfg, sink)
	sink.waitFor(t, "3 ticks", func(s *tickSink) bool { return len(s.got) >= 3 })
	a.stop()
	b.stop()
	var ticks []time.Time
	for id, n := range sink.delivered() {
		if n != 1 {
			t.Errorf("tick %s delivered %d times, want 1", id, n)
		}
	}
	for _, m := range sink.messages() {
		ticks = append(ticks, m.Time)
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i].Before(ticks[j]) })
	// On a loaded machine a tick can be skipped (a node that wakes up late
	// fires only the latest), or left claimed when the nodes stop: ticks
	// are whole seconds apart, not necessarily one.
	for i := 1; i < len(ticks); i++ {
		if d := ticks[i].Sub(ticks[i-1]); d <= 0 || d%time.Second != 0 {
			t.Errorf("ticks %v and %v are %s apart, want whole seconds", ticks[i-1], ticks[i], d)
		} else if d > time.Second {
			t.Logf("ticks %v and %v are %s apart", ticks[i-1], ticks[i], d)
		}
	}
}

// Exactly once survives a restart of the store and the nodes: the done
// marks are durable.
func TestRestartNATS(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	clock, sink := newFakeClock(t0), newTickSink()
	s, kv := openTicks(t, dir)
	a := startNode(t, New(Deps{KV: kv, Clock: clock}), everyMinute, sink)
	b := startNode(t, New(Deps{KV: kv, Clock: clock}), everyMinute, sink)
	clock.WaitWaiters(t, 2)
	for i := 1; i <= 3; i++ {
		clock.Set(minute(i))
		sink.waitIDs(t, tickID(minute(i)))
		waitDone(t, kv, minute(i))
	}
	a.stop()
	b.stop()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	s, kv = openTicks(t, dir)
	defer s.Close(context.Background())
	c := startNode(t, New(Deps{KV: kv, Clock: clock}), everyMinute, sink) // at minute 3: done already
	clock.WaitWaiters(t, 1)
	clock.Set(minute(4))
	sink.waitIDs(t, tickID(minute(4)))
	c.stop()
	assertDelivered(t, sink, []time.Time{minute(1), minute(2), minute(3), minute(4)})
}
