package timer

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// TestMissedTicks checks the policy for ticks missed while no node ran the
// trigger: the most recent one fires once at start-up if it is within the
// catch-up window; the others are skipped.
func TestMissedTicks(t *testing.T) {
	tests := []struct {
		name   string
		config string
		down   time.Duration // from minute 1 to the restart
		want   []time.Time   // delivered after minute 1, up to the first tick after the restart
	}{
		{"latest missed fires once", everyMinute, 4*time.Minute + 30*time.Second,
			[]time.Time{minute(5), minute(6)}},
		{"older than the window", `{"schedule":"* * * * *","catchUpWindow":"20s"}`, 4*time.Minute + 30*time.Second,
			[]time.Time{minute(6)}},
		{"window 0 disables", `{"schedule":"* * * * *","catchUpWindow":"0s"}`, 4*time.Minute + 30*time.Second,
			[]time.Time{minute(6)}},
		{"daily, missed 90m ago", `{"schedule":"30 10 * * *"}`, 119 * time.Minute,
			[]time.Time{minute(24*60 + 30)}},
		{"hourly, missed tick 40m ago", `{"schedule":"@hourly"}`, 99 * time.Minute,
			[]time.Time{minute(60), minute(120)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			kv, clock := mem.NewKV(), newFakeClock(t0)
			first := newTickSink()
			a := startNode(t, newTimers(kv, clock), tt.config, first)
			clock.WaitWaiters(t, 1)
			clock.Set(minute(1))
			if strings.HasPrefix(tt.config, `{"schedule":"* * * * *"`) {
				first.waitIDs(t, tickID(minute(1)))
			}
			a.stop()

			clock.Set(minute(1).Add(tt.down))
			sink := newTickSink()
			b := startNode(t, newTimers(kv, clock), tt.config, sink)
			last := tt.want[len(tt.want)-1]
			clock.WaitWaiters(t, 1)
			clock.Set(last)
			sink.waitIDs(t, tickID(last))
			b.stop()
			assertDelivered(t, sink, tt.want)
		})
	}
}

// A new trigger fires no tick from before it existed.
func TestNewTriggerCatchesNothingUp(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv, clock, sink := mem.NewKV(), newFakeClock(minute(1).Add(5*time.Second)), newTickSink()
	n := startNode(t, newTimers(kv, clock), everyMinute, sink)
	clock.WaitWaiters(t, 1)
	clock.Set(minute(2))
	sink.waitIDs(t, tickID(minute(2)))
	n.stop()
	assertDelivered(t, sink, []time.Time{minute(2)})
}

// A node starting while another runs the trigger fires nothing twice.
func TestJoiningNodeFiresNothingTwice(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv, clock, sink := mem.NewKV(), newFakeClock(t0), newTickSink()
	a := startNode(t, newTimers(kv, clock), everyMinute, sink)
	clock.WaitWaiters(t, 1)
	clock.Set(minute(1))
	sink.waitIDs(t, tickID(minute(1)))
	waitDone(t, kv, minute(1))
	clock.Set(minute(1).Add(20 * time.Second))
	b := startNode(t, newTimers(kv, clock), everyMinute, sink)
	clock.WaitWaiters(t, 2)
	clock.Set(minute(2))
	sink.waitIDs(t, tickID(minute(2)))
	a.stop()
	b.stop()
	assertDelivered(t, sink, []time.Time{minute(1), minute(2)})
}

func assertDelivered(t *testing.T, sink *tickSink, want []time.Time) {
	t.Helper()
	got := sink.delivered()
	ok := len(got) == len(want)
	for _, w := range want {
		ok = ok && got[tickID(w)] == 1
	}
	if !ok {
		var ids []string
		for _, w := range want {
			ids = append(ids, tickID(w))
		}
		t.Errorf("delivered %v, want each of %v once", got, ids)
	}
}
