package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Triggers is the triggers' metrics: a trigger.Metrics. The trigger label
// is the trigger's type.
type Triggers struct {
	delivered, failed *prometheus.CounterVec
	batch, lag        *prometheus.HistogramVec
}

var _ trigger.Metrics = (*Triggers)(nil)

var (
	batchBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10000}
	lagBuckets   = []float64{.001, .01, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600}
)

func newTriggers() *Triggers {
	ft := []string{LabelFunction, LabelTrigger}
	return &Triggers{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nimbus_trigger_messages_delivered_total",
			Help: "Messages from triggers whose invocation succeeded."}, ft),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nimbus_trigger_messages_failed_total",
			Help: "Messages from triggers that failed for good (past the retry limit: sent to the failure destination or dead-letter queue, or dropped)."}, ft),
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "nimbus_trigger_batch_size",
			Help: "Messages per batch a trigger's source delivers.", Buckets: batchBuckets}, ft),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "nimbus_trigger_lag_seconds",
			Help: "Age of a batch's oldest message when the batch is delivered (like Lambda's IteratorAge; sources that give no message time count 0).", Buckets: lagBuckets}, ft),
	}
}

func (tr *Triggers) register(reg *prometheus.Registry) {
	reg.MustRegister(tr.delivered, tr.failed, tr.batch, tr.lag)
}

func (tr *Triggers) vecs() []*prometheus.MetricVec {
	return []*prometheus.MetricVec{tr.delivered.MetricVec, tr.failed.MetricVec, tr.batch.MetricVec, tr.lag.MetricVec}
}

// Triggers returns the triggers' hook (trigger.ManagerConfig.Metrics).
func (m *Metrics) Triggers() *Triggers { return m.trigger }

// Batch implements trigger.Metrics.
func (tr *Triggers) Batch(fn, typ string, size int, lag time.Duration) {
	typ = triggers[triggerIndex(typ)]
	tr.batch.WithLabelValues(fn, typ).Observe(float64(size))
	tr.lag.WithLabelValues(fn, typ).Observe(lag.Seconds())
}

// Delivered implements trigger.Metrics.
func (tr *Triggers) Delivered(fn, typ string, n int) {
	tr.delivered.WithLabelValues(fn, triggers[triggerIndex(typ)]).Add(float64(n))
}

// Failed implements trigger.Metrics.
func (tr *Triggers) Failed(fn, typ string, n int) {
	tr.failed.WithLabelValues(fn, triggers[triggerIndex(typ)]).Add(float64(n))
}
