package trigger

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

type recMetrics struct {
	mu    sync.Mutex
	calls []string
}

func (m *recMetrics) add(format string, a ...any) {
	m.mu.Lock()
	m.calls = append(m.calls, fmt.Sprintf(format, a...))
	m.mu.Unlock()
}

func (m *recMetrics) Batch(fn, typ string, size int, lag time.Duration) {
	m.add("batch %s %s %d %s", fn, typ, size, lag)
}
func (m *recMetrics) Delivered(fn, typ string, n int) { m.add("delivered %s %s %d", fn, typ, n) }
func (m *recMetrics) Failed(fn, typ string, n int)    { m.add("failed %s %s %d", fn, typ, n) }

// TestDeliverMetrics: a batch of five, one of them poison, is reported as
// a batch of five whose lag is its oldest message's age, then four
// delivered and one failed; a batch whose messages carry no time has no
// lag.
func TestDeliverMetrics(t *testing.T) {
	f := newSinkFixture(nimbus.Trigger{Type: "kafka", BatchSize: 5, MaxRetries: 1, FailureDestination: "nats:dlq"})
	m := &recMetrics{}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	f.sink.cfg.Metrics, f.sink.cfg.Now = m, func() time.Time { return now }
	f.inv.answer = func(_ int, events []map[string]any) (nimbus.Result, error) {
		if slices.Contains(ids(events), "m2") {
			return nimbus.Result{Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":"m2"}]}`)}, nil
		}
		return nimbus.Result{}, nil
	}
	batch := messages(5)
	batch[1].Time, batch[3].Time = now.Add(-3*time.Second), now.Add(-7*time.Second)
	if err := f.sink.Deliver(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if err := f.sink.Deliver(t.Context(), messages(1)); err != nil {
		t.Fatal(err)
	}
	want := []string{"batch fn kafka 5 7s", "delivered fn kafka 4", "failed fn kafka 1", "batch fn kafka 1 0s", "delivered fn kafka 1"}
	if !slices.Equal(m.calls, want) {
		t.Errorf("calls = %q, want %q", m.calls, want)
	}
}
