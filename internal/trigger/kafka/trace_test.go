package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestTraceParentFromHeaders(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	hs := []kgo.RecordHeader{{Key: "a", Value: []byte("b")}, {Key: "traceparent", Value: []byte(tp)}}
	if got := traceParent(hs); got != tp {
		t.Fatalf("traceParent = %q, want %q", got, tp)
	}
	if got := traceParent(nil); got != "" {
		t.Fatalf("traceParent(nil) = %q", got)
	}
}
