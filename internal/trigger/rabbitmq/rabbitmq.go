// Package rabbitmq is the RabbitMQ message source of the Poller Service
// (github.com/rabbitmq/amqp091-go).
//
// Config (JSON):
//
//	{"url": "amqp://guest:guest@127.0.0.1:5672/", "queue": "orders",
//	 "prefetch": 200, "deadLetterExchange": "orders.dlx", "deadLetterRoutingKey": "failed"}
//
// The queue must exist: the source declares it passively and never creates
// or changes it (its durability, arguments and bindings are the user's). A
// missing queue shows as an Error status ("queue ... not found") and is
// retried with back-off, so creating the queue later is enough.
//
// Semantics:
//
//   - Messages are consumed with manual acknowledgement and a prefetch
//     (basic.qos) of max(prefetch, BatchSize), default 2×BatchSize: at most that
//     many messages are held unacknowledged, so pulling pauses while
//     Deliver blocks.
//   - A batch holds at most BatchSize messages, gathered for at most
//     BatchWindow after its first message.
//   - Batches are delivered one at a time, in queue order (one queue is one
//     ordering key: Message.Key is the queue name; Options.Concurrency is
//     not used). Several nodes consuming one queue share it and order holds
//     per node only; for strict order across nodes declare the queue with
//     x-single-active-consumer.
//   - A batch is acknowledged (basic.ack, multiple) only after Deliver
//     returned nil. When Deliver fails the channel is closed, which returns
//     every unacknowledged message to the queue in order (redelivered=true),
//     and consumption resumes after a back-off. A crash therefore loses
//     nothing; messages in flight are delivered again (at least once).
//   - Lost connections and broker restarts are retried with exponential
//     back-off (100 ms to 30 s) until ctx ends; the Status shows Error with
//     the reason meanwhile, and the queue's ready-message count as lag.
//
// Messages become CloudEvents with ID = the AMQP message-id (or a unique
// "<channel>-<delivery tag>"), Source "rabbitmq://host:port/queue" (with the
// vhost before the queue when it is not "/"), Type
// "com.nimbus.rabbitmq.message", Subject the routing key, Time the AMQP
// timestamp (or the time received), DataContentType the AMQP content-type
// (or sniffed: JSON or octet-stream) and extensions exchange, redelivered,
// correlationid, replyto, appid, messagetype and userid where set.
//
// With deadLetterExchange set, DeadLetter publishes messages the Sink gave up
// on to that exchange (with publisher confirms), so they can go to the
// trigger's own dead-letter queue.
package rabbitmq

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/url"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// EventType is the CloudEvents type of RabbitMQ messages.
const EventType = "com.nimbus.rabbitmq.message"

// Config is a RabbitMQ trigger's configuration.
type Config struct {
	// URL is the AMQP URI, e.g. "amqp://guest:guest@127.0.0.1:5672/vhost".
	URL string `json:"url"`
	// Queue is the existing queue to consume.
	Queue string `json:"queue"`
	// Prefetch caps unacknowledged messages (basic.qos); 0: 2×BatchSize.
	// It is raised to BatchSize when smaller.
	Prefetch int `json:"prefetch,omitempty"`
	// DeadLetterExchange, when set, receives messages that failed for good
	// (see Source.DeadLetter); DeadLetterRoutingKey is their routing key
	// (default: the message's own).
	DeadLetterExchange   string `json:"deadLetterExchange,omitempty"`
	DeadLetterRoutingKey string `json:"deadLetterRoutingKey,omitempty"`
}

// Source consumes one RabbitMQ queue.
type Source struct {
	cfg    Config
	uri    amqp.URI
	source string // the CloudEvents source

	minBackoff, maxBackoff time.Duration
	lagEvery               time.Duration
	dialTimeout            time.Duration
}

var _ trigger.Source = (*Source)(nil)

// New is the trigger.Factory of RabbitMQ triggers: it decodes and validates
// raw. Errors are nimbus.ErrInvalid user errors naming the field.
func New(raw json.RawMessage) (trigger.Source, error) {
	return newSource(raw)
}

func newSource(raw json.RawMessage) (*Source, error) {
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, nimbus.Invalidf("rabbitmq trigger config: %v", err)
	}
	uri, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	return &Source{
		cfg: cfg, uri: uri, source: eventSource(uri, cfg.Queue),
		minBackoff: 100 * time.Millisecond, maxBackoff: 30 * time.Second,
		lagEvery: 5 * time.Second, dialTimeout: 10 * time.Second,
	}, nil
}

// validate checks every field and returns the parsed URL.
func (c *Config) validate() (amqp.URI, error) {
	if c.URL == "" {
		return amqp.URI{}, nimbus.Invalidf("rabbitmq trigger config: url is required (e.g. amqp://guest:guest@127.0.0.1:5672/)")
	}
	uri, err := amqp.ParseURI(c.URL)
	if err != nil {
		// The parser's message may quote the URL and its password.
		return amqp.URI{}, nimbus.Invalidf("rabbitmq trigger config: url is not a valid AMQP URI (amqp://user:pass@host:port/vhost)")
	}
	switch {
	case c.Queue == "":
		return uri, nimbus.Invalidf("rabbitmq trigger config: queue is required")
	case len(c.Queue) > 255:
		return uri, nimbus.Invalidf("rabbitmq trigger config: queue is longer than 255 bytes")
	case c.Prefetch < 0 || c.Prefetch > 65535:
		return uri, nimbus.Invalidf("rabbitmq trigger config: prefetch must be between 0 and 65535, got %d", c.Prefetch)
	case len(c.DeadLetterExchange) > 255:
		return uri, nimbus.Invalidf("rabbitmq trigger config: deadLetterExchange is longer than 255 bytes")
	case len(c.DeadLetterRoutingKey) > 255:
		return uri, nimbus.Invalidf("rabbitmq trigger config: deadLetterRoutingKey is longer than 255 bytes")
	case c.DeadLetterRoutingKey != "" && c.DeadLetterExchange == "":
		return uri, nimbus.Invalidf("rabbitmq trigger config: deadLetterRoutingKey needs deadLetterExchange")
	}
	return uri, nil
}

// eventSource is "rabbitmq://host:port[/vhost]/queue", without credentials.
func eventSource(uri amqp.URI, queue string) string {
	host := uri.Host + ":" + strconv.Itoa(uri.Port)
	path := "/" + url.PathEscape(queue)
	if uri.Vhost != "/" && uri.Vhost != "" {
		path = "/" + url.PathEscape(uri.Vhost) + path
	}
	return "rabbitmq://" + host + path
}

// settings are the Options with defaults applied.
type settings struct {
	trigger.Options
	prefetch int
}

func (s *Source) settings(opts trigger.Options) settings {
	if opts.BatchSize < 1 {
		opts.BatchSize = 1
	}
	if opts.Status == nil {
		opts.Status = trigger.NewStatus()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Logger = opts.Logger.With("trigger_source", s.source)
	prefetch := s.cfg.Prefetch
	if prefetch == 0 {
		prefetch = min(2*opts.BatchSize, 65535)
	}
	return settings{Options: opts, prefetch: max(prefetch, min(opts.BatchSize, 65535))}
}
