// Package metrics exposes a node's Prometheus metrics: invocations (an
// observe.Observer, invoke.go), the engine's pools and the node read at
// scrape time (pools.go), the Async Service and the triggers through the
// hooks those packages define (async.go, trigger.go), store writes and
// invocation records (store.go). Everything is registered in the node's own
// prometheus.Registry, with the Go runtime and process collectors; Handler
// serves it in the exposition format (docs/observability.md lists
// every metric).
//
// Names follow the OpenTelemetry FaaS semantic conventions where one exists
// (faas.invocations → faas_invocations_total); the rest are nimbus_*. No
// label takes unbounded values: function names are bounded by the registry
// (Forget removes a deleted function's series), triggers and outcomes are
// fixed lists.
package metrics

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nimbus-serverless/nimbus/internal/records"
)

// Label names.
const (
	LabelFunction  = "function"
	LabelQualifier = "qualifier"
	LabelTrigger   = "trigger"
	LabelOutcome   = "outcome"
)

// Metrics is a node's metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	inv invocationVecs
	// fns caches each function's series (*fnSeries, by name) for the
	// invoke path; mu orders their making against Forget.
	fns   sync.Map
	mu    sync.Mutex
	endFn func(*records.Record)

	async   *Async
	trigger *Triggers

	storeWrite     *prometheus.HistogramVec
	recordsWritten prometheus.Counter
	recordsDropped prometheus.Counter

	// byFunction are the vectors with a function label, for Forget.
	byFunction []*prometheus.MetricVec
	watchOnce  sync.Once
}

// New returns the metrics of a node, registered in a registry of their own
// with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.inv = newInvocationVecs()
	m.async = newAsync()
	m.trigger = newTriggers()
	m.storeWrite = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "nimbus_store_write_duration_seconds", Help: "Time taken by a write to the store (KV writes and code package writes), by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
	}, []string{"op"})
	m.recordsWritten = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nimbus_records_written_total", Help: "Invocation records written to the records stream.",
	})
	m.recordsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nimbus_records_dropped_total", Help: "Invocation records dropped (the writer's buffer was full or the store failed).",
	})
	m.reg.MustRegister(m.storeWrite, m.recordsWritten, m.recordsDropped)
	m.inv.register(m.reg)
	m.async.register(m.reg)
	m.trigger.register(m.reg)
	m.byFunction = append(m.inv.vecs(), m.async.vecs()...)
	m.byFunction = append(m.byFunction, m.trigger.vecs()...)
	m.endFn = m.end
	return m
}

// Registry is the registry the metrics are in (to add collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format (text,
// or protobuf/OpenMetrics as the scraper asks). A collector that fails
// leaves its metrics out and the rest is served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Forget removes every series of a deleted function: call it when the
// registry says a function is gone. Series of the function made later (an
// async event of the deleted function failing, say) come back until the
// next Forget.
func (m *Metrics) Forget(function string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fns.Delete(function)
	l := prometheus.Labels{LabelFunction: function}
	for _, v := range m.byFunction {
		v.DeletePartialMatch(l)
	}
}

// RecordsWritten counts n invocation records written.
func (m *Metrics) RecordsWritten(n int) { m.recordsWritten.Add(float64(n)) }

// RecordsDropped counts n invocation records dropped.
func (m *Metrics) RecordsDropped(n int) { m.recordsDropped.Add(float64(n)) }
