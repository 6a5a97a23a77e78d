package triggertest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// CheckSink records like Sink and checks the batching contract of a
// source: one key per batch, at most Max messages per batch, and never two
// batches of one non-empty key in flight (unordered messages, of key "",
// may be out in several batches at once).
type CheckSink struct {
	*Sink
	Max int

	mu       sync.Mutex
	inflight map[string]bool
	problems []string
}

// NewCheckSink returns a CheckSink for batches of at most max messages.
func NewCheckSink(max int) *CheckSink {
	return &CheckSink{Sink: &Sink{}, Max: max, inflight: make(map[string]bool)}
}

// Deliver implements trigger.Sink.
func (s *CheckSink) Deliver(ctx context.Context, batch []trigger.Message) error {
	key := batch[0].Key
	s.mu.Lock()
	if len(batch) > s.Max {
		s.problems = append(s.problems, fmt.Sprintf("batch of %d > %d", len(batch), s.Max))
	}
	for _, m := range batch {
		if m.Key != key {
			s.problems = append(s.problems, fmt.Sprintf("batch mixes keys %q and %q", key, m.Key))
		}
	}
	if key == "" {
		s.mu.Unlock()
		return s.Sink.Deliver(ctx, batch)
	}
	if s.inflight[key] {
		s.problems = append(s.problems, "two batches of key "+key+" in flight")
	}
	s.inflight[key] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.inflight, key)
		s.mu.Unlock()
	}()
	return s.Sink.Deliver(ctx, batch)
}

// Check reports every breach of the contract seen so far.
func (s *CheckSink) Check(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.problems {
		t.Error(p)
	}
}
