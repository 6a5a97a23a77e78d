package tracing

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func mustTraceID(t *testing.T, s string) trace.TraceID {
	t.Helper()
	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustSpanID(t *testing.T, s string) trace.SpanID {
	t.Helper()
	id, err := trace.SpanIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestXRayRoundTrip(t *testing.T) {
	for _, sampled := range []bool{true, false} {
		cfg := trace.SpanContextConfig{
			TraceID: mustTraceID(t, "5759e988bd862e3fe1be46a994272793"),
			SpanID:  mustSpanID(t, "53995c3f42cd8ad8"),
			Remote:  true,
		}
		want := "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
		if sampled {
			cfg.TraceFlags = trace.FlagsSampled
			want = strings.Replace(want, "Sampled=0", "Sampled=1", 1)
		}
		sc := trace.NewSpanContext(cfg)
		got := XRay(sc)
		if got != want {
			t.Fatalf("XRay = %q, want %q", got, want)
		}
		back, ok := ParseXRay(got)
		if !ok || !back.Equal(sc) {
			t.Fatalf("ParseXRay(%q) = %v %v, want %v", got, back, ok, sc)
		}
	}
	if got := XRay(trace.SpanContext{}); got != "" {
		t.Fatalf("XRay(invalid) = %q, want empty", got)
	}
}

func TestParseXRay(t *testing.T) {
	for _, tc := range []struct {
		in            string
		ok, valid     bool
		trace, parent string
		sampled       bool
	}{
		{in: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", ok: true, valid: true,
			trace: "5759e988bd862e3fe1be46a994272793", parent: "53995c3f42cd8ad8", sampled: true},
		// Order, spaces, Self and custom keys do not matter.
		{in: "Self=1-67891234-12456789abcdef012345678; Sampled=1 ;Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793;foo=bar", ok: true, valid: true,
			trace: "5759e988bd862e3fe1be46a994272793", parent: "53995c3f42cd8ad8", sampled: true},
		// A Root alone names a trace, not a span.
		{in: "Root=1-5759e988-bd862e3fe1be46a994272793", ok: true, trace: "5759e988bd862e3fe1be46a994272793"},
		{in: "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?", ok: true, trace: "5759e988bd862e3fe1be46a994272793"},
		{in: ""},
		{in: "Parent=53995c3f42cd8ad8"},
		{in: "Root=2-5759e988-bd862e3fe1be46a994272793"},
		{in: "Root=1-5759e98-bd862e3fe1be46a9942727931"},
		{in: "Root=1-5759e988-bd862e3fe1be46a99427279z"},
		{in: "Root=1-00000000-000000000000000000000000"},
		{in: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad"},
		{in: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8adx"},
	} {
		sc, ok := ParseXRay(tc.in)
		if ok != tc.ok {
			t.Errorf("ParseXRay(%q) ok = %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if sc.IsValid() != tc.valid || sc.TraceID().String() != tc.trace || sc.IsSampled() != tc.sampled || !sc.IsRemote() {
			t.Errorf("ParseXRay(%q) = %v (valid %v), want trace %s sampled %v valid %v", tc.in, sc, sc.IsValid(), tc.trace, tc.sampled, tc.valid)
		}
		if tc.parent != "" && sc.SpanID().String() != tc.parent {
			t.Errorf("ParseXRay(%q) parent = %s, want %s", tc.in, sc.SpanID(), tc.parent)
		}
	}
}

func FuzzParseXRay(f *testing.F) {
	f.Add("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	f.Add("Root=1-5759e988-bd862e3fe1be46a994272793")
	f.Fuzz(func(t *testing.T, s string) {
		sc, ok := ParseXRay(s)
		if !ok || !sc.IsValid() {
			return
		}
		// What parses with a parent converts back to a header that
		// parses to the same span context.
		back, ok := ParseXRay(XRay(sc))
		if !ok || !back.Equal(sc) {
			t.Fatalf("%q: round trip gave %v %v, want %v", s, back, ok, sc)
		}
	})
}

const (
	tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	xr1 = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
)

func TestExtract(t *testing.T) {
	for _, tc := range []struct {
		name      string
		h         http.Header
		trace     string
		span      string // "" with a trace: a root span in that trace
		unchanged bool
	}{
		{name: "traceparent", h: http.Header{"Traceparent": {tp1}}, trace: "4bf92f3577b34da6a3ce929d0e0e4736", span: "00f067aa0ba902b7"},
		{name: "traceparent wins", h: http.Header{"Traceparent": {tp1}, "X-Amzn-Trace-Id": {xr1}}, trace: "4bf92f3577b34da6a3ce929d0e0e4736", span: "00f067aa0ba902b7"},
		{name: "xray", h: http.Header{"X-Amzn-Trace-Id": {xr1}}, trace: "5759e988bd862e3fe1be46a994272793", span: "53995c3f42cd8ad8"},
		{name: "bad traceparent falls back", h: http.Header{"Traceparent": {"00-zz-00f067aa0ba902b7-01"}, "X-Amzn-Trace-Id": {xr1}}, trace: "5759e988bd862e3fe1be46a994272793", span: "53995c3f42cd8ad8"},
		{name: "xray root only", h: http.Header{"X-Amzn-Trace-Id": {"Root=1-5759e988-bd862e3fe1be46a994272793"}}, trace: "5759e988bd862e3fe1be46a994272793"},
		{name: "none", h: http.Header{}, unchanged: true},
		{name: "bad xray", h: http.Header{"X-Amzn-Trace-Id": {"Root=nonsense"}}, unchanged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			got := Extract(ctx, tc.h)
			if tc.unchanged {
				if got != ctx {
					t.Fatal("context changed without a usable header")
				}
				return
			}
			if tc.span == "" {
				tid, _ := idGenerator{}.NewIDs(got)
				if tid.String() != tc.trace {
					t.Fatalf("root-only trace id = %s, want %s", tid, tc.trace)
				}
				return
			}
			sc := trace.SpanContextFromContext(got)
			if sc.TraceID().String() != tc.trace || sc.SpanID().String() != tc.span || !sc.IsRemote() {
				t.Fatalf("extracted %v, want trace %s span %s", sc, tc.trace, tc.span)
			}
		})
	}
}

func TestInjectAndTraceParent(t *testing.T) {
	sc, ok := ParseLink(tp1)
	if !ok {
		t.Fatal("ParseLink(traceparent) failed")
	}
	if got := TraceParent(sc); got != tp1 {
		t.Fatalf("TraceParent = %q, want %q", got, tp1)
	}
	h := http.Header{}
	Inject(trace.ContextWithSpanContext(context.Background(), sc), h)
	if got := h.Get("traceparent"); got != tp1 {
		t.Fatalf("injected traceparent %q, want %q", got, tp1)
	}
	if got, want := h.Get("X-Amzn-Trace-Id"), "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"; got != want {
		t.Fatalf("injected X-Amzn-Trace-Id %q, want %q", got, want)
	}
	h = http.Header{}
	Inject(context.Background(), h)
	if len(h) != 0 {
		t.Fatalf("Inject without a span wrote %v", h)
	}
	if got := TraceParentOf(context.Background()); got != "" {
		t.Fatalf("TraceParentOf(empty) = %q", got)
	}
}

func TestParseLink(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		span string
	}{
		{tp1, true, "00f067aa0ba902b7"},
		{xr1, true, "53995c3f42cd8ad8"},
		{"Root=1-5759e988-bd862e3fe1be46a994272793", false, ""}, // no span to link to
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, ""},
		{"garbage", false, ""},
		{"", false, ""},
	} {
		sc, ok := ParseLink(tc.in)
		if ok != tc.ok || (ok && sc.SpanID().String() != tc.span) {
			t.Errorf("ParseLink(%q) = %v %v, want ok %v span %s", tc.in, sc, ok, tc.ok, tc.span)
		}
	}
}
