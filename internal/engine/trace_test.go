package engine

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/tracing"
)

// tracedHarness is a harness whose engine records spans in memory.
func tracedHarness(t *testing.T, mod func(*Config)) (*harness, *sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	h := newHarness(t, func(c *Config) {
		c.TracerProvider = tp
		if mod != nil {
			mod(c)
		}
	})
	return h, tp, exp
}

// tracedInvoke runs one invocation under a span "invoke", as the tracing
// Observer would start it, and returns that span's id.
func tracedInvoke(t *testing.T, h *harness, tp trace.TracerProvider, fn *nimbus.Function, payload string) (nimbus.Result, trace.SpanID) {
	t.Helper()
	ctx, span := tp.Tracer("test").Start(t.Context(), "invoke")
	defer span.End()
	res, err := h.e.Invoke(ctx, fn, nimbus.Invocation{RequestID: "r-" + time.Now().Format("150405.000000000"), Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	return res, span.SpanContext().SpanID()
}

// byParent indexes spans by their parent's span id.
func byParent(spans tracetest.SpanStubs) map[trace.SpanID][]tracetest.SpanStub {
	m := map[trace.SpanID][]tracetest.SpanStub{}
	for _, s := range spans {
		m[s.Parent.SpanID()] = append(m[s.Parent.SpanID()], s)
	}
	return m
}

func names(spans []tracetest.SpanStub) map[string]tracetest.SpanStub {
	m := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		m[s.Name] = s
	}
	return m
}

// TestTraceColdAndWarm: a cold invoke has queue, cold start (sandbox
// start, runtime init) and run under the invocation's span; a warm one
// has queue and run. The function's _X_AMZN_TRACE_ID names the run span.
func TestTraceColdAndWarm(t *testing.T) {
	h, tp, exp := tracedHarness(t, nil)
	res, root := tracedInvoke(t, h, tp, h.fn, `{}`)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	kids := names(byParent(exp.GetSpans())[root])
	if len(kids) != 3 {
		t.Fatalf("cold invoke: children %v, want queue, cold start, run", keys(kids))
	}
	queue, cold, run := kids["queue"], kids["cold start"], kids["run"]
	if queue.Name == "" || cold.Name == "" || run.Name == "" {
		t.Fatalf("cold invoke: children %v, want queue, cold start, run", keys(kids))
	}
	phases := names(byParent(exp.GetSpans())[cold.SpanContext.SpanID()])
	sb, ri := phases["sandbox start"], phases["runtime init"]
	if len(phases) != 2 || sb.Name == "" || ri.Name == "" {
		t.Fatalf("cold start's children %v, want sandbox start and runtime init", keys(phases))
	}
	if sb.StartTime.Before(cold.StartTime) || ri.StartTime.Before(sb.EndTime) || ri.EndTime.After(cold.EndTime) ||
		run.StartTime.Before(cold.EndTime) || cold.EndTime.Sub(cold.StartTime) <= 0 {
		t.Errorf("phases out of order: cold %v-%v, sandbox %v-%v, init %v-%v, run from %v",
			cold.StartTime, cold.EndTime, sb.StartTime, sb.EndTime, ri.StartTime, ri.EndTime, run.StartTime)
	}
	var out struct{ Trace string }
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatal(err)
	}
	if want := tracing.XRay(run.SpanContext); out.Trace != want {
		t.Errorf("function's _X_AMZN_TRACE_ID = %q, want the run span's %q", out.Trace, want)
	}

	exp.Reset()
	res, root = tracedInvoke(t, h, tp, h.fn, `{}`)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	kids = names(byParent(exp.GetSpans())[root])
	if len(kids) != 1 || kids["run"].Name == "" {
		t.Fatalf("warm invoke: children %v, want run only (a warm hit does not queue)", keys(kids))
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTraceFunctionErrors: a failed init marks the cold start, a function
// error the run.
func TestTraceFunctionErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const crashDigest = "3333333333333333333333333333333333333333333333333333333333333333"
	h, tp, exp := tracedHarness(t, func(c *Config) {
		c.Code = dirCache{dirs: map[string]string{goodDigest: behaveDir, crashDigest: dir}}
	})
	crash := *h.fn
	crash.Name, crash.CodeSHA256 = "crash", crashDigest
	res, root := tracedInvoke(t, h, tp, &crash, `{}`)
	if res.Err == nil || res.Err.Type != "Runtime.ExitError" {
		t.Fatalf("function error %+v, want Runtime.ExitError", res.Err)
	}
	kids := names(byParent(exp.GetSpans())[root])
	if cold := kids["cold start"]; cold.Status.Code != codes.Error || cold.Status.Description != "Runtime.ExitError" {
		t.Fatalf("cold start status %+v (children %v), want Error Runtime.ExitError", cold.Status, keys(kids))
	}
	if _, ran := kids["run"]; ran {
		t.Error("a failed init has a run span")
	}

	exp.Reset()
	res, root = tracedInvoke(t, h, tp, h.fn, `{"error":"boom"}`)
	if res.Err == nil {
		t.Fatal("no function error")
	}
	if run := names(byParent(exp.GetSpans())[root])["run"]; run.Status.Code != codes.Error {
		t.Fatalf("run status %+v, want Error", run.Status)
	}
}

// TestTraceHTTPForward: an HTTP function gets the run span as traceparent
// and X-Amzn-Trace-Id.
func TestTraceHTTPForward(t *testing.T) {
	const webDigest = "5555555555555555555555555555555555555555555555555555555555555555"
	dir := t.TempDir()
	const server = `import json, os
from http.server import HTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = json.dumps({"traceparent": self.headers.get("traceparent"), "xray": self.headers.get("X-Amzn-Trace-Id")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`
	if err := os.WriteFile(filepath.Join(dir, "server.py"), []byte(server), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\nexec /usr/bin/python3 \"$(dirname \"$0\")/server.py\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h, tp, exp := tracedHarness(t, func(c *Config) { c.Code = dirCache{dirs: map[string]string{webDigest: dir}} })
	web := *h.fn
	web.Name, web.Runtime, web.CodeSHA256 = "web", "http", webDigest
	ctx, span := tp.Tracer("test").Start(t.Context(), "invoke")
	res, err := h.e.Invoke(ctx, &web, nimbus.Invocation{RequestID: "r", Payload: []byte(`{}`),
		HTTP: &nimbus.HTTPRequest{Method: http.MethodPost, Path: "/", Body: []byte(`{}`),
			Header: http.Header{"Traceparent": {"00-11111111111111111111111111111111-2222222222222222-01"}}}})
	span.End()
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	run := names(byParent(exp.GetSpans())[span.SpanContext().SpanID()])["run"]
	var got struct{ Traceparent, Xray string }
	if err := json.Unmarshal(res.Payload, &got); err != nil {
		t.Fatalf("%s: %v", res.Payload, err)
	}
	if got.Traceparent != tracing.TraceParent(run.SpanContext) || got.Xray != tracing.XRay(run.SpanContext) {
		t.Fatalf("function saw traceparent %q and X-Amzn-Trace-Id %q, want the run span's %q and %q",
			got.Traceparent, got.Xray, tracing.TraceParent(run.SpanContext), tracing.XRay(run.SpanContext))
	}
}

// TestTraceOffAllocatesNothing: without a recording span the engine's
// tracing costs no allocation.
func TestTraceOffAllocatesNothing(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	hdr := http.Header{}
	allocs := testing.AllocsPerRun(100, func() {
		_, s := h.e.span(ctx, "run")
		endSpan(s, nil, nil)
		h.e.traceColdStart(ctx, boot{began: time.Now()}, "i", nil)
		tracing.Inject(ctx, hdr)
	})
	if allocs != 0 {
		t.Fatalf("tracing off: %v allocations per invoke, want 0", allocs)
	}
}

// BenchmarkWarmInvokeExecTraced is BenchmarkWarmInvokeExec with tracing on
// (every span recorded, exported to memory).
func BenchmarkWarmInvokeExecTraced(b *testing.B) {
	h := newBenchHarness(b)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	h.e.tracer = tp.Tracer(tracerName)
	req := nimbus.Invocation{RequestID: "bench", Payload: []byte(`{}`)}
	tr := tp.Tracer("bench")
	for b.Loop() {
		ctx, span := tr.Start(b.Context(), "invoke")
		res, err := h.e.Invoke(ctx, h.fn, req)
		span.End()
		if err != nil || res.Err != nil {
			b.Fatal(err, res.Err)
		}
		exp.Reset()
	}
}
