// Package trigger connects event sources to functions. A Source (one package
// per technology: trigger/kafka, trigger/rabbitmq, trigger/nats, trigger/mqtt,
// trigger/redis, trigger/timer) takes messages from its broker and hands them
// to a Sink in batches; the Sink turns a batch into CloudEvents, invokes the
// function, retries failures with back-off, sends what keeps failing to the
// trigger's failure destination and only then returns, so a source
// acknowledges a message only after its invocation succeeded or it was
// dead-lettered: a crash loses nothing.
package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"
)

// Message is one message taken from a source.
type Message struct {
	// ID is unique within the source (the CloudEvent's id), e.g.
	// "<partition>-<offset>" or the broker's message id.
	ID string
	// Source is the CloudEvent's source, e.g. "kafka://127.0.0.1:9092/orders".
	Source string
	// Type is the CloudEvent's type, e.g. "com.nimbus.kafka.message".
	Type string
	// Subject is the CloudEvent's subject (a topic, routing key or object key).
	Subject string
	Time    time.Time
	// Key orders delivery: messages with the same non-empty key (a
	// partition, a message key) are delivered in the order taken.
	Key string
	// DataContentType describes Data ("application/json" when it is JSON;
	// other data is carried base64-encoded as data_base64).
	DataContentType string
	Data            []byte
	// Extensions are extra CloudEvents attributes (lowercase alphanumeric
	// names), e.g. {"partition": 3, "offset": 1234}.
	Extensions map[string]any
	// Raw makes Data the whole event the function receives, as it is (a
	// source that speaks another platform's event format, e.g. a timer
	// in Function Compute's), rather than the data of a CloudEvent. A
	// batch of several messages is still a JSON array of them.
	Raw bool
	// TraceParent is the span context that came with the message, if any:
	// its W3C traceparent header (or its X-Amzn-Trace-Id). The
	// invocation's span links to the span context of each message of its
	// batch (nimbus.Invocation.TraceLinks).
	TraceParent string
}

// Sink delivers batches to a trigger's function.
type Sink interface {
	// Deliver returns nil once every message of the batch has a final
	// outcome: it succeeded, or it failed past the retry limit and was sent
	// to the failure destination. Then the source acknowledges (commits)
	// the whole batch. It returns an error when it could not finish (ctx
	// ended, the node is shutting down, the failure destination is down):
	// the source must not acknowledge, so the messages are delivered again.
	// Deliver blocks while the function is saturated: that is the source's
	// signal to stop pulling.
	Deliver(ctx context.Context, batch []Message) error
}

// Options are the settings every message source honours.
type Options struct {
	// BatchSize is the most messages per batch (>= 1).
	BatchSize int
	// BatchWindow is how long to wait for a batch to fill (0: deliver what
	// is there at once).
	BatchWindow time.Duration
	// Concurrency is the most batches in flight at once; batches of one key
	// or partition are never in flight together.
	Concurrency int
	// Group names the consumer group / durable / queue the nodes of one
	// deployment share for this trigger, so each message goes to one node.
	Group string
	// Status is where the source reports its state (Connected, Error) and
	// its backlog (Lag). The Sink counts delivered and failed messages
	// itself; counts a source adds here are not shown.
	Status *Status
	Logger *slog.Logger
}

// Source takes messages from one broker for one trigger.
type Source interface {
	// Run consumes until ctx ends, reconnecting after broker restarts and
	// lost connections (reporting them in opts.Status), and returns nil
	// then. It returns an error only for a configuration the broker refuses
	// for good.
	Run(ctx context.Context, sink Sink, opts Options) error
}

// Factory decodes and validates a trigger type's Config and returns its
// Source. Errors are user errors (nimbus.Invalidf) naming the bad field.
type Factory func(config json.RawMessage) (Source, error)

// DeadLetterer is implemented by a Source that can keep messages in a
// dead-letter queue or topic of its own broker (when its Config names one).
// The Sink uses it for messages that failed past the retry limit when the
// trigger names no FailureDestination.
type DeadLetterer interface {
	// DeadLetter stores msgs, as taken from the source, and returns once
	// the broker confirmed them. Errors: ErrNoDeadLetter (wrapped) when the
	// Config names no dead-letter queue.
	DeadLetter(ctx context.Context, msgs []Message) error
}

// ErrNoDeadLetter is what DeadLetter returns when the source has no
// dead-letter queue configured.
var ErrNoDeadLetter = errors.New("no dead-letter queue configured")

// Forgetter is implemented by a Source that leaves state of its own on the
// broker (a durable consumer, a consumer group, a session). The Manager
// calls Forget, on every node, once a trigger is deleted (not when it is
// disabled or changed, which keep their position) and its Source stopped,
// to remove that state. It must be idempotent (another node may have
// removed the state already: that is success) and must not remove what the
// user named in the Config and so owns (their own group or queue).
type Forgetter interface {
	Forget(ctx context.Context, opts Options) error
}
