package node

import (
	"context"

	"github.com/nimbus-serverless/nimbus/internal/tracing"
)

// openTracing makes the node's tracer provider (internal/tracing): off
// unless --otlp-endpoint or the OTEL_* environment names a collector. It
// opens before the engine, which makes its spans with it.
func (n *Node) openTracing(ctx context.Context) error {
	id, err := nodeID(n.cfg.DataDir)
	if err != nil {
		return err
	}
	tc := tracing.Config{Endpoint: n.cfg.OTLPEndpoint, NodeID: id, Logger: n.log}
	if n.cfg.NoObservability {
		tc = tracing.Config{NodeID: id, Getenv: func(string) string { return "" }} // off, whatever OTEL_* says
	}
	p, err := tracing.New(ctx, tc)
	if err != nil {
		return err
	}
	n.tracing = p
	if p.Enabled() {
		n.log.Info("tracing on: spans go to the OTLP collector")
	}
	return nil
}
