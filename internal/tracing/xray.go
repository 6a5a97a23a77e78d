package tracing

import (
	"encoding/hex"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// XRay returns sc as an X-Amzn-Trace-Id value, the form Lambda gives a
// function in _X_AMZN_TRACE_ID:
// "Root=1-<first 8 hex digits of the trace id>-<last 24>;Parent=<span id>;Sampled=<0|1>".
// It returns "" for an invalid sc.
func XRay(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	var b [len("Root=1-") + 8 + 1 + 24 + len(";Parent=") + 16 + len(";Sampled=") + 1]byte
	n := copy(b[:], "Root=1-")
	hex.Encode(b[n:], tid[:4])
	n += 8
	b[n] = '-'
	n++
	hex.Encode(b[n:], tid[4:])
	n += 24
	n += copy(b[n:], ";Parent=")
	hex.Encode(b[n:], sid[:])
	n += 16
	n += copy(b[n:], ";Sampled=")
	b[n] = '0'
	if sc.IsSampled() {
		b[n] = '1'
	}
	return string(b[:])
}

// ParseXRay reads an X-Amzn-Trace-Id value: its Root (required) and
// Parent (optional: a header without one gives a span context with no span
// id, which is not valid as a parent; see Extract) and Sampled ("1" is
// sampled; absent or "?" is not). Other fields (Self, Lineage, custom keys)
// are ignored. ok is false when there is no well-formed Root or the
// Parent is malformed.
func ParseXRay(h string) (sc trace.SpanContext, ok bool) {
	var tid trace.TraceID
	var sid trace.SpanID
	var haveRoot, sampled bool
	for part := range strings.SplitSeq(h, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Root":
			t, ok := parseRoot(v)
			if !ok {
				return trace.SpanContext{}, false
			}
			tid, haveRoot = t, true
		case "Parent":
			if len(v) != 16 {
				return trace.SpanContext{}, false
			}
			if _, err := hex.Decode(sid[:], []byte(v)); err != nil {
				return trace.SpanContext{}, false
			}
		case "Sampled":
			sampled = v == "1"
		}
	}
	if !haveRoot {
		return trace.SpanContext{}, false
	}
	cfg := trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true}
	if sampled {
		cfg.TraceFlags = trace.FlagsSampled
	}
	return trace.NewSpanContext(cfg), true
}

// parseRoot reads "1-<8 hex>-<24 hex>" into a trace id.
func parseRoot(v string) (trace.TraceID, bool) {
	var tid trace.TraceID
	if len(v) != 2+8+1+24 || v[:2] != "1-" || v[10] != '-' {
		return tid, false
	}
	if _, err := hex.Decode(tid[:4], []byte(v[2:10])); err != nil {
		return tid, false
	}
	if _, err := hex.Decode(tid[4:], []byte(v[11:])); err != nil {
		return tid, false
	}
	return tid, tid.IsValid()
}
