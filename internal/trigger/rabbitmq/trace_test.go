package rabbitmq

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestTraceParentFromHeaders(t *testing.T) {
	const xr = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
	for _, tc := range []struct {
		hs   amqp.Table
		want string
	}{
		{amqp.Table{"X-Amzn-Trace-Id": xr, "n": int32(1)}, xr},
		{amqp.Table{"traceparent": []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{amqp.Table{"traceparent": int32(3)}, ""},
		{nil, ""},
	} {
		if got := traceParent(tc.hs); got != tc.want {
			t.Errorf("traceParent(%v) = %q, want %q", tc.hs, got, tc.want)
		}
	}
}
