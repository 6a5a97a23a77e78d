package tracing

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/observe"
	"github.com/nimbus-serverless/nimbus/internal/records"
)

// Attribute keys of the invocation's span (OpenTelemetry's FaaS semantic
// conventions, and Nimbus's own).
const (
	AttrTrigger      = attribute.Key("faas.trigger")
	AttrInvocationID = attribute.Key("faas.invocation_id")
	AttrName         = attribute.Key("faas.name")
	AttrVersion      = attribute.Key("faas.version")
	AttrMaxMemory    = attribute.Key("faas.max_memory")
	AttrColdStart    = attribute.Key("faas.coldstart")
	AttrResourceID   = attribute.Key("cloud.resource_id")
	AttrRegion       = attribute.Key("cloud.region")
	AttrAccount      = attribute.Key("cloud.account.id")
	AttrErrorType    = attribute.Key("error.type")
	AttrNimbusKind   = attribute.Key("nimbus.trigger")
	AttrInstanceID   = attribute.Key("nimbus.instance_id")
	AttrTaskID       = attribute.Key("nimbus.task_id")
	AttrStatus       = attribute.Key("nimbus.status")
)

// FaaSTrigger maps an invocation's trigger kind to OpenTelemetry's
// faas.trigger value.
func FaaSTrigger(kind string) string {
	switch kind {
	case nimbus.TriggerAPI, nimbus.TriggerURL, "":
		return "http"
	case "kafka", "rabbitmq", "nats", "mqtt", "redis":
		return "pubsub"
	case "s3":
		return "datasource"
	case "timer":
		return "timer"
	}
	return "other" // async, and anything new
}

// spanKind is Server for a caller that waits (the Invoke API, a function
// URL), Consumer for an invocation taken from a queue.
func spanKind(kind string) trace.SpanKind {
	if kind == nimbus.TriggerAPI || kind == nimbus.TriggerURL || kind == "" {
		return trace.SpanKindServer
	}
	return trace.SpanKindConsumer
}

// Observer starts the span of each invocation (an observe.Observer). The
// span is named after the function (the FaaS conventions), is a child of
// the caller's span context in ctx (Extract), and links to each span
// context in the invocation's TraceLinks (an async submitter, the
// messages of a trigger's batch). Begin sets the invocation's TraceID to
// the span's X-Amzn-Trace-Id form, which the function gets as
// _X_AMZN_TRACE_ID.
type Observer struct {
	tracer          trace.Tracer
	region, account string
	fns             sync.Map // function name -> *fnAttrs
}

// fnAttrs are the attributes of a function's spans that only change with
// its configuration, made once per function (and memory size).
type fnAttrs struct {
	memoryMB int
	kvs      []attribute.KeyValue
}

// attrsOf returns fn's fixed attributes.
func (o *Observer) attrsOf(fn *nimbus.Function) []attribute.KeyValue {
	key := fn.Name + ":" + fn.Qualifier()
	if a, ok := o.fns.Load(key); ok && a.(*fnAttrs).memoryMB == fn.MemoryMB {
		return a.(*fnAttrs).kvs
	}
	a := &fnAttrs{memoryMB: fn.MemoryMB, kvs: []attribute.KeyValue{
		AttrName.String(fn.Name),
		AttrVersion.String(fn.Qualifier()),
		AttrMaxMemory.Int64(int64(fn.MemoryMB) << 20),
		AttrResourceID.String("arn:aws:lambda:" + o.region + ":" + o.account + ":function:" + fn.Name),
		AttrRegion.String(o.region),
		AttrAccount.String(o.account),
	}}
	o.fns.Store(key, a)
	return a.kvs
}

var _ observe.Observer = (*Observer)(nil)

// NewObserver returns an Observer that starts its spans with tp; region
// and account make the functions' ARNs (cloud.resource_id).
func NewObserver(tp trace.TracerProvider, region, account string) *Observer {
	return &Observer{tracer: tp.Tracer(scope), region: region, account: account}
}

// Begin implements observe.Observer.
func (o *Observer) Begin(ctx context.Context, fn *nimbus.Function, req *nimbus.Invocation) (context.Context, func(*records.Record)) {
	perCall := [...]attribute.KeyValue{
		AttrTrigger.String(FaaSTrigger(req.Trigger)),
		AttrNimbusKind.String(req.Trigger),
		AttrInvocationID.String(req.RequestID),
		AttrTaskID.String(req.TaskID),
	}
	attrs := perCall[:3]
	if req.TaskID != "" {
		attrs = perCall[:]
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(spanKind(req.Trigger)), trace.WithAttributes(attrs...),
		trace.WithAttributes(o.attrsOf(fn)...)}
	if links := linksOf(req.TraceLinks); len(links) > 0 {
		opts = append(opts, trace.WithLinks(links...))
		if req.Trigger == nimbus.TriggerAsync && len(links) == 1 && !trace.SpanContextFromContext(ctx).IsValid() {
			// An async invocation stays in its submitter's trace (the
			// X-Ray Root the function sees is the submitter's, as on
			// Lambda), as a root span linked to the submitter.
			ctx = context.WithValue(ctx, rootKey{}, links[0].SpanContext.TraceID())
		}
	}
	ctx, span := o.tracer.Start(ctx, fn.Name, opts...)
	if sc := span.SpanContext(); sc.IsValid() {
		req.TraceID = XRay(sc)
	}
	return ctx, func(r *records.Record) { end(span, r) }
}

// end finishes an invocation's span with what its record says.
func end(span trace.Span, r *records.Record) {
	kvs := [...]attribute.KeyValue{AttrColdStart.Bool(r.ColdStart), AttrStatus.String(r.Status),
		AttrInstanceID.String(r.InstanceID), AttrErrorType.String(r.ErrorType)}
	n := 2
	if r.InstanceID != "" {
		n = 3
	}
	if r.Failed() {
		kvs[n] = kvs[3]
		n++
		span.SetStatus(codes.Error, r.ErrorType)
	}
	span.SetAttributes(kvs[:n]...)
	span.End()
}

// linksOf parses the span contexts an invocation links to; malformed ones
// are left out.
func linksOf(vs []string) []trace.Link {
	var links []trace.Link
	for _, v := range vs {
		if sc, ok := ParseLink(v); ok {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	return links
}
