// Package rabbitmq is the RabbitMQ message source of the Poller Service
// (github.com/rabbitmq/amqp091-go).
//
// Config (JSON):
//
//	{"url": "amqp://guest:guest@127.0.0.1:5672/", "queue": "orders",
//	 "orderBy": "routingKey", "prefetch": 200,
//	 "deadLetterExchange": "orders.dlx", "deadLetterRoutingKey": "failed"}
//
// The queue must exist: the source declares it passively and never creates
// or changes it (its durability, arguments and bindings are the user's). A
// missing queue shows as an Error status ("queue ... not found") and is
// retried with back-off, so creating the queue later is enough.
//
// orderBy chooses each message's ordering key (Message.Key):
//
//   - "none" (the default): no key. Batches are delivered in parallel and
//     may finish in any order, as with Lambda's queue sources.
//   - "queue": the queue's name. Strict queue order on each node: one batch
//     at a time, whatever Options.Concurrency says.
//   - "routingKey": the routing key (an empty one is a key too). A key's
//     batches are delivered one at a time, in queue order; batches of
//     different keys in parallel.
//   - "header:<name>": the value of that AMQP header (a string or byte
//     array as it is, other types as Go's fmt prints them), ordered per
//     value like routingKey. Messages without the header, or whose value
//     is void, have no key and are unordered.
//
// Order holds per node only: several nodes consuming one queue share its
// messages. For strict order across nodes, declare the queue with
// x-single-active-consumer.
//
// Semantics:
//
//   - Messages are consumed with manual acknowledgement and a prefetch
//     (basic.qos, per consumer) of BatchSize×(Concurrency+1) by default,
//     or 2×BatchSize with orderBy "queue", capped at 65535; "prefetch" (0
//     to 65535) sets it instead, raised to BatchSize when smaller. At most
//     that many messages are held unacknowledged, so pulling pauses while
//     the function is saturated (Deliver blocks).
//   - Held messages are cut into batches per ordering key (trigger.Lanes):
//     a batch holds at most BatchSize messages of one key and is due when
//     full or when its oldest message has waited BatchWindow. Up to
//     Options.Concurrency batches are out at once, so parallelism grows
//     with the backlog: a lone message is a batch of one, a backlog keeps
//     every worker busy. A key never has two batches out.
//   - A batch is acknowledged only after Deliver returned nil, message by
//     message (basic.ack, multiple=false), or with one basic.ack(multiple)
//     when its delivery tags directly follow every tag already
//     acknowledged, so that it covers no message of another batch.
//   - When Deliver fails, no further batch starts; the batches already out
//     finish and those that succeed are acknowledged. Then the connection
//     is closed, which returns every unacknowledged message to the queue in
//     order (redelivered=true), and consumption resumes after a back-off.
//     A key's messages after a failed batch are never acknowledged before
//     it, so order per key survives failures; with orderBy "none" the
//     redelivered messages come after the ones that succeeded meanwhile.
//     A crash therefore loses nothing; messages in flight are delivered
//     again (at least once).
//   - When ctx ends, Deliver calls in progress see it cancelled and no
//     further batch starts; a batch whose Deliver still returned nil is
//     acknowledged before the connection is closed.
//   - Lost connections and broker restarts are retried with exponential
//     back-off (100 ms to 30 s) until ctx ends; the Status shows Error with
//     the reason meanwhile. Every 5 s, independently of deliveries, the
//     queue's ready-message count is recorded as lag.
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
	// Prefetch caps unacknowledged messages (basic.qos), 0 to 65535; 0:
	// BatchSize×(Concurrency+1), or 2×BatchSize with OrderBy "queue",
	// capped at 65535. It is raised to BatchSize when smaller.
	Prefetch int `json:"prefetch,omitempty"`
	// OrderBy is the ordering key: OrderNone (the default), OrderQueue,
	// OrderRoutingKey, or OrderHeader followed by a header's name.
	OrderBy string `json:"orderBy,omitempty"`
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
	order  ordering
	source string // the CloudEvents source

	minBackoff, maxBackoff time.Duration
	lagEvery               time.Duration
	dialTimeout            time.Duration
}

var _ trigger.Source = (*Source)(nil)

var _ trigger.Redactor = (*Source)(nil)

// Secrets implements trigger.Redactor: the url's credentials.
func (s *Source) Secrets() trigger.Secrets { return trigger.Secrets{URLs: []string{"url"}} }

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
	order, err := parseOrderBy(cfg.OrderBy)
	if err != nil {
		return nil, err
	}
	return &Source{
		cfg: cfg, uri: uri, order: order, source: eventSource(uri, cfg.Queue),
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
	case len(c.Queue) > maxShortString:
		return uri, nimbus.Invalidf("rabbitmq trigger config: queue is longer than %d bytes", maxShortString)
	case c.Prefetch < 0 || c.Prefetch > maxPrefetch:
		return uri, nimbus.Invalidf("rabbitmq trigger config: prefetch must be between 0 (the default) and %d, got %d", maxPrefetch, c.Prefetch)
	case len(c.DeadLetterExchange) > maxShortString:
		return uri, nimbus.Invalidf("rabbitmq trigger config: deadLetterExchange is longer than %d bytes", maxShortString)
	case len(c.DeadLetterRoutingKey) > maxShortString:
		return uri, nimbus.Invalidf("rabbitmq trigger config: deadLetterRoutingKey is longer than %d bytes", maxShortString)
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

// maxPrefetch is the largest basic.qos prefetch count AMQP can carry.
const maxPrefetch = 65535

// settings are the Options with defaults applied.
type settings struct {
	trigger.Options
	prefetch int // basic.qos, and the most messages the lanes hold
}

func (s *Source) settings(opts trigger.Options) settings {
	opts.BatchSize = max(opts.BatchSize, 1)
	opts.Concurrency = max(opts.Concurrency, 1)
	if opts.Status == nil {
		opts.Status = trigger.NewStatus()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Logger = opts.Logger.With("trigger_source", s.source)
	prefetch := s.cfg.Prefetch
	if prefetch == 0 {
		prefetch = defaultPrefetch(opts.BatchSize, s.order.workers(opts.Concurrency))
	}
	return settings{Options: opts, prefetch: max(prefetch, min(opts.BatchSize, maxPrefetch))}
}

// defaultPrefetch lets every worker hold a full batch while the next one
// fills: size×(workers+1), capped at maxPrefetch.
func defaultPrefetch(size, workers int) int {
	size, workers = min(size, maxPrefetch), min(workers, maxPrefetch)
	return min(size*(workers+1), maxPrefetch)
}
