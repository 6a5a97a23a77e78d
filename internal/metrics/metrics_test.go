package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/metrics"
	"github.com/nimbus-serverless/nimbus/internal/metrics/metricstest"
	"github.com/nimbus-serverless/nimbus/internal/records"
)

// scrape serves a scrape of m through its Handler and parses it.
func scrape(t *testing.T, m *metrics.Metrics) metricstest.Families {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return metricstest.Parse(t, rec.Body)
}

// end runs a record through the Observer, as observe.Invoker does.
func end(m *metrics.Metrics, r records.Record) {
	_, done := m.Observer().Begin(context.Background(), &nimbus.Function{Name: r.Function}, &nimbus.Invocation{})
	done(&r)
}

func want(t *testing.T, f metricstest.Families, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := f.Value(name, labels...)
	if !ok || got != v {
		t.Errorf("%s%v = %v (found %v), want %v", name, labels, got, ok, v)
	}
}

func TestInvocations(t *testing.T) {
	m := metrics.New()
	base := records.Record{Function: "f", Qualifier: "$LATEST", Trigger: "api", InstanceID: "f-1", MaxMemoryUsed: 40}
	ok := base
	ok.Status, ok.Duration, ok.ColdStart, ok.InitDuration, ok.QueueDuration = records.StatusSuccess, 12, true, 150, 3
	warm := base
	warm.Status, warm.Duration, warm.Trigger = records.StatusSuccess, 2, "kafka"
	fnErr := base
	fnErr.Status, fnErr.Duration = records.StatusFunctionError, 5
	timeout := base
	timeout.Status, timeout.Duration = records.StatusTimeout, 1000
	throttled := records.Record{Function: "f", Qualifier: "$LATEST", Trigger: "async", Status: records.StatusThrottled}
	platform := records.Record{Function: "g", Trigger: "weird-trigger", Status: records.StatusPlatformError}
	left := base
	left.Function, left.Status, left.Duration, left.Trigger = "h", records.StatusAbandoned, 500, "url"
	for _, r := range []records.Record{ok, warm, fnErr, timeout, throttled, platform, left} {
		end(m, r)
	}
	f := scrape(t, m)
	want(t, f, 1, "faas_invocations_total", "function", "f", "qualifier", "$LATEST", "trigger", "api", "outcome", "success")
	want(t, f, 1, "faas_invocations_total", "function", "f", "trigger", "kafka", "outcome", "success")
	want(t, f, 1, "faas_invocations_total", "function", "f", "trigger", "api", "outcome", "function_error")
	want(t, f, 1, "faas_invocations_total", "function", "f", "trigger", "api", "outcome", "timeout")
	want(t, f, 1, "faas_invocations_total", "function", "f", "trigger", "async", "outcome", "throttled")
	want(t, f, 0, "faas_invocations_total", "function", "f", "trigger", "api", "outcome", "platform_error")
	// An unknown trigger is "other"; no qualifier is $LATEST.
	want(t, f, 1, "faas_invocations_total", "function", "g", "qualifier", "$LATEST", "trigger", "other", "outcome", "platform_error")
	// The caller left: not an error, but a run.
	want(t, f, 1, "faas_invocations_total", "function", "h", "trigger", "url", "outcome", "abandoned")
	want(t, f, 0, "faas_errors_total", "function", "h", "trigger", "url")
	want(t, f, 1, "faas_invoke_duration_seconds", "function", "h", "trigger", "url")
	want(t, f, 7, "faas_invocations_total")
	want(t, f, 2, "faas_errors_total", "function", "f") // the function's error and the timeout
	want(t, f, 1, "faas_errors_total", "function", "g")
	want(t, f, 1, "faas_timeouts_total", "function", "f", "trigger", "api")
	want(t, f, 1, "faas_coldstarts_total", "function", "f", "trigger", "api")
	want(t, f, 0, "faas_coldstarts_total", "function", "f", "trigger", "kafka")
	want(t, f, 1, "nimbus_throttles_total", "function", "f", "trigger", "async")
	want(t, f, 3, "faas_invoke_duration_seconds", "function", "f", "trigger", "api") // throttled and platform errors never ran
	want(t, f, 1, "faas_invoke_duration_seconds", "function", "f", "trigger", "kafka")
	if s := f.Sum("faas_invoke_duration_seconds", "function", "f", "trigger", "api"); s != 1.017 {
		t.Errorf("duration sum = %v s, want 1.017", s)
	}
	want(t, f, 1, "faas_init_duration_seconds", "function", "f")
	if s := f.Sum("faas_init_duration_seconds", "function", "f"); s != 0.15 {
		t.Errorf("init sum = %v s, want 0.15", s)
	}
	want(t, f, 4, "faas_mem_usage_bytes", "function", "f")
	if s := f.Sum("faas_mem_usage_bytes", "function", "f"); s != 4*40<<20 {
		t.Errorf("memory sum = %v, want %v", s, 4*40<<20)
	}
	want(t, f, 4, "nimbus_queue_duration_seconds", "function", "f")
	// The runtime and process collectors are there.
	if _, ok := f.Value("go_goroutines"); !ok {
		t.Error("no go_goroutines")
	}
	if _, ok := f.Value("process_resident_memory_bytes"); !ok {
		t.Error("no process_resident_memory_bytes")
	}
}

// TestForget: a deleted function's series go, every kind of them, and
// counting starts again at zero for a function made again with its name.
func TestForget(t *testing.T) {
	m := metrics.New()
	for _, fn := range []string{"gone", "kept"} {
		end(m, records.Record{Function: fn, Trigger: "api", Status: records.StatusSuccess, InstanceID: "i", Duration: 1, MaxMemoryUsed: 1})
		m.Async().Submitted(fn)
		m.Async().Failed(fn, async.CondRetriesExhausted, false)
		m.Triggers().Batch(fn, "kafka", 3, time.Second)
	}
	m.Forget("gone")
	f := scrape(t, m)
	for name, fam := range f {
		for _, s := range fam.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "function" && l.GetValue() == "gone" {
					t.Errorf("%s still has a series of the deleted function: %v", name, s.GetLabel())
				}
			}
		}
	}
	want(t, f, 1, "faas_invocations_total", "function", "kept", "outcome", "success")
	want(t, f, 1, "nimbus_async_events_submitted_total", "function", "kept")
	want(t, f, 1, "nimbus_trigger_batch_size", "function", "kept")
	end(m, records.Record{Function: "gone", Trigger: "api", Status: records.StatusSuccess})
	want(t, scrape(t, m), 1, "faas_invocations_total", "function", "gone", "outcome", "success")
}

// TestForgetRaces: Forget while invocations are counted loses no series
// for good: once the invocations stop and the function is counted again,
// its series are there.
func TestForgetRaces(t *testing.T) {
	m := metrics.New()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				end(m, records.Record{Function: "f", Trigger: "api", Status: records.StatusSuccess})
			}
		})
	}
	for range 100 {
		m.Forget("f")
	}
	wg.Wait()
	m.Forget("f")
	end(m, records.Record{Function: "f", Trigger: "api", Status: records.StatusSuccess})
	want(t, scrape(t, m), 1, "faas_invocations_total", "function", "f", "outcome", "success")
}

func TestAsyncAndTriggers(t *testing.T) {
	m := metrics.New()
	a, tr := m.Async(), m.Triggers()
	a.Submitted("f")
	a.Started("f", 0)
	a.Started("f", 10*time.Second)
	a.Retried("f")
	a.DeadLettered("f")
	a.Failed("f", async.CondRetriesExhausted, true)
	a.Failed("f", async.CondEventAgeExceeded, false)
	a.DestinationFailed("f", async.DestOnFailure)
	tr.Batch("f", "kafka", 10, 2*time.Second)
	tr.Delivered("f", "kafka", 9)
	tr.Failed("f", "kafka", 1)
	m.StoreWrite("kv_put", time.Millisecond)
	m.StoreWrite("nonsense", time.Millisecond)
	m.RecordsWritten(5)
	m.RecordsDropped(2)
	f := scrape(t, m)
	want(t, f, 1, "nimbus_async_events_submitted_total", "function", "f")
	want(t, f, 2, "nimbus_async_event_age_seconds", "function", "f")
	if s := f.Sum("nimbus_async_event_age_seconds", "function", "f"); s != 10 {
		t.Errorf("age sum = %v, want 10", s)
	}
	want(t, f, 1, "nimbus_async_retries_total", "function", "f")
	want(t, f, 1, "nimbus_async_dead_letters_total", "function", "f")
	want(t, f, 1, "nimbus_async_events_failed_total", "function", "f", "reason", "retries_exhausted")
	want(t, f, 1, "nimbus_async_events_failed_total", "function", "f", "reason", "event_age_exceeded")
	want(t, f, 1, "nimbus_async_events_dropped_total", "function", "f", "reason", "event_age_exceeded")
	if n := f.Series("nimbus_async_events_dropped_total", "reason", "retries_exhausted"); n != 0 {
		t.Errorf("an event a destination took counted as dropped")
	}
	want(t, f, 1, "nimbus_async_destination_failures_total", "function", "f", "destination", "on_failure")
	want(t, f, 1, "nimbus_trigger_batch_size", "function", "f", "trigger", "kafka")
	if s := f.Sum("nimbus_trigger_batch_size", "function", "f"); s != 10 {
		t.Errorf("batch size sum = %v, want 10", s)
	}
	want(t, f, 1, "nimbus_trigger_lag_seconds", "function", "f", "trigger", "kafka")
	want(t, f, 9, "nimbus_trigger_messages_delivered_total", "function", "f", "trigger", "kafka")
	want(t, f, 1, "nimbus_trigger_messages_failed_total", "function", "f", "trigger", "kafka")
	want(t, f, 1, "nimbus_store_write_duration_seconds", "op", "kv_put")
	want(t, f, 1, "nimbus_store_write_duration_seconds", "op", "other")
	want(t, f, 5, "nimbus_records_written_total")
	want(t, f, 2, "nimbus_records_dropped_total")
}

// TestWatch: what is read at scrape time: pools summed per function
// (a draining pool with the current one), the node, the helpers, the async
// backlog; a failing backlog leaves the rest served.
func TestWatch(t *testing.T) {
	m := metrics.New()
	var backlogErr error
	m.Watch(metrics.Sources{
		Pools: func() []metrics.Pool {
			return []metrics.Pool{
				{Function: "f", Busy: 2, Idle: 1, Frozen: 1, Starting: 1, Waiting: 3, InFlight: 2},
				{Function: "f", Busy: 1, InFlight: 1}, // draining
				{Function: "g", Idle: 2},
			}
		},
		Node: func() metrics.Node {
			return metrics.Node{Instances: 7, MaxInstances: 100, MemoryMB: 896, MaxMemoryMB: 4096}
		},
		Helpers: func() (int, int) { return 1, 2 },
		AsyncBacklog: func() (map[string]int, error) {
			return map[string]int{"f": 4}, backlogErr
		},
	})
	f := scrape(t, m)
	want(t, f, 3, "nimbus_instances", "function", "f", "qualifier", "$LATEST", "state", "busy")
	want(t, f, 1, "nimbus_instances", "function", "f", "state", "idle")
	want(t, f, 1, "nimbus_instances", "function", "f", "state", "starting")
	want(t, f, 2, "nimbus_instances", "function", "g", "state", "idle")
	want(t, f, 1, "nimbus_instances_frozen", "function", "f")
	want(t, f, 3, "nimbus_queue_depth", "function", "f")
	want(t, f, 3, "nimbus_concurrent_executions", "function", "f")
	want(t, f, 7, "nimbus_node_instances")
	want(t, f, 100, "nimbus_node_instances_max")
	want(t, f, 896<<20, "nimbus_node_instance_memory_bytes")
	want(t, f, 4096<<20, "nimbus_node_instance_memory_max_bytes")
	want(t, f, 1, "nimbus_sandbox_helpers_ready")
	want(t, f, 2, "nimbus_sandbox_helpers_target")
	want(t, f, 4, "nimbus_async_backlog_messages", "function", "f")

	backlogErr = errors.New("store down")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "nimbus_instances{") ||
		strings.Contains(rec.Body.String(), "nimbus_async_backlog_messages{") {
		t.Errorf("scrape with a failing backlog: %d, want 200 with the pools and without the backlog:\n%s", rec.Code, rec.Body)
	}
}

// TestLint: every metric passes Prometheus's own lint (names, units,
// help).
func TestLint(t *testing.T) {
	m := metrics.New()
	end(m, records.Record{Function: "f", Trigger: "api", Status: records.StatusSuccess, InstanceID: "i", ColdStart: true, InitDuration: 1, MaxMemoryUsed: 1})
	m.Async().Submitted("f")
	m.Async().Failed("f", async.CondRetriesExhausted, false)
	m.Async().DestinationFailed("f", async.DestOnSuccess)
	m.Triggers().Batch("f", "kafka", 1, 0)
	m.Triggers().Delivered("f", "kafka", 1)
	m.Triggers().Failed("f", "kafka", 1)
	m.StoreWrite("kv_put", time.Millisecond)
	m.Watch(metrics.Sources{Pools: func() []metrics.Pool { return []metrics.Pool{{Function: "f"}} }})
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "go_") || strings.HasPrefix(p.Metric, "process_") {
			continue
		}
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// BenchmarkObserve is what an invocation costs the metrics once its
// function's series exist: no allocation, no lock.
func BenchmarkObserve(b *testing.B) {
	m := metrics.New()
	ob := m.Observer()
	fn := &nimbus.Function{Name: "f"}
	req := &nimbus.Invocation{}
	r := records.Record{Function: "f", Qualifier: "$LATEST", Trigger: "api", Status: records.StatusSuccess, InstanceID: "i",
		Duration: 3, QueueDuration: 0.1, MaxMemoryUsed: 30}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, done := ob.Begin(ctx, fn, req)
			done(&r)
		}
	})
}

func TestObserveAllocs(t *testing.T) {
	m := metrics.New()
	ob := m.Observer()
	fn := &nimbus.Function{Name: "f"}
	req := &nimbus.Invocation{}
	r := records.Record{Function: "f", Qualifier: "$LATEST", Trigger: "api", Status: records.StatusSuccess, InstanceID: "i", Duration: 3}
	ctx := context.Background()
	_, done := ob.Begin(ctx, fn, req)
	done(&r)
	if n := testing.AllocsPerRun(100, func() {
		_, done := ob.Begin(ctx, fn, req)
		done(&r)
	}); n != 0 {
		t.Errorf("an observed invocation allocates %v times, want 0", n)
	}
}
