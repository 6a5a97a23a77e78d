package timer

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus/internal/store/mem"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

const everyMinute = `{"schedule":"* * * * *","payload":{"job":"report"}}`

var t0 = time.Date(2026, 3, 10, 10, 0, 30, 0, time.UTC)

func tickID(t time.Time) string { return fmt.Sprintf("tr-%d", t.Unix()) }

// minute returns the tick i minutes after 10:00 on t0's day.
func minute(i int) time.Time { return t0.Truncate(time.Hour).Add(time.Duration(i) * time.Minute) }

func newTimers(kv *mem.KV, clock Clock) *Timers {
	return New(Deps{KV: kv, Clock: clock, Lease: 30 * time.Second})
}

func TestTwoNodesFireEachTickOnce(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv, clock, sink := mem.NewKV(), newFakeClock(t0), newTickSink()
	a := startNode(t, newTimers(kv, clock), everyMinute, sink)
	b := startNode(t, newTimers(kv, clock), everyMinute, sink)
	clock.WaitWaiters(t, 2)
	var want []string
	for i := 1; i <= 5; i++ {
		clock.Set(minute(i))
		sink.waitIDs(t, tickID(minute(i)))
		waitDone(t, kv, minute(i))
		want = append(want, tickID(minute(i)))
	}
	a.stop()
	b.stop()
	got := sink.delivered()
	if len(got) != len(want) {
		t.Errorf("delivered %v, want each of %v once", got, want)
	}
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("tick %s delivered %d times, want 1", id, got[id])
		}
	}
}

func TestTickMessage(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv, clock, sink := mem.NewKV(), newFakeClock(t0), newTickSink()
	n := startNode(t, newTimers(kv, clock), everyMinute, sink)
	clock.WaitWaiters(t, 1)
	clock.Set(minute(1).Add(15 * time.Second)) // a late wake-up keeps the scheduled time
	sink.waitIDs(t, tickID(minute(1)))
	n.stop()
	m := sink.messages()[0]
	want := trigger.Message{
		ID:              tickID(minute(1)),
		Source:          "nimbus://timer/fn/tr",
		Type:            "com.nimbus.timer.tick",
		Time:            minute(1),
		DataContentType: "application/json",
		Data:            []byte(`{"job":"report"}`),
	}
	if m.ID != want.ID || m.Source != want.Source || m.Type != want.Type || !m.Time.Equal(want.Time) ||
		m.DataContentType != want.DataContentType || string(m.Data) != string(want.Data) {
		t.Errorf("message = %+v, want %+v", m, want)
	}
}

// TestTickMessageFC: a timer in Function Compute's format delivers its
// event as it is (Raw): {"triggerTime", "triggerName", "payload"}, with ""
// for no payload; an unknown format is refused.
func TestTickMessageFC(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, c := range []struct{ config, want string }{
		{`{"schedule":"* * * * *","format":"fc","payload":"nightly"}`, `{"triggerTime":"2026-03-10T10:01:00Z","triggerName":"tr","payload":"nightly"}`},
		{`{"schedule":"* * * * *","format":"fc"}`, `{"triggerTime":"2026-03-10T10:01:00Z","triggerName":"tr","payload":""}`},
	} {
		kv, clock, sink := mem.NewKV(), newFakeClock(t0), newTickSink()
		n := startNode(t, newTimers(kv, clock), c.config, sink)
		clock.WaitWaiters(t, 1)
		clock.Set(minute(1))
		sink.waitIDs(t, tickID(minute(1)))
		n.stop()
		m := sink.messages()[0]
		if !m.Raw || string(m.Data) != c.want {
			t.Errorf("%s: message raw %v data %s, want raw %s", c.config, m.Raw, m.Data, c.want)
		}
	}
	if _, err := ParseConfig(json.RawMessage(`{"schedule":"@hourly","format":"aws"}`)); err == nil || !strings.Contains(err.Error(), "format") {
		t.Errorf("format aws: %v, want an error naming format", err)
	}
}

func TestEmptyPayloadIsEmptyObject(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv, clock, sink := mem.NewKV(), newFakeClock(t0), newTickSink()
	n := startNode(t, newTimers(kv, clock), `{"schedule":"@every 1m"}`, sink)
	clock.WaitWaiters(t, 1)
	clock.Set(minute(1))
	sink.waitIDs(t, tickID(minute(1)))
	n.stop()
	if got := string(sink.messages()[0].Data); got != "{}" {
		t.Errorf("data = %s, want {}", got)
	}
}

// A tick whose delivery failed stays claimed; after a restart the new
// process takes the stale claim over and delivers it, once.
func TestRestartFinishesFailedTick(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv, clock := mem.NewKV(), newFakeClock(t0)
	failing := newTickSink()
	failing.setFail(func(trigger.Message) error { return triggertest.ErrRefused })
	a := startNode(t, newTimers(kv, clock), everyMinute, failing)
	clock.WaitWaiters(t, 1)
	clock.Set(minute(1))
	failing.waitFor(t, "a failed delivery", func(s *tickSink) bool { return s.tries >= 1 })
	a.stop()
	assertState(t, kv, minute(1), stateClaimed)

	sink := newTickSink()
	b := startNode(t, newTimers(kv, clock), everyMinute, sink)
	clock.WaitWaiters(t, 1)
	clock.Set(minute(1).Add(31 * time.Second)) // past the dead claim's lease
	sink.waitIDs(t, tickID(minute(1)))
	clock.Set(minute(2))
	sink.waitIDs(t, tickID(minute(2)))
	b.stop()
	if got := sink.delivered(); got[tickID(minute(1))] != 1 || got[tickID(minute(2))] != 1 || len(got) != 2 {
		t.Errorf("delivered %v, want minutes 1 and 2 once each", got)
	}
	assertState(t, kv, minute(1), stateDone)
}

// A node whose delivery failed retries its own claim with back-off.
func TestFailedDeliveryIsRetried(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv, clock, sink := mem.NewKV(), newFakeClock(t0), newTickSink()
	fails := 2
	sink.setFail(func(trigger.Message) error {
		if fails > 0 {
			fails--
			return triggertest.ErrRefused
		}
		return nil
	})
	n := startNode(t, newTimers(kv, clock), everyMinute, sink)
	clock.WaitWaiters(t, 1)
	clock.Set(minute(1))
	for i := 1; i <= 2; i++ {
		sink.waitFor(t, "a failed try", func(s *tickSink) bool { return s.tries >= i })
		clock.WaitWaiterBy(t, clock.Now().Add(5*time.Second)) // the retry's, not the next tick's
		clock.Advance(5 * time.Second)
	}
	sink.waitIDs(t, tickID(minute(1)))
	n.stop()
	if got := sink.delivered()[tickID(minute(1))]; got != 1 {
		t.Errorf("tick delivered %d times, want 1", got)
	}
}

// Ticks already done are not delivered again by a restarted node.
func TestRestartKeepsDoneTicks(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv, clock, sink := mem.NewKV(), newFakeClock(t0), newTickSink()
	a := startNode(t, newTimers(kv, clock), everyMinute, sink)
	clock.WaitWaiters(t, 1)
	clock.Set(minute(1))
	sink.waitIDs(t, tickID(minute(1)))
	a.stop()
	b := startNode(t, newTimers(kv, clock), everyMinute, sink) // same instant
	clock.WaitWaiters(t, 1)
	clock.Set(minute(2))
	sink.waitIDs(t, tickID(minute(2)))
	b.stop()
	if got := sink.delivered(); got[tickID(minute(1))] != 1 || len(got) != 2 {
		t.Errorf("delivered %v, want minutes 1 and 2 once each", got)
	}
}

// A claim held by a node that died is taken over by a running node once
// its lease passes.
func TestRunningNodeTakesOverDeadClaim(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv, clock, sink := mem.NewKV(), newFakeClock(t0), newTickSink()
	n := startNode(t, newTimers(kv, clock), everyMinute, sink)
	clock.WaitWaiters(t, 1)
	// Another node claims minute 1 just before this one and dies.
	dead := encode(tickState{State: stateClaimed, Owner: "dead", Heartbeat: minute(1)})
	if _, err := kv.Create(t.Context(), "fn.tr."+fmt.Sprint(minute(1).Unix()), dead); err != nil {
		t.Fatal(err)
	}
	clock.Set(minute(1))
	clock.WaitWaiters(t, 1)
	clock.Set(minute(1).Add(30 * time.Second))
	sink.waitIDs(t, tickID(minute(1)))
	n.stop()
	if got := sink.delivered(); len(got) != 1 {
		t.Errorf("delivered %v, want minute 1 once", got)
	}
}

func assertState(t *testing.T, kv *mem.KV, tick time.Time, want string) {
	t.Helper()
	e, err := kv.Get(t.Context(), "fn.tr."+fmt.Sprint(tick.Unix()))
	if err != nil {
		t.Fatalf("tick key: %v", err)
	}
	var st tickState
	if err := json.Unmarshal(e.Value, &st); err != nil {
		t.Fatal(err)
	}
	if st.State != want {
		t.Errorf("tick %s state = %q, want %q", tick, st.State, want)
	}
}

// The manager's NamedFactory shape.
var _ func(function, trigger string) trigger.Factory = (*Timers)(nil).Factory
