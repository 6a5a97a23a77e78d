package api

import (
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

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

// TestTraceIDMade: a request without X-Amzn-Trace-Id gets an X-Ray-style
// root of the current time and 96 random bits; one with it keeps it.
func TestTraceIDMade(t *testing.T) {
	re := regexp.MustCompile(`^Root=1-([0-9a-f]{8})-[0-9a-f]{24};Sampled=0$`)
	r := httptest.NewRequest("POST", "/", nil)
	a, b := traceID(r), traceID(r)
	m := re.FindStringSubmatch(a)
	if m == nil || !re.MatchString(b) || a == b {
		t.Fatalf("trace ids %q and %q: want two different %s", a, b, re)
	}
	if sec, _ := strconv.ParseInt(m[1], 16, 64); time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Errorf("trace id %q: its time %s is not now", a, time.Unix(sec, 0))
	}
	r.Header.Set("X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
	if got := traceID(r); got != "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1" {
		t.Errorf("the caller's trace id became %q", got)
	}
}
