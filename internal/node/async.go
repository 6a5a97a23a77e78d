package node

import (
	"context"
	"fmt"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/async"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// asyncParts is the node's Async Service.
type asyncParts struct {
	svc *async.Service
}

// openAsync opens the Async Service on the store's JetStream and lets it
// follow function changes.
func (n *Node) openAsync(ctx context.Context) error {
	ns, ok := n.store.(*natsstore.Store)
	if !ok {
		return fmt.Errorf("async: the store is not NATS JetStream")
	}
	svc, err := async.Open(ctx, async.Config{
		JS: ns.JetStream(), NC: ns.Conn(), Prefix: n.cfg.NATSPrefix,
		Functions: n.registry, Invoker: n.engine, Destinations: n.destinations(),
		MaxPayload: n.cfg.AsyncMaxPayload, Retention: n.cfg.AsyncRetention,
		Concurrency: n.cfg.AsyncConcurrency, AckWait: n.cfg.AsyncAckWait, RetryBase: n.cfg.AsyncRetryBase, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.async.svc = svc
	n.registry.OnChange(svc.Refresh)
	return nil
}

func (n *Node) asyncAPI() api.AsyncService {
	if n.async.svc == nil {
		return nil
	}
	return n.async.svc
}

// destinations sends async outcomes (nil until the destination package is
// wired).
func (n *Node) destinations() async.Destinations { return nil }

func (n *Node) closeAsync() {
	if n.async.svc != nil {
		n.async.svc.Close()
	}
}
