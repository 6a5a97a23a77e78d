package tracing

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/nimbus-serverless/nimbus/internal/tracing/tracingtest"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestNewSwitches(t *testing.T) {
	for _, tc := range []struct {
		name     string
		endpoint string
		env      map[string]string
		on       bool
	}{
		{name: "nothing set", on: false},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, on: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, on: true},
		{name: "flag", endpoint: "http://127.0.0.1:1", on: true},
		{name: "sdk disabled", endpoint: "http://127.0.0.1:1", env: map[string]string{"OTEL_SDK_DISABLED": "true"}, on: false},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"}, on: false},
		{name: "sampler only", env: map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}, on: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(t.Context(), Config{Endpoint: tc.endpoint, Getenv: envOf(tc.env)})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			if p.Enabled() != tc.on {
				t.Fatalf("Enabled = %v, want %v", p.Enabled(), tc.on)
			}
			if got := p.Observer("r", "a") != nil; got != tc.on {
				t.Fatalf("Observer set = %v, want %v", got, tc.on)
			}
			_, span := p.TracerProvider().Tracer("t").Start(t.Context(), "x")
			if span.IsRecording() != tc.on {
				t.Fatalf("span recording = %v, want %v", span.IsRecording(), tc.on)
			}
			span.End()
		})
	}
}

func TestNewErrors(t *testing.T) {
	on := "http://127.0.0.1:1"
	for _, tc := range []struct {
		name     string
		endpoint string
		env      map[string]string
		want     string
	}{
		{name: "bad protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": on, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
			want: `OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol "http/json"`},
		{name: "bad traces protocol", endpoint: on, env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: unsupported protocol "thrift"`},
		{name: "bad sampler", endpoint: on, env: map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"},
			want: `OTEL_TRACES_SAMPLER: unsupported sampler "sometimes"`},
		{name: "bad ratio", endpoint: on, env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
			want: `OTEL_TRACES_SAMPLER_ARG: want a ratio from 0 to 1, not "2"`},
		{name: "bad flag scheme", endpoint: "ftp://127.0.0.1:4318", want: "--otlp-endpoint: want an http:// or https:// URL"},
		{name: "bad flag host", endpoint: "http://", want: "--otlp-endpoint: want an http:// or https:// URL"},
		{name: "bad flag url", endpoint: "127.0.0.1:4318", want: "--otlp-endpoint: want an http:// or https:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(t.Context(), Config{Endpoint: tc.endpoint, Getenv: envOf(tc.env)})
			if err == nil {
				p.Shutdown(context.Background())
				t.Fatalf("New: no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("New: %q, want one line containing %q", err, tc.want)
			}
		})
	}
	// A protocol that is fine is not an error.
	p, err := New(t.Context(), Config{Endpoint: on, Getenv: envOf(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"})})
	if err != nil {
		t.Fatal(err)
	}
	p.Shutdown(context.Background())
}

// TestExportHTTP sends a span through the real OTLP/HTTP exporter to a
// receiver named by the flag; Shutdown flushes it.
func TestExportHTTP(t *testing.T) {
	rcv := tracingtest.NewReceiver(t)
	p, err := New(t.Context(), Config{Endpoint: rcv.URL, NodeID: "node-1", Version: "1.2.3",
		Getenv: envOf(map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"})})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("t").Start(t.Context(), "hello")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Spans()
	if len(spans) != 1 || spans[0].Name != "hello" {
		t.Fatalf("received %+v, want one span hello", spans)
	}
	res := spans[0].Resource
	for k, want := range map[string]string{"service.name": "nimbus", "service.version": "1.2.3", "nimbus.node.id": "node-1"} {
		if res[k] != want {
			t.Errorf("resource %s = %q, want %q", k, res[k], want)
		}
	}
}

// TestServiceNameFromEnv: OTEL_SERVICE_NAME (read by the SDK from the
// process environment) wins over the default.
func TestServiceNameFromEnv(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "edge-nimbus")
	rcv := tracingtest.NewReceiver(t)
	p, err := New(t.Context(), Config{Endpoint: rcv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("t").Start(t.Context(), "hello")
	span.End()
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := rcv.Spans(); len(s) != 1 || s[0].Resource["service.name"] != "edge-nimbus" {
		t.Fatalf("received %+v, want service.name edge-nimbus", s)
	}
}

type grpcReceiver struct {
	coltrace.UnimplementedTraceServiceServer
	spans atomic.Int64
}

func (g *grpcReceiver) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			g.spans.Add(int64(len(ss.GetSpans())))
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// TestExportGRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc sends to a gRPC
// collector.
func TestExportGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	g := &grpcReceiver{}
	coltrace.RegisterTraceServiceServer(srv, g)
	go srv.Serve(ln)
	defer srv.Stop()
	p, err := New(t.Context(), Config{Endpoint: "http://" + ln.Addr().String(), Getenv: envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"})})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, span := p.TracerProvider().Tracer("t").Start(t.Context(), "hello")
		span.End()
	}
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := g.spans.Load(); got != 3 {
		t.Fatalf("gRPC collector got %d spans, want 3", got)
	}
}
