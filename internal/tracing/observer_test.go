package tracing

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/records"
)

func newTestProvider(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithIDGenerator(idGenerator{}))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

func attrMap(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestObserverServerSpan(t *testing.T) {
	tp, exp := newTestProvider(t)
	o := NewObserver(tp, "eu-west-1", "123456789012")
	fn := &nimbus.Function{Name: "hello", MemoryMB: 256}
	req := nimbus.Invocation{RequestID: "req-1", Trigger: nimbus.TriggerAPI, TraceID: "Root=1-00000000-000000000000000000000000"}
	parent, _ := ParseLink(tp1)
	ctx, end := o.Begin(trace.ContextWithRemoteSpanContext(context.Background(), parent), fn, &req)
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceID() != parent.TraceID() {
		t.Fatalf("span's trace %s, want the caller's %s", sc.TraceID(), parent.TraceID())
	}
	if req.TraceID != XRay(sc) {
		t.Fatalf("req.TraceID = %q, want the span's %q", req.TraceID, XRay(sc))
	}
	end(&records.Record{Status: records.StatusSuccess, ColdStart: true, InstanceID: "hello-abc"})
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name != "hello" || s.SpanKind != trace.SpanKindServer || s.Parent.SpanID() != parent.SpanID() || s.Status.Code == codes.Error {
		t.Fatalf("span %s kind %v parent %s status %v", s.Name, s.SpanKind, s.Parent.SpanID(), s.Status)
	}
	a := attrMap(s.Attributes)
	for k, want := range map[attribute.Key]any{
		AttrTrigger: "http", AttrNimbusKind: "api", AttrInvocationID: "req-1", AttrName: "hello",
		AttrVersion: "$LATEST", AttrMaxMemory: int64(256 << 20), AttrColdStart: true, AttrInstanceID: "hello-abc",
		AttrResourceID: "arn:aws:lambda:eu-west-1:123456789012:function:hello",
	} {
		if got := a[k].AsInterface(); got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
}

func TestObserverLinksAndErrors(t *testing.T) {
	tp, exp := newTestProvider(t)
	o := NewObserver(tp, "us-east-1", "000000000000")
	fn := &nimbus.Function{Name: "worker", MemoryMB: 128}
	req := nimbus.Invocation{RequestID: "r", Trigger: "nats", TraceLinks: []string{tp1, xr1, "garbage"}}
	_, end := o.Begin(context.Background(), fn, &req)
	end(&records.Record{Status: records.StatusFunctionError, ErrorType: "Runtime.ExitError"})
	s := exp.GetSpans()[0]
	if s.SpanKind != trace.SpanKindConsumer || s.Parent.IsValid() {
		t.Fatalf("kind %v parent %v, want a root consumer span", s.SpanKind, s.Parent)
	}
	if len(s.Links) != 2 || s.Links[0].SpanContext.SpanID().String() != "00f067aa0ba902b7" || s.Links[1].SpanContext.SpanID().String() != "53995c3f42cd8ad8" {
		t.Fatalf("links %+v, want the traceparent's and the X-Ray header's", s.Links)
	}
	if s.Status.Code != codes.Error || s.Status.Description != "Runtime.ExitError" {
		t.Fatalf("status %+v, want Error Runtime.ExitError", s.Status)
	}
	if got := attrMap(s.Attributes)[AttrTrigger].AsString(); got != "pubsub" {
		t.Fatalf("faas.trigger = %q, want pubsub", got)
	}
}

// TestObserverRootOnlyXRay: a caller's X-Amzn-Trace-Id without a Parent
// makes the invocation a root span in the caller's trace.
func TestObserverRootOnlyXRay(t *testing.T) {
	tp, exp := newTestProvider(t)
	o := NewObserver(tp, "us-east-1", "000000000000")
	ctx := Extract(context.Background(), map[string][]string{"X-Amzn-Trace-Id": {"Root=1-5759e988-bd862e3fe1be46a994272793"}})
	req := nimbus.Invocation{RequestID: "r", Trigger: nimbus.TriggerURL}
	_, end := o.Begin(ctx, &nimbus.Function{Name: "f"}, &req)
	end(&records.Record{Status: records.StatusSuccess})
	s := exp.GetSpans()[0]
	if s.SpanContext.TraceID().String() != "5759e988bd862e3fe1be46a994272793" || s.Parent.IsValid() {
		t.Fatalf("trace %s parent %v, want a root in the caller's trace", s.SpanContext.TraceID(), s.Parent)
	}
}

func TestFaaSTrigger(t *testing.T) {
	for kind, want := range map[string]string{"api": "http", "url": "http", "async": "other", "kafka": "pubsub", "rabbitmq": "pubsub",
		"nats": "pubsub", "mqtt": "pubsub", "redis": "pubsub", "s3": "datasource", "timer": "timer"} {
		if got := FaaSTrigger(kind); got != want {
			t.Errorf("FaaSTrigger(%q) = %q, want %q", kind, got, want)
		}
	}
}

// TestObserverAsyncStaysInTrace: an async invocation is a root span in its
// submitter's trace, linked to the submitter's span.
func TestObserverAsyncStaysInTrace(t *testing.T) {
	tp, exp := newTestProvider(t)
	o := NewObserver(tp, "us-east-1", "000000000000")
	req := nimbus.Invocation{RequestID: "r", Trigger: nimbus.TriggerAsync, TraceLinks: []string{tp1}}
	_, end := o.Begin(context.Background(), &nimbus.Function{Name: "f"}, &req)
	end(&records.Record{Status: records.StatusSuccess})
	s := exp.GetSpans()[0]
	if s.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent.IsValid() || len(s.Links) != 1 {
		t.Fatalf("trace %s parent %v links %v, want a root in the submitter's trace, linked", s.SpanContext.TraceID(), s.Parent, s.Links)
	}
	if !strings.HasPrefix(req.TraceID, "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;") {
		t.Fatalf("TraceID %q, want the submitter's Root", req.TraceID)
	}
}
