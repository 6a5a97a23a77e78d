package redis

import "testing"

func TestTraceParentFromFields(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := traceParent(map[string]any{"traceparent": tp, "data": "x"}); got != tp {
		t.Fatalf("traceParent = %q, want %q", got, tp)
	}
	if got := traceParent(map[string]any{"data": "x"}); got != "" {
		t.Fatalf("traceParent without the field = %q", got)
	}
}
