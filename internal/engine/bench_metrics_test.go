package engine

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/metrics"
	"github.com/nimbus-serverless/nimbus/internal/observe"
)

// BenchmarkWarmInvokeMetrics is BenchmarkWarmInvokeExec with and without
// the Prometheus metrics' observer (observe.Invoker), one after the other
// in each iteration so that both see the same load. Reported: each one's
// p50 and the p50 of the per-iteration differences (added-p50-us); target:
// within 5 % of the plain p50.
func BenchmarkWarmInvokeMetrics(b *testing.B) {
	h := newBenchHarness(b)
	obs := &observe.Invoker{Engine: h.e, Observers: []observe.Observer{metrics.New().Observer()}}
	req := nimbus.Invocation{RequestID: "bench", Payload: []byte(`{}`)}
	once := func(inv interface {
		Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error)
	}) time.Duration {
		began := time.Now()
		res, err := inv.Invoke(b.Context(), h.fn, req)
		if err != nil || res.Err != nil {
			b.Fatal(err, res.Err)
		}
		return time.Since(began)
	}
	for range 50 {
		once(h.e)
		once(obs)
	}
	var plain, observed, added []time.Duration
	for b.Loop() {
		p, o := once(h.e), once(obs)
		plain, observed, added = append(plain, p), append(observed, o), append(added, o-p)
	}
	p50 := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2]) / 1e3
	}
	pp, op := p50(plain), p50(observed)
	b.ReportMetric(pp, "plain-p50-us")
	b.ReportMetric(op, "metrics-p50-us")
	b.ReportMetric(p50(added), "added-p50-us")
	b.ReportMetric(100*(op-pp)/pp, "added-%")
}
