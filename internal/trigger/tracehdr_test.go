package trigger

import (
	"slices"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

func TestTraceHeaders(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const xr = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
	for _, tc := range []struct {
		name string
		hs   [][2]string
		want string
	}{
		{"none", [][2]string{{"content-type", "x"}}, ""},
		{"traceparent", [][2]string{{"Traceparent", tp}}, tp},
		{"xray", [][2]string{{"X-AMZN-TRACE-ID", xr}}, xr},
		{"traceparent wins after", [][2]string{{"x-amzn-trace-id", xr}, {"traceparent", tp}}, tp},
		{"traceparent wins before", [][2]string{{"traceparent", tp}, {"x-amzn-trace-id", xr}}, tp},
	} {
		var th TraceHeaders
		for _, h := range tc.hs {
			th.Add(h[0], h[1])
		}
		if got := th.Value(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestDeliverTraceLinks: the invocation of a batch carries the span
// context of each of its messages that had one.
func TestDeliverTraceLinks(t *testing.T) {
	f := newSinkFixture(nimbus.Trigger{BatchSize: 10})
	msgs := messages(3)
	msgs[0].TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	msgs[2].TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-01"
	if err := f.sink.Deliver(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	got := f.inv.requests()[0].TraceLinks
	if want := []string{msgs[0].TraceParent, msgs[2].TraceParent}; !slices.Equal(got, want) {
		t.Fatalf("TraceLinks = %q, want %q", got, want)
	}
}
