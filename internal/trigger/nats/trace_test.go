package nats

import (
	"testing"

	"github.com/nats-io/nats.go"
)

func TestTraceParentFromHeaders(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := traceParent(nats.Header{"Traceparent": {tp}, "X": {"y"}}); got != tp {
		t.Fatalf("traceParent = %q, want %q", got, tp)
	}
	if got := traceParent(nil); got != "" {
		t.Fatalf("traceParent(nil) = %q", got)
	}
}
