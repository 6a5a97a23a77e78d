package async_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
)

// recMetrics records what the service tells its Metrics, one line a call.
type recMetrics struct {
	mu    sync.Mutex
	calls []string
}

func (m *recMetrics) add(format string, a ...any) {
	m.mu.Lock()
	m.calls = append(m.calls, fmt.Sprintf(format, a...))
	m.mu.Unlock()
}

func (m *recMetrics) Submitted(fn string)                  { m.add("submitted %s", fn) }
func (m *recMetrics) Started(fn string, age time.Duration) { m.add("started %s %s", fn, age) }
func (m *recMetrics) Retried(fn string)                    { m.add("retried %s", fn) }
func (m *recMetrics) Failed(fn, cond string, kept bool)    { m.add("failed %s %s %v", fn, cond, kept) }
func (m *recMetrics) DeadLettered(fn string)               { m.add("dead-lettered %s", fn) }
func (m *recMetrics) DestinationFailed(fn, kind string)    { m.add("destination-failed %s %s", fn, kind) }

func (m *recMetrics) list() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

// TestServiceMetrics: a failing function retried once, then failed for
// good, tells Metrics each step (the second attempt's age is the back-off
// the clock was moved by), and a success whose destination fails says so;
// Backlog counts the messages waiting per function.
func TestServiceMetrics(t *testing.T) {
	m := &recMetrics{}
	h := newHarness(t, func(c *async.Config) { c.Metrics = m })
	one := 1
	h.deploy("flaky", func(fn *nimbus.Function) {
		fn.EventInvoke = &nimbus.EventInvokeConfig{MaximumRetryAttempts: &one}
	})
	h.inv.handle("flaky", func(context.Context, []byte) (nimbus.Result, error) {
		return nimbus.Result{Err: &nimbus.FunctionError{Type: "Boom", Message: "no"}}, nil
	})
	id := h.submit("flaky", `{}`)
	h.waitStatus("flaky", id, nimbus.TaskRetrying)
	h.clock.Advance(10 * time.Second)
	h.waitStatus("flaky", id, nimbus.TaskFailed)
	// The submit is counted once its event is stored, when the dispatcher
	// may already have started it: "submitted" is in no order with the
	// rest, which are in order.
	want := []string{"started flaky 0s", "retried flaky", "started flaky 10s", "dead-lettered flaky",
		"failed flaky RetriesExhausted false"}
	got := m.list()
	rest := slices.DeleteFunc(slices.Clone(got), func(c string) bool { return c == "submitted flaky" })
	if len(got)-len(rest) != 1 || !slices.Equal(rest, want) {
		t.Errorf("calls = %q, want \"submitted flaky\" once and, in order, %q", got, want)
	}

	h.dest.mu.Lock()
	h.dest.err = errors.New("down")
	h.dest.mu.Unlock()
	h.deploy("ok", func(fn *nimbus.Function) { fn.EventInvoke = &nimbus.EventInvokeConfig{OnSuccess: "nats:done"} })
	h.inv.handle("ok", func(context.Context, []byte) (nimbus.Result, error) { return nimbus.Result{Payload: []byte(`1`)}, nil })
	h.waitStatus("ok", h.submit("ok", `{}`), nimbus.TaskSucceeded)
	if got := m.list(); !slices.Contains(got, "destination-failed ok on_success") {
		t.Errorf("calls = %q, want a failed on_success destination", got)
	}

	zero := 0
	h.deploy("held", func(fn *nimbus.Function) { fn.ReservedConcurrency = &zero })
	h.submit("held", `{}`)
	h.submit("held", `{}`)
	backlog, err := h.svc.Backlog(t.Context())
	if err != nil || backlog["held"] != 2 || len(backlog) != 1 {
		t.Errorf("backlog = %v, %v; want held: 2 only", backlog, err)
	}
}
