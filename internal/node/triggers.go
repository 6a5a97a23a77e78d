package node

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/destination"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/funcurl"
	"github.com/nimbus-serverless/nimbus/internal/trigger/kafka"
	"github.com/nimbus-serverless/nimbus/internal/trigger/mqtt"
	natstrigger "github.com/nimbus-serverless/nimbus/internal/trigger/nats"
	"github.com/nimbus-serverless/nimbus/internal/trigger/rabbitmq"
	"github.com/nimbus-serverless/nimbus/internal/trigger/redis"
	s3trigger "github.com/nimbus-serverless/nimbus/internal/trigger/s3"
	"github.com/nimbus-serverless/nimbus/internal/trigger/timer"
)

// triggerParts are the node's trigger manager, what validates triggers,
// and the receiver of object-storage notifications.
type triggerParts struct {
	manager *trigger.Manager
	types   registry.TriggerTypes
	s3      *s3trigger.Receiver
}

// triggerFactories is every trigger type this build runs whose factory
// needs only the config. A function URL (http) has no Source: its requests
// arrive at the API.
func triggerFactories() map[string]trigger.Factory {
	return map[string]trigger.Factory{
		nimbus.TriggerHTTP:     funcurl.Factory,
		nimbus.TriggerKafka:    kafka.New,
		nimbus.TriggerRabbitMQ: rabbitmq.New,
		nimbus.TriggerNATS:     natstrigger.New,
		nimbus.TriggerMQTT:     mqtt.New,
		nimbus.TriggerRedis:    redis.New,
	}
}

// namedFactories are the types whose Sources are made per trigger: timers
// (tick claims in the shared store) and object storage (routes in the
// node's receiver).
func (n *Node) namedFactories(ctx context.Context) (map[string]trigger.NamedFactory, error) {
	// Tick claims are needed only around their tick; old ones expire.
	ticks, err := n.store.KVWithTTL(ctx, timer.TickBucket, 48*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("open timer ticks bucket: %w", err)
	}
	timers := timer.New(timer.Deps{KV: ticks, Logger: n.log})
	n.triggers.s3 = s3trigger.NewReceiver(n.log)
	n.triggers.s3.RequireSecret = n.cfg.Auth != AuthNone
	return map[string]trigger.NamedFactory{
		nimbus.TriggerTimer: timers.Factory,
		nimbus.TriggerS3:    n.triggers.s3.Factory,
	}, nil
}

// openTriggers starts the triggers of every function (after the engine and
// the Async Service are open), and keeps them in line with the registry.
func (n *Node) openTriggers(ctx context.Context) error {
	factories := triggerFactories()
	named, err := n.namedFactories(ctx)
	if err != nil {
		return err
	}
	validators := make(map[string]trigger.Factory, len(factories)+len(named))
	for k, f := range factories {
		validators[k] = f
	}
	for k, nf := range named {
		validators[k] = nf.Validator()
	}
	n.triggers.types = registry.TriggerTypes{
		Factories: validators,
		Destination: func(dest string) error {
			_, err := destination.Parse(dest, n.cfg.Region, n.cfg.Account)
			return err
		},
		Prepare: prepareTrigger,
	}
	counts, err := n.store.KV(ctx, trigger.CountsBucket)
	if err != nil {
		return fmt.Errorf("open trigger counts bucket: %w", err)
	}
	m := trigger.NewManager(trigger.ManagerConfig{
		Functions: n.registry, Invoker: n.invoker, Failures: n.triggerFailures(),
		Types: factories, Named: named, Logger: n.log, Counts: trigger.NewCountStore(counts),
		Metrics: n.metrics.m.Triggers(),
	})
	n.triggers.manager = m
	n.registry.OnChange(m.Changed)
	return m.Open(ctx)
}

// prepareTrigger checks what depends on the function and completes
// configs: a function URL's streaming mode needs an HTTP function, and a
// KEY URL gets a generated key when it has none.
func prepareTrigger(fn *nimbus.Function, t *nimbus.Trigger) error {
	if t.Type != nimbus.TriggerHTTP {
		return nil
	}
	c, err := funcurl.ParseConfig(t.Config)
	if err != nil {
		return err
	}
	if err := c.ValidateFor(fn); err != nil {
		return err
	}
	t.Config = c.WithKey().Encode()
	return nil
}

// triggerAPI is what the API uses to manage triggers.
func (n *Node) triggerAPI() api.TriggerService {
	if n.triggers.manager == nil {
		return nil
	}
	return triggerService{parts: &n.triggers}
}

// s3API receives object-storage notifications (nil without triggers).
func (n *Node) s3API() api.S3Receiver {
	if n.triggers.s3 == nil {
		return nil
	}
	return n.triggers.s3
}

// closeTriggers stops every trigger's source; messages in flight are not
// acknowledged, so they are delivered again.
func (n *Node) closeTriggers(ctx context.Context) {
	if n.triggers.manager != nil {
		if err := n.triggers.manager.Close(ctx); err != nil {
			n.log.Warn("close triggers", nimbus.LogErr, err)
		}
	}
}

// Triggers is the node's trigger manager (for tests and push-type
// triggers).
func (n *Node) Triggers() *trigger.Manager { return n.triggers.manager }

// triggerService is api.TriggerService over the node's parts.
type triggerService struct{ parts *triggerParts }

func (s triggerService) Types() registry.TriggerTypes { return s.parts.types }

func (s triggerService) Status(function string, t *nimbus.Trigger) trigger.StatusView {
	return s.parts.manager.Status(function, t)
}

func (s triggerService) Count(function, trigger string, delivered bool) {
	s.parts.manager.Count(function, trigger, delivered)
}

// triggerFailures sends messages that failed for good to the destination a
// trigger names: another function (through the Async Service), a webhook,
// or a NATS subject on the store's server.
func (n *Node) triggerFailures() trigger.FailureSender {
	return failureSender{s: n.destinationSender(), arn: n.qualifiedARN}
}

// failureSender sends a trigger.Failure as Lambda's destination record:
// requestPayload is the CloudEvent the function was given, and the
// function's ARN is qualified by the trigger's version or alias.
type failureSender struct {
	s   *destination.Sender
	arn func(function, qualifier string) string
}

// conditionEventTooLarge is the condition of a message that went to the
// failure destination without an attempt, being over the payload limit.
const conditionEventTooLarge = "EventTooLarge"

func (f failureSender) Send(ctx context.Context, dest string, fl trigger.Failure) error {
	cond := destination.ConditionRetriesExhausted
	if fl.Attempts == 0 {
		cond = conditionEventTooLarge
	}
	rec := &destination.Record{
		Version:   destination.RecordVersion,
		Timestamp: time.Now().UTC(),
		RequestContext: destination.RequestContext{
			// Stable across redeliveries, so a NATS stream drops duplicates.
			RequestID:   fl.Function + "/" + fl.Trigger + "/" + fl.Message.ID,
			FunctionARN: f.arn(fl.Function, fl.Qualifier), Condition: cond, ApproximateInvokeCount: fl.Attempts, Reason: fl.Reason,
		},
		RequestPayload:  fl.Event,
		ResponsePayload: fl.Response,
	}
	if fl.Attempts > 0 && (fl.Executed != "" || fl.Qualifier == "") { // a version ran
		rec.ResponseContext = &destination.ResponseContext{StatusCode: 200, ExecutedVersion: cmp.Or(fl.Executed, nimbus.Latest), FunctionError: fl.FuncError}
	}
	return f.s.Send(ctx, dest, "", rec)
}
