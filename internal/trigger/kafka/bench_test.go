package kafka

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// noopSink counts messages and closes done once it has seen want.
type noopSink struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (s *noopSink) Deliver(_ context.Context, batch []trigger.Message) error {
	k := int64(len(batch))
	if v := s.n.Add(k); v >= s.want && v-k < s.want {
		close(s.done)
	}
	return nil
}

// BenchmarkThroughput measures messages/s from kfake (8 partitions) into a
// no-op sink, in batches of 100 with 8 batches in flight. The records are
// produced before the timer starts; the timer covers joining the group,
// fetching, delivering and committing.
func BenchmarkThroughput(b *testing.B) {
	brokers := cluster(b)
	produce(b, brokers, 0, b.N)
	sink := &noopSink{want: int64(b.N), done: make(chan struct{})}
	src := testSource(b, brokers, StartTrimHorizon)
	b.ResetTimer()
	begin := time.Now()
	r := start(b, src, sink, options("g-bench", 100, 8))
	select {
	case <-sink.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("delivered %d of %d", sink.n.Load(), b.N)
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if err := r.stop(b); err != nil {
		b.Fatal(err)
	}
}
