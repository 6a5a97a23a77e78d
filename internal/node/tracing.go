package node

import (
	"context"

	"github.com/nimbus-serverless/nimbus/internal/observe"
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
	p, err := tracing.New(ctx, tracing.Config{Endpoint: n.cfg.OTLPEndpoint, NodeID: id, Logger: n.log})
	if err != nil {
		return err
	}
	n.tracing = p
	if p.Enabled() {
		n.log.Info("tracing on: spans go to the OTLP collector")
	}
	return nil
}

// invoker is what the API, the Async Service and the triggers invoke
// through: the engine, seen by the tracing Observer when tracing is on.
func (n *Node) invoker() *observe.Invoker {
	if n.inv == nil {
		n.inv = &observe.Invoker{Engine: n.engine}
		if ob := n.tracing.Observer(n.cfg.Region, n.cfg.Account); ob != nil {
			n.inv.Observers = append(n.inv.Observers, ob)
		}
	}
	return n.inv
}
