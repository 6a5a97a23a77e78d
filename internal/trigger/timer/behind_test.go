package timer

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// A node that wakes up late (its store did not answer for a while, it was
// suspended) fires the ticks it passed over that are at most keepBehind
// old, oldest first, and skips older ones.
func TestBehindFiresRecentTicks(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv, clock, sink := mem.NewKV(), newFakeClock(t0), newTickSink()
	n := startNode(t, newTimers(kv, clock), `{"schedule":"@every 10s"}`, sink)
	clock.WaitWaiters(t, 1)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) } // t0 is at :30
	clock.Set(at(50))                                                             // 10:00:40 to 10:01:20 passed
	var want []string
	for s := 10; s <= 50; s += 10 {
		want = append(want, tickID(at(s)))
	}
	sink.waitIDs(t, want...)
	waitDone(t, kv, at(50))

	clock.Set(at(50 + 180)) // 10:01:30 to 10:04:20: only those from 10:03:20 on
	var recent []string
	for s := 170; s <= 230; s += 10 {
		recent = append(recent, tickID(at(s)))
	}
	sink.waitIDs(t, recent...)
	waitDone(t, kv, at(230))
	n.stop()
	got := sink.delivered()
	for s := 60; s < 170; s += 10 {
		if got[tickID(at(s))] != 0 {
			t.Errorf("tick %s, more than keepBehind before the node woke, was delivered", at(s))
		}
	}
	for _, id := range append(want, recent...) {
		if got[id] != 1 {
			t.Errorf("tick %s delivered %d times, want 1", id, got[id])
		}
	}
}
