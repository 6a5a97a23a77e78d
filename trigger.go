package nimbus

import (
	"encoding/json"
	"time"
)

// Trigger types.
const (
	TriggerHTTP     = "http"
	TriggerTimer    = "timer"
	TriggerKafka    = "kafka"
	TriggerRabbitMQ = "rabbitmq"
	TriggerNATS     = "nats"
	TriggerMQTT     = "mqtt"
	TriggerRedis    = "redis"
	TriggerS3       = "s3"
)

// Trigger connects an event source to a function. It is stored with its
// function (Function.Triggers) and goes away with it.
type Trigger struct {
	// ID identifies the trigger across functions (a UUID set at creation;
	// the Lambda dialect's event source mapping UUID).
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	Type    string `json:"type"`
	Enabled bool   `json:"enabled"`
	// Description is the owner's note (at most 256 characters).
	Description string `json:"description,omitempty"`
	// Qualifier is the version or alias the trigger invokes ("": the
	// function's $LATEST). An alias is resolved at each invocation, by its
	// weights, so moving the alias moves the trigger's traffic. A function
	// URL (an http trigger) takes an alias only.
	Qualifier string `json:"qualifier,omitempty"`
	// Config holds the type's own settings; the type's package decodes and
	// validates it (e.g. trigger/kafka.Config).
	Config json.RawMessage `json:"config,omitempty"`
	// Batching, for message triggers: at most BatchSize messages, gathered
	// for at most BatchWindow (0: deliver at once).
	BatchSize   int           `json:"batchSize,omitempty"`
	BatchWindow time.Duration `json:"batchWindow,omitempty"`
	// MaxRetries bounds how often a failed message is retried before it goes
	// to FailureDestination (a destination as in EventInvokeConfig, or the
	// source's own dead-letter queue/topic where its Config names one).
	MaxRetries         int    `json:"maxRetries,omitempty"`
	FailureDestination string `json:"failureDestination,omitempty"`
	// Concurrency is the most batches of this trigger in flight at once on
	// one node (0: the node's default). Batches of one key or partition
	// are never in flight together.
	Concurrency  int       `json:"concurrency,omitempty"`
	Created      time.Time `json:"created"`
	LastModified time.Time `json:"lastModified"`
}

// Trigger limits and defaults.
const (
	MaxTriggerBatchSize    = 10000
	MaxTriggerBatchWindow  = 5 * time.Minute
	MaxTriggerRetries      = 100
	MaxTriggerConcurrency  = 1000
	DefaultTriggerRetries  = 3
	DefaultTriggerBatch    = 1
	MaxTriggersPerFunction = 100
)
