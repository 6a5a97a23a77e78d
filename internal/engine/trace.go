package engine

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nimbus-serverless/nimbus"
)

// The engine's spans, children of the invocation's span (internal/tracing
// starts it, through observe.Invoker):
//
//	<function>            the invocation (tracing.Observer)
//	├── queue             waiting for an instance (pool.acquire); only when
//	│                     the request waited (or was refused): not on a warm hit
//	├── cold start        an instance started for this request
//	│   ├── sandbox start Sandbox.Start
//	│   └── runtime init  until the runtime's first /next (or $PORT accepts)
//	└── run               the instance runs the request
//
// An instance starts in a goroutine of its own (pool.start), for whichever
// request is waiting when it is ready, not necessarily the one whose
// arrival started it. So the start is timed as it happens (boot) and
// recorded, with those times, as the "cold start" of the request that
// takes the new instance first: the one whose REPORT bills the Init
// Duration (Report.ColdStart). A failed start is recorded, with its error,
// by each request it fails. "cold start" overlaps "queue" in time: the
// request waited while the instance started.
//
// Spans are made only under a recording span, so with tracing off (no span
// in ctx, or a no-op one) the engine allocates nothing for them.

// tracerName is the instrumentation scope of the engine's spans.
const tracerName = "github.com/nimbus-serverless/nimbus/internal/engine"

// boot is when an instance's start went through its phases.
type boot struct {
	began          time.Time // startInstance was called
	sandboxStarted time.Time // Sandbox.Start began
	sandboxReady   time.Time // Sandbox.Start returned
	ready          time.Time // the runtime is ready (or failed)
}

// functionInit is the function's init, its Init Duration (reported and
// billed, as Lambda's): from its sandbox's start, its process running,
// until its runtime was ready or failed. The node's part before it (its
// code fetched, its sandbox made: milliseconds, but seconds on a host
// short of CPU) is not the function's.
func (b boot) functionInit() time.Duration { return b.ready.Sub(b.sandboxReady) }

// span starts a child of the recording span in ctx; nil when there is none.
func (e *Engine) span(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return e.tracer.Start(ctx, name, append(opts, trace.WithSpanKind(trace.SpanKindInternal))...)
}

// endSpan ends s (nil: nothing), marking a function error.
func endSpan(s trace.Span, fe *nimbus.FunctionError, err error) {
	if s == nil {
		return
	}
	switch {
	case fe != nil:
		s.SetAttributes(attribute.String("error.type", fe.Type))
		s.SetStatus(codes.Error, fe.Type)
	case err != nil:
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

// traceColdStart records an instance's start (b) as the cold start of the
// request in ctx; fe is the init error of a start that failed.
func (e *Engine) traceColdStart(ctx context.Context, b boot, instanceID string, fe *nimbus.FunctionError) {
	if b.began.IsZero() || !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	end := b.ready
	if end.IsZero() {
		end = time.Now()
	}
	ctx, cold := e.tracer.Start(ctx, "cold start", trace.WithTimestamp(b.began))
	if instanceID != "" {
		cold.SetAttributes(attribute.String("nimbus.instance_id", instanceID))
	}
	if !b.sandboxStarted.IsZero() {
		sbEnd := b.sandboxReady
		if sbEnd.IsZero() {
			sbEnd = end
		}
		_, sb := e.tracer.Start(ctx, "sandbox start", trace.WithTimestamp(b.sandboxStarted))
		sb.End(trace.WithTimestamp(sbEnd))
		if !b.sandboxReady.IsZero() {
			_, ri := e.tracer.Start(ctx, "runtime init", trace.WithTimestamp(b.sandboxReady))
			if fe != nil {
				ri.SetStatus(codes.Error, fe.Type)
			}
			ri.End(trace.WithTimestamp(end))
		}
	}
	if fe != nil {
		cold.SetAttributes(attribute.String("error.type", fe.Type))
		cold.SetStatus(codes.Error, fe.Type)
	}
	cold.End(trace.WithTimestamp(end))
}
