package node

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/async"
	asyncnats "github.com/nimbus-serverless/nimbus/internal/async/nats"
	"github.com/nimbus-serverless/nimbus/internal/destination"
)

// asyncParts is the node's Async Service and the JetStream backend it
// stands on.
type asyncParts struct {
	backend   *asyncnats.Backend
	svc       *async.Service
	drainOnce sync.Once
}

// openAsync opens the Async Service on the store's JetStream and lets it
// follow function changes.
func (n *Node) openAsync(ctx context.Context) error {
	id, err := nodeID(n.cfg.DataDir)
	if err != nil {
		return err
	}
	b, err := asyncnats.Open(ctx, asyncnats.Config{
		JS: n.store.JetStream(), NC: n.store.Conn(), Prefix: n.cfg.NATSPrefix, Replicas: n.store.Replicas(),
		IndexDir: filepath.Join(n.cfg.DataDir, "async"), NodeID: id,
		Retention: n.cfg.AsyncRetention, ClaimTTL: n.cfg.AsyncAckWait, Health: n.store.Healthy, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.async.backend = b
	maxPayload := n.cfg.AsyncMaxPayload
	if limit := asyncnats.MaxEvent(n.store.Conn()); maxPayload > limit {
		if limit < 64<<10 {
			return fmt.Errorf("async: the NATS server's max_payload (%d bytes) is too small for async events; raise it to at least %d",
				n.store.Conn().MaxPayload(), int64(maxPayload)+n.store.Conn().MaxPayload()-int64(limit))
		}
		n.log.Warn("async: events are limited by the NATS server's max_payload; raise it to allow the configured size",
			"max_payload", n.store.Conn().MaxPayload(), "configured", maxPayload, "effective", limit)
		maxPayload = limit
	}
	svc, err := async.Open(ctx, async.Config{
		Backend: b, Functions: n.registry, Resolve: n.registry.Resolve, Invoker: n.invoker, Destinations: n.destinations(), Metrics: n.metrics.m.Async(),
		MaxPayload: maxPayload, Retention: n.cfg.AsyncRetention, Concurrency: n.cfg.AsyncConcurrency,
		RetryBase: n.cfg.AsyncRetryBase, Logger: n.log,
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
		n.dest = destination.New(destination.Config{
			NATS:     n.store.Conn(),
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
	if o.DeadLetter {
		return d.sender.SendDeadLetter(ctx, dest, secret, destination.DeadLetter{
			RequestID: o.Task, ErrorCode: o.Condition, ErrorMessage: string(o.Response), Payload: o.Payload,
		})
	}
	rec := &destination.Record{
		Version:   destination.RecordVersion,
		Timestamp: time.Now().UTC(),
		RequestContext: destination.RequestContext{
			RequestID:              o.Task,
			FunctionARN:            d.n.qualifiedARN(o.Function, o.Qualifier),
			Condition:              o.Condition,
			ApproximateInvokeCount: o.Attempts,
		},
		RequestPayload:  o.Payload,
		ResponsePayload: o.Response,
	}
	if o.Attempts > 0 {
		rec.ResponseContext = &destination.ResponseContext{StatusCode: 200, ExecutedVersion: cmp.Or(o.Executed, nimbus.Latest), FunctionError: o.FuncError}
	}
	if o.Condition != async.CondSuccess && !json.Valid(o.Response) {
		rec.RequestContext.Reason = string(o.Response)
	}
	return d.sender.Send(ctx, dest, secret, rec)
}

// drainAsync stops the Async Service (see async.Service.Close), letting the
// events running finish within ctx; closeAsync does it if Shutdown did not.
func (n *Node) drainAsync(ctx context.Context) {
	if n.async.svc != nil {
		n.async.drainOnce.Do(func() {
			if err := n.async.svc.Close(ctx); err != nil {
				n.log.Warn("close the Async Service", nimbus.LogErr, err)
			}
		})
	}
}

// closeAsync stops the Async Service, letting the events running finish
// within ctx, then its backend.
func (n *Node) closeAsync(ctx context.Context) {
	n.drainAsync(ctx)
	if n.async.backend != nil {
		// Its own few seconds, past the grace: it frees the claims held.
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := n.async.backend.Close(ctx); err != nil {
			n.log.Warn("close the async backend", nimbus.LogErr, err)
		}
	}
}

// Async is the node's Async Service (for tests and benchmarks).
func (n *Node) Async() *async.Service { return n.async.svc }

// qualifiedARN is a function's $LATEST ARN, as destination records name it.
func (n *Node) qualifiedARN(name, qualifier string) string {
	return fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s:%s", n.cfg.Region, n.cfg.Account, name, cmp.Or(qualifier, nimbus.Latest))
}
