package node

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/destination"
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

// destinations sends async outcomes as Lambda's destination records to a
// function (as an async invoke), a webhook or a NATS subject.
func (n *Node) destinations() async.Destinations {
	return &destinations{n: n, sender: n.destinationSender()}
}

// destinationSender is the node's one destination.Sender, shared by the
// Async Service and the triggers' failure destinations.
func (n *Node) destinationSender() *destination.Sender {
	n.destOnce.Do(func() {
		ns, _ := n.store.(*natsstore.Store)
		n.dest = destination.New(destination.Config{
			NATS:     ns.Conn(),
			Reserved: []string{strings.ToLower(n.cfg.NATSPrefix) + "."},
			InvokeAsync: func(ctx context.Context, name string, payload []byte) error {
				fn, err := n.registry.Get(ctx, name)
				if err != nil {
					return err
				}
				_, _, err = n.async.svc.Submit(ctx, fn, async.SubmitRequest{Payload: payload})
				return err
			},
			Backoff: n.cfg.DestinationBackoff,
			Logger:  n.log.With("component", "destination"),
		})
	})
	return n.dest
}

type destinations struct {
	n      *Node
	sender *destination.Sender
}

// Send implements async.Destinations.
func (d *destinations) Send(ctx context.Context, dest, secret string, o async.Outcome) error {
	rec := &destination.Record{
		Version:   destination.RecordVersion,
		Timestamp: time.Now().UTC(),
		RequestContext: destination.RequestContext{
			RequestID:              o.Task,
			FunctionARN:            d.n.qualifiedARN(o.Function),
			Condition:              o.Condition,
			ApproximateInvokeCount: o.Attempts,
		},
		RequestPayload:  o.Payload,
		ResponsePayload: o.Response,
	}
	if o.Attempts > 0 {
		rec.ResponseContext = &destination.ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: o.FuncError}
	}
	if o.Condition != async.CondSuccess && !json.Valid(o.Response) {
		rec.RequestContext.Reason = string(o.Response)
	}
	return d.sender.Send(ctx, dest, secret, rec)
}

func (n *Node) closeAsync() {
	if n.async.svc != nil {
		n.async.svc.Close()
	}
}

// Async is the node's Async Service (for tests and benchmarks).
func (n *Node) Async() *async.Service { return n.async.svc }

// qualifiedARN is a function's $LATEST ARN, as destination records name it.
func (n *Node) qualifiedARN(name string) string {
	return fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s:$LATEST", n.cfg.Region, n.cfg.Account, name)
}
