package tracing

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Header names of the two propagation formats Nimbus reads and writes.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
	HeaderXRay        = "X-Amzn-Trace-Id"
)

var w3c propagation.TraceContext

// Extract returns ctx with the caller's span context from h: the W3C
// traceparent (and tracestate) if it has a valid one, else the
// X-Amzn-Trace-Id. An X-Amzn-Trace-Id with a Root but no Parent names a
// trace but no span: the invocation's span is then a root span in that
// trace (its trace id is the Root), which is what Lambda does with such a
// header. Without either header ctx is returned as it is (no allocation).
func Extract(ctx context.Context, h http.Header) context.Context {
	if tp := h.Get(HeaderTraceParent); tp != "" {
		if out := w3c.Extract(ctx, propagation.HeaderCarrier(h)); trace.SpanContextFromContext(out).IsRemote() {
			return out
		}
	}
	x := h.Get(HeaderXRay)
	if x == "" {
		return ctx
	}
	sc, ok := ParseXRay(x)
	switch {
	case !ok:
		return ctx
	case sc.IsValid():
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	default:
		return context.WithValue(ctx, rootKey{}, sc.TraceID())
	}
}

// Inject writes the span context of ctx to h as traceparent (and
// tracestate) and X-Amzn-Trace-Id. Nothing is written without a valid
// span context.
func Inject(ctx context.Context, h http.Header) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	h.Set(HeaderTraceParent, TraceParent(sc))
	if ts := sc.TraceState().String(); ts != "" {
		h.Set(HeaderTraceState, ts)
	}
	h.Set(HeaderXRay, XRay(sc))
}

// TraceParent returns sc as a W3C traceparent value ("" for an invalid sc).
func TraceParent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	var b [2 + 1 + 32 + 1 + 16 + 1 + 2]byte
	copy(b[:], "00-")
	hex.Encode(b[3:], tid[:])
	b[35] = '-'
	hex.Encode(b[36:], sid[:])
	b[52] = '-'
	hex.Encode(b[53:], []byte{byte(sc.TraceFlags())})
	return string(b[:])
}

// TraceParentOf returns the traceparent of the span context in ctx (the
// caller's, or the current span's), "" when there is none: what an async
// submit stores with its event.
func TraceParentOf(ctx context.Context) string {
	return TraceParent(trace.SpanContextFromContext(ctx))
}

// ParseLink reads a span context carried with a message or an event:
// a W3C traceparent or an X-Amzn-Trace-Id with a Parent.
func ParseLink(v string) (trace.SpanContext, bool) {
	v = strings.TrimSpace(v)
	if strings.Contains(v, "Root=") {
		sc, ok := ParseXRay(v)
		return sc, ok && sc.IsValid()
	}
	sc := trace.SpanContextFromContext(w3c.Extract(context.Background(), propagation.MapCarrier{HeaderTraceParent: v}))
	return sc, sc.IsValid()
}

// rootKey holds, in a context, the trace id of an X-Amzn-Trace-Id that
// named no parent span.
type rootKey struct{}

// idGenerator is the SDK's random generator, except that a root span
// started under an X-Amzn-Trace-Id Root without a Parent takes that
// Root as its trace id.
type idGenerator struct{}

var _ sdktrace.IDGenerator = idGenerator{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, ok := ctx.Value(rootKey{}).(trace.TraceID)
	if !ok {
		for !tid.IsValid() {
			putUint64(tid[:8], rand.Uint64())
			putUint64(tid[8:], rand.Uint64())
		}
	}
	return tid, newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		putUint64(sid[:], rand.Uint64())
	}
	return sid
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}
