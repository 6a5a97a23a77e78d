package metrics

import (
	"context"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/observe"
	"github.com/nimbus-serverless/nimbus/internal/records"
)

// QualifierLatest is the qualifier label of every invocation so far.
const QualifierLatest = "$LATEST"

// triggers are the values of the trigger label: how an invocation arrived.
// Anything else is counted as "other", so that the label stays bounded.
var triggers = [...]string{
	nimbus.TriggerAPI, nimbus.TriggerURL, nimbus.TriggerAsync, nimbus.TriggerHTTP, nimbus.TriggerTimer,
	nimbus.TriggerKafka, nimbus.TriggerRabbitMQ, nimbus.TriggerNATS, nimbus.TriggerMQTT, nimbus.TriggerRedis,
	nimbus.TriggerS3, "other",
}

func triggerIndex(t string) int {
	switch t {
	case nimbus.TriggerAPI, "":
		return 0
	case nimbus.TriggerURL:
		return 1
	case nimbus.TriggerAsync:
		return 2
	case nimbus.TriggerHTTP:
		return 3
	case nimbus.TriggerTimer:
		return 4
	case nimbus.TriggerKafka:
		return 5
	case nimbus.TriggerRabbitMQ:
		return 6
	case nimbus.TriggerNATS:
		return 7
	case nimbus.TriggerMQTT:
		return 8
	case nimbus.TriggerRedis:
		return 9
	case nimbus.TriggerS3:
		return 10
	}
	return len(triggers) - 1
}

// outcomeIndex is the index of a record's status in records.Statuses (an
// unknown one is a platform error).
func outcomeIndex(status string) int {
	switch status {
	case records.StatusSuccess:
		return 0
	case records.StatusFunctionError:
		return 1
	case records.StatusTimeout:
		return 2
	case records.StatusThrottled:
		return 3
	case records.StatusAbandoned:
		return 5
	}
	return 4
}

// Buckets of the invocation histograms.
var (
	durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}
	initBuckets     = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	queueBuckets    = []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 10}
	memBuckets      = []float64{16 << 20, 32 << 20, 64 << 20, 128 << 20, 256 << 20, 512 << 20, 1 << 30, 2 << 30, 4 << 30, 10 << 30}
)

// invocationVecs are the invocation metrics.
type invocationVecs struct {
	invocations, errors, timeouts, coldstarts, throttles *prometheus.CounterVec
	duration, init, mem, queue                           *prometheus.HistogramVec
}

func newInvocationVecs() invocationVecs {
	fqt := []string{LabelFunction, LabelQualifier, LabelTrigger}
	fq := []string{LabelFunction, LabelQualifier}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, buckets []float64, labels []string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	}
	return invocationVecs{
		invocations: counter("faas_invocations_total", "Invocations, by how they arrived (trigger) and how they ended (outcome: success, function_error, timeout, throttled, platform_error, abandoned).",
			[]string{LabelFunction, LabelQualifier, LabelTrigger, LabelOutcome}),
		errors:     counter("faas_errors_total", "Invocations that failed: the function's error or crash, a timeout, or a platform failure (throttles are not errors).", fqt),
		timeouts:   counter("faas_timeouts_total", "Invocations stopped at the function's timeout.", fqt),
		coldstarts: counter("faas_coldstarts_total", "Invocations that started a new instance (a cold start).", fqt),
		throttles:  counter("nimbus_throttles_total", "Invocations refused for want of capacity (429 TooManyRequestsException): they never ran.", fqt),
		duration:   histogram("faas_invoke_duration_seconds", "Run time of the invocations that ran (the function's handler; a cold start's init is apart).", durationBuckets, fqt),
		init:       histogram("faas_init_duration_seconds", "Init time of cold starts (the instance's start and the runtime's init phase).", initBuckets, fq),
		mem:        histogram("faas_mem_usage_bytes", "Most memory an instance used during an invocation (its cgroup's peak).", memBuckets, fq),
		queue:      histogram("nimbus_queue_duration_seconds", "Time an invocation waited for an instance (warm or starting) before it ran.", queueBuckets, fq),
	}
}

func (v *invocationVecs) register(reg *prometheus.Registry) {
	reg.MustRegister(v.invocations, v.errors, v.timeouts, v.coldstarts, v.throttles, v.duration, v.init, v.mem, v.queue)
}

func (v *invocationVecs) vecs() []*prometheus.MetricVec {
	return []*prometheus.MetricVec{v.invocations.MetricVec, v.errors.MetricVec, v.timeouts.MetricVec, v.coldstarts.MetricVec,
		v.throttles.MetricVec, v.duration.MetricVec, v.init.MetricVec, v.mem.MetricVec, v.queue.MetricVec}
}

// fnSeries are one function's invocation series, made once and kept (in
// Metrics.fns) so that an invocation costs no label lookup.
type fnSeries struct {
	function, qualifier string
	init, mem, queue    prometheus.Observer
	// byTrigger holds the series of each trigger, made at its first
	// invocation (under Metrics.mu).
	byTrigger [len(triggers)]atomicSeries
}

type atomicSeries = atomic.Pointer[trigSeries]

// trigSeries are a function's series for one trigger.
type trigSeries struct {
	outcomes                              [6]prometheus.Counter // by outcomeIndex
	errors, timeouts, coldstarts, throttl prometheus.Counter
	duration                              prometheus.Observer
}

// Observer returns the observe.Observer that counts invocations.
func (m *Metrics) Observer() observe.Observer { return observer{m} }

type observer struct{ m *Metrics }

// Begin implements observe.Observer; the work is in end, once the record
// is there.
func (o observer) Begin(ctx context.Context, _ *nimbus.Function, _ *nimbus.Invocation) (context.Context, func(*records.Record)) {
	return ctx, o.m.endFn
}

// end counts an invocation's record: without allocating or taking a lock
// once the function's series exist.
func (m *Metrics) end(r *records.Record) {
	fs := m.function(r.Function, r.Qualifier)
	ts := fs.trigger(m, triggerIndex(r.Trigger))
	oi := outcomeIndex(r.Status)
	ts.outcomes[oi].Inc()
	switch r.Status {
	case records.StatusSuccess, records.StatusAbandoned:
	case records.StatusThrottled:
		ts.throttl.Inc()
	case records.StatusTimeout:
		ts.timeouts.Inc()
		ts.errors.Inc()
	default:
		ts.errors.Inc()
	}
	if r.ColdStart {
		ts.coldstarts.Inc()
		if r.InitDuration > 0 {
			fs.init.Observe(r.InitDuration / 1000)
		}
	}
	if r.InstanceID != "" {
		ts.duration.Observe(r.Duration / 1000)
		fs.queue.Observe(r.QueueDuration / 1000)
	}
	if r.MaxMemoryUsed > 0 {
		fs.mem.Observe(float64(r.MaxMemoryUsed) * (1 << 20))
	}
}

// function returns the series of a function, made at its first invocation.
func (m *Metrics) function(name, qualifier string) *fnSeries {
	if qualifier == "" {
		qualifier = QualifierLatest
	}
	if v, ok := m.fns.Load(name); ok {
		if fs := v.(*fnSeries); fs.qualifier == qualifier {
			return fs
		}
		return m.newFnSeries(name, qualifier) // another qualifier: not cached
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.fns.Load(name); ok {
		return v.(*fnSeries)
	}
	fs := m.newFnSeries(name, qualifier)
	if qualifier == QualifierLatest {
		m.fns.Store(name, fs)
	}
	return fs
}

func (m *Metrics) newFnSeries(name, qualifier string) *fnSeries {
	return &fnSeries{function: name, qualifier: qualifier,
		init:  m.inv.init.WithLabelValues(name, qualifier),
		mem:   m.inv.mem.WithLabelValues(name, qualifier),
		queue: m.inv.queue.WithLabelValues(name, qualifier)}
}

// trigger returns the function's series for trigger index i.
func (fs *fnSeries) trigger(m *Metrics, i int) *trigSeries {
	if ts := fs.byTrigger[i].Load(); ts != nil {
		return ts
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ts := fs.byTrigger[i].Load(); ts != nil {
		return ts
	}
	f, q, t := fs.function, fs.qualifier, triggers[i]
	ts := &trigSeries{
		errors:     m.inv.errors.WithLabelValues(f, q, t),
		timeouts:   m.inv.timeouts.WithLabelValues(f, q, t),
		coldstarts: m.inv.coldstarts.WithLabelValues(f, q, t),
		throttl:    m.inv.throttles.WithLabelValues(f, q, t),
		duration:   m.inv.duration.WithLabelValues(f, q, t),
	}
	for j, o := range records.Statuses {
		ts.outcomes[j] = m.inv.invocations.WithLabelValues(f, q, t, o)
	}
	fs.byTrigger[i].Store(ts)
	return ts
}
