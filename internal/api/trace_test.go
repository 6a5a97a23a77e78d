package api

import (
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// TestTraceContextOfRequests: the caller's traceparent (else its
// X-Amzn-Trace-Id) is the invocation's parent, and what an async event
// keeps of its submitter.
func TestTraceContextOfRequests(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name, header, value string
		span, parent        string
	}{
		{"traceparent", "traceparent", tp, "00f067aa0ba902b7", tp},
		{"xray", "X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", "53995c3f42cd8ad8",
			"00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"},
		{"none", "", "", "0000000000000000", ""},
	} {
		r := httptest.NewRequest("POST", "/2015-03-31/functions/f/invocations", nil)
		if tc.header != "" {
			r.Header.Set(tc.header, tc.value)
		}
		if got := trace.SpanContextFromContext(traceContext(r)).SpanID().String(); got != tc.span {
			t.Errorf("%s: parent span %s, want %s", tc.name, got, tc.span)
		}
		if got := traceParent(r); got != tc.parent {
			t.Errorf("%s: traceParent %q, want %q", tc.name, got, tc.parent)
		}
	}
}
