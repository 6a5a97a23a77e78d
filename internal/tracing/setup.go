// Package tracing traces invocations with OpenTelemetry: the Provider
// (an OTLP exporter over HTTP or gRPC, configured by the standard OTEL_*
// environment variables or --otlp-endpoint, off unless one names an
// endpoint), the Observer that starts each invocation's span, and the
// propagation of span contexts in and out: W3C traceparent and
// X-Amzn-Trace-Id (xray.go), both ways. docs/observability.md.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/nimbus-serverless/nimbus/internal/observe"
	"github.com/nimbus-serverless/nimbus/internal/version"
)

// scope is the instrumentation scope of every Nimbus span.
const scope = "github.com/nimbus-serverless/nimbus"

// Protocols of the OTLP exporter (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// Config configures a Provider.
type Config struct {
	// Endpoint is --otlp-endpoint: the collector's base URL
	// (http://host:4318 for http/protobuf, http://host:4317 for grpc). It
	// turns tracing on and wins over OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT.
	Endpoint string
	// NodeID and Version go into the resource (nimbus.node.id,
	// service.version; Version defaults to internal/version).
	NodeID  string
	Version string
	// Exporter, when set, replaces the OTLP exporter and turns tracing on
	// (tests: tracetest.NewInMemoryExporter).
	Exporter sdktrace.SpanExporter
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// Logger gets the SDK's errors (a collector that cannot be reached).
	Logger *slog.Logger
}

// Provider is the node's tracer provider: the SDK's with a batch span
// processor when tracing is on, the no-op one when it is off.
type Provider struct {
	sdk *sdktrace.TracerProvider // nil when off
}

// ValidateEndpoint checks an --otlp-endpoint value: an http or https URL
// with a host.
func ValidateEndpoint(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("want an http:// or https:// URL with a host, like http://127.0.0.1:4318, not %q", v)
	}
	return nil
}

// New returns the node's Provider. Tracing is on when cfg.Endpoint,
// cfg.Exporter, OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, unless OTEL_SDK_DISABLED=true
// or OTEL_TRACES_EXPORTER=none. Errors name the bad setting (an unknown
// protocol or sampler, a bad endpoint URL).
func New(ctx context.Context, cfg Config) (*Provider, error) {
	env := cfg.Getenv
	if env == nil {
		env = os.Getenv
	}
	if cfg.Endpoint != "" {
		if err := ValidateEndpoint(cfg.Endpoint); err != nil {
			return nil, fmt.Errorf("--otlp-endpoint: %w", err)
		}
	}
	if !enabled(cfg, env) {
		return &Provider{}, nil
	}
	sampler, err := samplerFrom(env)
	if err != nil {
		return nil, err
	}
	exp := cfg.Exporter
	if exp == nil {
		if exp, err = newExporter(ctx, cfg.Endpoint, env); err != nil {
			return nil, err
		}
	}
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Logger != nil {
		log := cfg.Logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler), sdktrace.WithIDGenerator(idGenerator{}))
	return &Provider{sdk: tp}, nil
}

// enabled applies the switches: an endpoint turns tracing on, the SDK's
// own off switches win.
func enabled(cfg Config, env func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(env("OTEL_SDK_DISABLED")), "true") ||
		strings.EqualFold(strings.TrimSpace(env("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return cfg.Exporter != nil || cfg.Endpoint != "" ||
		env("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// protocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
// OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.
func protocol(env func(string) string) (string, error) {
	name, p := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", strings.TrimSpace(env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if p == "" {
		name, p = "OTEL_EXPORTER_OTLP_PROTOCOL", strings.TrimSpace(env("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	switch p {
	case "", ProtocolHTTP:
		return ProtocolHTTP, nil
	case ProtocolGRPC:
		return ProtocolGRPC, nil
	}
	return "", fmt.Errorf("%s: unsupported protocol %q (want %s or %s)", name, p, ProtocolHTTP, ProtocolGRPC)
}

// newExporter makes the OTLP exporter; the exporters read the rest of
// their OTEL_EXPORTER_OTLP_* settings (headers, TLS, timeout, compression)
// themselves. endpoint (the flag) is a base URL, like
// OTEL_EXPORTER_OTLP_ENDPOINT: over HTTP, /v1/traces is added when it has
// no path.
func newExporter(ctx context.Context, endpoint string, env func(string) string) (sdktrace.SpanExporter, error) {
	proto, err := protocol(env)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	if proto == ProtocolGRPC {
		var opts []otlptracegrpc.Option
		if endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	} else {
		var opts []otlptracehttp.Option
		if endpoint != "" {
			u, _ := url.Parse(endpoint) // validated
			if u.Path == "" || u.Path == "/" {
				u.Path = "/v1/traces"
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	return exp, nil
}

// newResource describes the node: service.name "nimbus" unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise, the
// version and the node id.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	v := cfg.Version
	if v == "" {
		v = version.String()
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", "nimbus"), attribute.String("service.version", v)}
	if cfg.NodeID != "" {
		attrs = append(attrs, attribute.String("nimbus.node.id", cfg.NodeID), attribute.String("service.instance.id", cfg.NodeID))
	}
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	return res, nil
}

// samplerFrom reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG as the
// SDK does (which only logs a bad value), failing on a bad one; the
// default is parentbased_always_on.
func samplerFrom(env func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(env("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(env("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1), nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: want a ratio from 0 to 1, not %q", arg)
		}
		return sdktrace.TraceIDRatioBased(r), nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		return ratio()
	case "parentbased_traceidratio":
		s, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(s), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER: unsupported sampler %q", name)
}

// Enabled reports whether spans are recorded and exported.
func (p *Provider) Enabled() bool { return p.sdk != nil }

// TracerProvider is what the engine and the Observer start spans with:
// the no-op provider when tracing is off.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p.sdk == nil {
		return noop.NewTracerProvider()
	}
	return p.sdk
}

// Observer returns the invocations' Observer, nil when tracing is off (so
// that the invoke path does nothing for it).
func (p *Provider) Observer(region, account string) observe.Observer {
	if p.sdk == nil {
		return nil
	}
	return NewObserver(p.sdk, region, account)
}

// Close is Shutdown (the node closes its parts with Close).
func (p *Provider) Close(ctx context.Context) error { return p.Shutdown(ctx) }

// Shutdown exports the spans still buffered and stops the exporter, within
// ctx. It is a no-op when tracing is off.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	if err := p.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}
