package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-serverless/nimbus/internal/async"
)

// Async is the Async Service's metrics: an async.Metrics.
type Async struct {
	submitted, retries, deadLetters *prometheus.CounterVec
	failed, dropped, destFailures   *prometheus.CounterVec
	age                             *prometheus.HistogramVec
}

var _ async.Metrics = (*Async)(nil)

// ageBuckets span a retry's back-off up to Lambda's longest event age (6 h).
var ageBuckets = []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600, 21600}

func newAsync() *Async {
	f := []string{LabelFunction}
	fr := []string{LabelFunction, "reason"}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	return &Async{
		submitted: counter("nimbus_async_events_submitted_total", "Asynchronous events stored by this node (Event invokes accepted).", f),
		retries:   counter("nimbus_async_retries_total", "Failed attempts of asynchronous events stored for a retry.", f),
		failed: counter("nimbus_async_events_failed_total",
			"Asynchronous events that failed for good, by reason: retries_exhausted, event_age_exceeded, function_deleted.", fr),
		dropped: counter("nimbus_async_events_dropped_total",
			"Asynchronous events that failed for good and that no failure destination or dead-letter target took (only the dead-letter store keeps them), by reason.", fr),
		deadLetters: counter("nimbus_async_dead_letters_total", "Dead letters written (every event that failed for good).", f),
		destFailures: counter("nimbus_async_destination_failures_total",
			"Outcomes a destination did not take, by destination: on_success, on_failure, dead_letter_target.", []string{LabelFunction, "destination"}),
		age: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "nimbus_async_event_age_seconds",
			Help: "Age of an asynchronous event when an attempt of it starts running (now minus when it was submitted).", Buckets: ageBuckets}, f),
	}
}

func (a *Async) register(reg *prometheus.Registry) {
	reg.MustRegister(a.submitted, a.retries, a.failed, a.dropped, a.deadLetters, a.destFailures, a.age)
}

func (a *Async) vecs() []*prometheus.MetricVec {
	return []*prometheus.MetricVec{a.submitted.MetricVec, a.retries.MetricVec, a.failed.MetricVec, a.dropped.MetricVec,
		a.deadLetters.MetricVec, a.destFailures.MetricVec, a.age.MetricVec}
}

// Async returns the Async Service's hook (async.Config.Metrics).
func (m *Metrics) Async() *Async { return m.async }

// Submitted implements async.Metrics.
func (a *Async) Submitted(fn string) { a.submitted.WithLabelValues(fn).Inc() }

// Started implements async.Metrics.
func (a *Async) Started(fn string, age time.Duration) {
	a.age.WithLabelValues(fn).Observe(age.Seconds())
}

// Retried implements async.Metrics.
func (a *Async) Retried(fn string) { a.retries.WithLabelValues(fn).Inc() }

// Failed implements async.Metrics.
func (a *Async) Failed(fn, condition string, kept bool) {
	reason := failReason(condition)
	a.failed.WithLabelValues(fn, reason).Inc()
	if !kept {
		a.dropped.WithLabelValues(fn, reason).Inc()
	}
}

func failReason(condition string) string {
	switch condition {
	case async.CondRetriesExhausted:
		return "retries_exhausted"
	case async.CondEventAgeExceeded:
		return "event_age_exceeded"
	case async.CondFunctionDeleted:
		return "function_deleted"
	}
	return "other"
}

// DeadLettered implements async.Metrics.
func (a *Async) DeadLettered(fn string) { a.deadLetters.WithLabelValues(fn).Inc() }

// DestinationFailed implements async.Metrics.
func (a *Async) DestinationFailed(fn, kind string) {
	switch kind {
	case async.DestOnSuccess, async.DestOnFailure, async.DestDeadLetter:
	default:
		kind = "other"
	}
	a.destFailures.WithLabelValues(fn, kind).Inc()
}
