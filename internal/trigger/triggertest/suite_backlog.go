package triggertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// gateSink records like Sink; while held, each Deliver waits until the
// sink is opened (or ctx ends). It keeps the most batches in flight at
// once, overall and of one non-empty key.
type gateSink struct {
	Sink

	mu      sync.Mutex
	gate    chan struct{} // nil: open
	out     int
	peak    int
	perKey  map[string]int
	keyPeak int
}

func newGateSink() *gateSink { return &gateSink{perKey: map[string]int{}} }

func (s *gateSink) Deliver(ctx context.Context, batch []trigger.Message) error {
	key := batch[0].Key
	s.mu.Lock()
	s.out++
	s.peak = max(s.peak, s.out)
	if key != "" {
		s.perKey[key]++
		s.keyPeak = max(s.keyPeak, s.perKey[key])
	}
	gate := s.gate
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.out--
		if key != "" {
			s.perKey[key]--
		}
		s.mu.Unlock()
	}()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Sink.Deliver(ctx, batch)
}

// hold makes the Deliver calls from now on wait for open.
func (s *gateSink) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
}

// open lets every held Deliver, and all later ones, through.
func (s *gateSink) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

func (s *gateSink) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out
}

func (s *gateSink) peaks() (all, oneKey int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.keyPeak
}

// testParallelism: parallelism follows the backlog. A lone message is a
// batch of one, delivered at once; a backlog over four keys, while the
// function blocks, has exactly Concurrency batches out, never two of one
// key.
func testParallelism(t *testing.T, h Harness) {
	tg := h.Setup(t)
	const size, concurrency = 5, 4
	o := options(size, 0, concurrency)
	sink := newGateSink()
	stop := Run(t, tg.Source(t, SourceSetup{}), sink, o)
	t.Cleanup(sink.open)
	waitActive(t, o)

	sink.hold()
	tg.Publish(t, 1, []byte(Body(0)))
	WaitFor(t, "the lone message's batch", func() bool { return sink.inFlight() == 1 })
	sink.open()
	sink.WaitDistinct(t, 1, wait)
	if b := sink.Batches(); len(b) != 1 || len(b[0]) != 1 {
		t.Errorf("the lone message came in %d batches (the first of %d), want one batch of one", len(b), len(b[0]))
	}

	sink.hold()
	tg.Publish(t, 4, bodies(1, 201)...)
	WaitFor(t, "Concurrency batches in flight", func() bool { return sink.inFlight() >= concurrency })
	time.Sleep(100 * time.Millisecond) // room for a batch too many
	if n := sink.inFlight(); n != concurrency {
		t.Errorf("%d batches in flight while the function blocks, want Concurrency = %d", n, concurrency)
	}
	sink.open()
	sink.WaitDistinct(t, 201, wait)
	waitSettled(t, o)
	stop()
	if all, oneKey := sink.peaks(); all != concurrency || oneKey > 1 {
		t.Errorf("at most %d batches in flight at once, %d of one key; want %d, and 1", all, oneKey, concurrency)
	}
	for _, b := range sink.Batches() {
		if len(b) > size {
			t.Fatalf("batch of %d, want at most %d", len(b), size)
		}
	}
	if n := len(sink.Messages()); n != 201 {
		t.Errorf("delivered %d messages, want each of 201 once", n)
	}
}
