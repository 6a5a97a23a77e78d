package trigger

import (
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

// BenchmarkDeliver measures the Sink's own cost per message (encoding,
// partial-response parsing, counting) with a no-op function, batches of 100.
func BenchmarkDeliver(b *testing.B) {
	f := newSinkFixture(nimbus.Trigger{BatchSize: 100})
	batch := messages(100)
	for i := range batch {
		batch[i].Extensions = map[string]any{"partition": 3, "offset": int64(1 << 40)}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := f.sink.Deliver(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/msg")
}
