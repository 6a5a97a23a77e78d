package nats

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

// BenchmarkThroughput measures messages/s from a JetStream stream (file
// storage, on an embedded server over loopback TCP) into a no-op sink, in
// batches of 100 with 8 in flight over 8 subjects. The messages are
// published before the timer starts; the timer covers creating the
// consumer, pulling, delivering and acknowledging.
func BenchmarkThroughput(b *testing.B) {
	e := startEmbedded(b)
	_, js := connect(b, e.url())
	name, prefix := stream(b, js, jetstream.FileStorage)
	publish(b, js, prefix, 0, b.N, 8)
	sink := &noopSink{want: int64(b.N), done: make(chan struct{})}
	src := testSource(b, Config{URL: e.url(), Stream: name, StartPosition: StartTrimHorizon})
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
	if err := r.stop(); err != nil {
		b.Fatal(err)
	}
}
