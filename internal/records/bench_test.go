package records_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/records"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// BenchmarkRecordWrites measures how many records per second the writer
// stores (the embedded store, fsync on every write, as a node runs it),
// from Add to written, for 1 and 20 functions: it must be above the node's
// largest invoke rate (docs/BENCHMARKS.md). The usage aggregation runs
// beside it, as on a node.
func BenchmarkRecordWrites(b *testing.B) {
	for _, fns := range []int{1, 20} {
		b.Run(fmt.Sprintf("functions-%d", fns), func(b *testing.B) {
			st, err := natsstore.Open(b.Context(), natsstore.Config{DataDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close(context.Background())
			s, err := records.Open(b.Context(), records.Config{JS: st.JetStream(), Health: st.Healthy, Node: "bench", Aggregate: true,
				MaxPending: 1 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			now := time.Now()
			b.ResetTimer()
			// A plain loop, not b.Loop: the timer must cover the Flush.
			for i := range b.N {
				r := records.Record{RequestID: fmt.Sprintf("c1b0d3e2-9f8a-4b7c-8d6e-%012d", i), Function: fmt.Sprintf("function-%d", i%fns),
					Qualifier: "$LATEST", Trigger: "api", StartTime: now, EndTime: now, Duration: 1.23, BilledDuration: 2,
					MemorySize: 128, MaxMemoryUsed: 20, InstanceID: "function-0-a1b2c3d4e5f6", Node: "bench", Status: records.StatusSuccess}
				s.Add(&r)
			}
			if err := s.Flush(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if s.Dropped() > 0 {
				b.Fatalf("dropped %d records", s.Dropped())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
