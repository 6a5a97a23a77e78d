package records_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/records"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// BenchmarkStats seeds 1,000 functions and 1,000,000 records spread over
// the last 24 hours through the write path (Add, the embedded store with
// fsync on every write, as a node runs it), folds them into usage and
// statistics (reported: ns per record folded), then measures the queries
// of the console's pages (docs/BENCHMARKS.md).
func BenchmarkStats(b *testing.B) {
	const fns, n = 1000, 1_000_000
	st, err := natsstore.Open(b.Context(), natsstore.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close(context.Background())
	s, err := records.Open(b.Context(), records.Config{JS: st.JetStream(), Health: st.Healthy, Node: "bench", MaxPending: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	now := time.Now().UTC()
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	for i := range n {
		at := now.Add(-24*time.Hour + time.Duration(i)*(24*time.Hour/n))
		status := records.StatusSuccess
		switch x := rng.IntN(1000); {
		case x < 10:
			status = records.StatusFunctionError
		case x < 12:
			status = records.StatusTimeout
		case x < 17:
			status = records.StatusThrottled
		case x < 18:
			status = records.StatusPlatformError
		}
		dur := math.Exp(rng.NormFloat64() + 3) // a median of 20 ms
		r := records.Record{RequestID: fmt.Sprintf("c1b0d3e2-9f8a-4b7c-8d6e-%012d", i), Function: fmt.Sprintf("function-%04d", i%fns),
			Qualifier: "$LATEST", Trigger: "api", StartTime: at, EndTime: at.Add(time.Duration(dur * float64(time.Millisecond))),
			Duration: dur, BilledDuration: int64(math.Ceil(dur)), MemorySize: 128, MaxMemoryUsed: 20, ColdStart: rng.IntN(100) == 0,
			InstanceID: "function-0-a1b2c3d4e5f6", Node: "bench", Status: status}
		if status == records.StatusThrottled || status == records.StatusPlatformError {
			r.Duration, r.BilledDuration = 0, 0
		}
		s.Add(&r)
	}
	if err := s.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	if s.Dropped() > 0 {
		b.Fatalf("dropped %d records", s.Dropped())
	}
	written := time.Since(start)
	start = time.Now()
	if err := s.Fold(b.Context()); err != nil {
		b.Fatal(err)
	}
	folded := time.Since(start)
	b.Logf("seeded %d records in %s, folded in %s", n, written.Round(time.Millisecond), folded.Round(time.Millisecond))

	b.Run("Fold", func(b *testing.B) {
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(float64(folded.Nanoseconds())/n, "ns/record")
		b.ReportMetric(folded.Seconds(), "s/1M-records")
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := s.Stats(b.Context(), records.StatsQuery{Window: "24h", ByFunction: true}); err != nil { // starts the index
		b.Fatal(err)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	indexMB := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
	ten := func(fn string) bool { return fn < "function-0010" }
	for _, q := range []struct {
		name string
		q    records.StatsQuery
		want int // functions
	}{
		{"24h-by-function", records.StatsQuery{Window: "24h", ByFunction: true}, fns},
		{"1h-by-function", records.StatsQuery{Window: "1h", ByFunction: true}, fns},
		{"7d-by-function", records.StatsQuery{Window: "7d", ByFunction: true}, fns},
		{"1h-account", records.StatsQuery{Window: "1h"}, 0},
		{"24h-account", records.StatsQuery{Window: "24h"}, 0},
		{"7d-account", records.StatsQuery{Window: "7d"}, 0},
		{"1h-function", records.StatsQuery{Window: "1h", Function: "function-0042"}, 0},
		{"24h-function", records.StatsQuery{Window: "24h", Function: "function-0042"}, 0},
		{"24h-restricted-10-by-function", records.StatsQuery{Window: "24h", ByFunction: true, Functions: ten}, 10},
	} {
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				rep, err := s.Stats(b.Context(), q.q)
				if err != nil {
					b.Fatal(err)
				}
				if len(rep.Functions) != q.want || rep.Total.Invocations == 0 {
					b.Fatalf("%d functions, %d invocations", len(rep.Functions), rep.Total.Invocations)
				}
			}
			if q.name == "24h-by-function" {
				b.ReportMetric(indexMB, "index-MB")
			}
		})
	}
}
