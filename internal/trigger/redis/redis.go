// Package redis is the Redis Streams message source of the Poller Service
// (github.com/redis/go-redis/v9, consumer groups).
//
// Config (JSON):
//
//	{"url": "redis://127.0.0.1:6379/0", "stream": "orders", "group": "billing",
//	 "startPosition": "LATEST", "consumer": "node-1", "claimIdleSeconds": 60,
//	 "dataField": "body", "orderBy": "field:customer",
//	 "deadLetterStream": "orders-dlq"}
//
// The consumer group (default: Options.Group) is created with MKSTREAM when
// missing, at the end of the stream (startPosition LATEST, the default) or
// at its start (TRIM_HORIZON). Each node reads as its own consumer, named
// after the host by default ("consumer" overrides it): the name is stable
// across restarts, so a restarted node first re-reads the entries it had
// not acknowledged.
//
// Semantics:
//
//   - A reader takes entries with XREADGROUP, COUNT the room left in what
//     the node holds (BatchSize×Concurrency + BatchSize entries, queued or
//     being delivered), BLOCK up to 2 s while the stream is idle. Up to
//     Concurrency workers deliver batches of at most BatchSize entries; a
//     batch goes once it is full or its oldest entry waited BatchWindow. So
//     parallelism grows with the backlog (one entry alone is one batch; a
//     backlog keeps Concurrency batches in flight), and reading pauses
//     while the node holds its limit, i.e. while the function is saturated.
//   - orderBy sets the order: "none" (default) keeps none, batches run in
//     parallel; "stream" keeps stream order, one batch at a time;
//     "field:<name>" keeps the order of entries with the same value of that
//     field, one batch per value at a time, different values in parallel,
//     entries without the field (or with an empty value) unordered.
//     Message.Key is the ordering key: "" (none), the stream, or the field's
//     value. Several nodes share a group's entries; order holds per node.
//   - Entries are acknowledged (XACK) only after Deliver returned nil. When
//     Deliver (or XACK) fails, its entries stay pending and the node stops
//     taking new work: batches not yet started are put back, those in flight
//     finish and are acknowledged, then after a back-off (100 ms, doubling to
//     30 s while no batch succeeds) the consumer reads its own pending
//     entries again (XREADGROUP from 0, in stream order) before new ones. A
//     batch that keeps failing so delays, but never loses, the others.
//   - Entries pending at a consumer that went away (a crashed node) are
//     taken over with XAUTOCLAIM once idle for claimIdleSeconds (default
//     60), so a crash loses nothing. Every entry the node holds, queued or in
//     flight, is re-claimed by its consumer every claimIdleSeconds/3 (XCLAIM,
//     JUSTID) so a slow invocation or a long queue is not taken over.
//     Execution is at least once.
//   - Lost connections are retried with exponential back-off (100 ms to
//     30 s) until ctx ends; the Status shows Error meanwhile, and as lag the
//     group's entries not yet delivered plus those pending (XINFO GROUPS).
//     When ctx ends, Run interrupts a blocked read and cancels the Deliver
//     calls under way; their entries stay pending.
//
// It needs Redis 6.2 or later (XAUTOCLAIM); the lag needs 7.0.
//
// Entries become CloudEvents with ID = the entry id, Source
// "redis://host:port/db/stream", Type "com.nimbus.redis.message", Subject the
// stream, Time the entry id's timestamp, and extensions group and consumer.
// Data is the JSON object of the entry's fields (application/json), or with
// dataField set the raw value of that one field (JSON when it parses,
// octet-stream otherwise). Deleted entries still pending are acknowledged
// and skipped.
//
// With deadLetterStream set, DeadLetter appends messages the Sink gave up
// on to that stream (XADD, in one MULTI/EXEC).
//
// Forget (when the trigger is deleted) destroys the consumer group if
// Nimbus named it (config "group" empty: the group is Options.Group). A
// group the user named is theirs: Forget only deletes this node's consumer
// from it, and only when that consumer has no pending entries (which
// deleting it would lose). A group, consumer or stream already gone is
// success.
package redis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// EventType is the CloudEvents type of Redis stream entries.
const EventType = "com.nimbus.redis.message"

// Start positions of a new consumer group.
const (
	StartLatest      = "LATEST"
	StartTrimHorizon = "TRIM_HORIZON"
)

// Orders (Config.OrderBy); "field:<name>" orders per value of a field.
const (
	OrderNone   = "none"
	OrderStream = "stream"
	orderField  = "field:"
)

// Config is a Redis Streams trigger's configuration.
type Config struct {
	// URL is "redis://[user:password@]host:port/db" (or rediss://, unix://).
	URL    string `json:"url"`
	Stream string `json:"stream"`
	// Group is the consumer group; default: the trigger's Options.Group.
	Group string `json:"group,omitempty"`
	// StartPosition is where a new group starts: LATEST (default) or
	// TRIM_HORIZON.
	StartPosition string `json:"startPosition,omitempty"`
	// Consumer names this node's consumer; default: the host name.
	Consumer string `json:"consumer,omitempty"`
	// ClaimIdleSeconds is how long an entry stays pending at another
	// consumer before this one takes it over; default 60.
	ClaimIdleSeconds int `json:"claimIdleSeconds,omitempty"`
	// DataField, when set, names the field whose value is the event data;
	// otherwise the data is the JSON object of all fields.
	DataField string `json:"dataField,omitempty"`
	// OrderBy is "none" (default: no order, batches in parallel), "stream"
	// (stream order, one batch at a time) or "field:<name>" (order per value
	// of that field; entries without it are unordered).
	OrderBy string `json:"orderBy,omitempty"`
	// DeadLetterStream, when set, receives messages that failed for good
	// (see Source.DeadLetter).
	DeadLetterStream string `json:"deadLetterStream,omitempty"`
}

// Source consumes one Redis stream through a consumer group.
type Source struct {
	cfg    Config
	opt    *goredis.Options
	source string

	orderField             string // the name in orderBy "field:<name>", or ""
	claimIdle              time.Duration
	idleBlock              time.Duration // longest XREADGROUP BLOCK while idle
	minBackoff, maxBackoff time.Duration
	lagEvery               time.Duration
}

var _ trigger.Source = (*Source)(nil)

var _ trigger.Redactor = (*Source)(nil)

// Secrets implements trigger.Redactor: the url's credentials.
func (s *Source) Secrets() trigger.Secrets { return trigger.Secrets{URLs: []string{"url"}} }

// New is the trigger.Factory of Redis Streams triggers: it decodes and
// validates raw. Errors are nimbus.ErrInvalid user errors naming the field.
func New(raw json.RawMessage) (trigger.Source, error) {
	return newSource(raw)
}

func newSource(raw json.RawMessage) (*Source, error) {
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, nimbus.Invalidf("redis trigger config: %v", err)
	}
	opt, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if cfg.ClaimIdleSeconds == 0 {
		cfg.ClaimIdleSeconds = 60
	}
	field, ok := strings.CutPrefix(cfg.OrderBy, orderField)
	if !ok {
		field = ""
	}
	return &Source{
		cfg: cfg, opt: opt, orderField: field,
		source:    fmt.Sprintf("redis://%s/%d/%s", opt.Addr, opt.DB, cfg.Stream),
		claimIdle: time.Duration(cfg.ClaimIdleSeconds) * time.Second,
		idleBlock: 2 * time.Second, minBackoff: 100 * time.Millisecond, maxBackoff: 30 * time.Second,
		lagEvery: 5 * time.Second,
	}, nil
}

// validate checks every field and returns the client options.
func (c *Config) validate() (*goredis.Options, error) {
	if c.URL == "" {
		return nil, nimbus.Invalidf("redis trigger config: url is required (e.g. redis://127.0.0.1:6379/0)")
	}
	opt, err := goredis.ParseURL(c.URL)
	if err != nil {
		// The parser's message may quote the URL and its password.
		return nil, nimbus.Invalidf("redis trigger config: url is not a valid Redis URL (redis://[user:password@]host:port/db)")
	}
	c.StartPosition = strings.ToUpper(c.StartPosition)
	switch {
	case c.Stream == "":
		return nil, nimbus.Invalidf("redis trigger config: stream is required")
	case c.StartPosition != "" && c.StartPosition != StartLatest && c.StartPosition != StartTrimHorizon:
		return nil, nimbus.Invalidf("redis trigger config: startPosition must be LATEST or TRIM_HORIZON, got %q", c.StartPosition)
	case c.ClaimIdleSeconds < 0 || c.ClaimIdleSeconds > 86400:
		return nil, nimbus.Invalidf("redis trigger config: claimIdleSeconds must be between 1 and 86400, got %d", c.ClaimIdleSeconds)
	case c.DeadLetterStream != "" && c.DeadLetterStream == c.Stream:
		return nil, nimbus.Invalidf("redis trigger config: deadLetterStream must differ from stream")
	}
	if err := c.validateOrder(); err != nil {
		return nil, err
	}
	return opt, nil
}

// validateOrder checks OrderBy and normalizes it to "none", "stream" or
// "field:<name>" (the keywords are case-insensitive, the name is not).
func (c *Config) validateOrder() error {
	low := strings.ToLower(c.OrderBy)
	switch {
	case low == "" || low == OrderNone:
		c.OrderBy = OrderNone
	case low == OrderStream:
		c.OrderBy = OrderStream
	case strings.HasPrefix(low, orderField):
		name := c.OrderBy[len(orderField):]
		if name == "" {
			return nimbus.Invalidf("redis trigger config: orderBy %q needs a field name, e.g. \"field:customer\"", c.OrderBy)
		}
		c.OrderBy = orderField + name
	default:
		return nimbus.Invalidf("redis trigger config: orderBy must be \"none\", \"stream\" or \"field:<name>\", got %q", c.OrderBy)
	}
	return nil
}

// client opens a client of at most conns connections; they are made on
// first use.
func (s *Source) client(conns int) *goredis.Client {
	opt := *s.opt
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	opt.PoolSize = conns
	opt.MaxRetries = -1 // the source retries with its own back-off
	opt.DialTimeout = 5 * time.Second
	return goredis.NewClient(&opt)
}

// settings are the Options with defaults applied.
type settings struct {
	trigger.Options
	group, consumer, start string
}

func (s *Source) settings(opts trigger.Options) settings {
	if opts.BatchSize < 1 {
		opts.BatchSize = 1
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	if opts.Status == nil {
		opts.Status = trigger.NewStatus()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Logger = opts.Logger.With("trigger_source", s.source)
	set := settings{Options: opts, group: s.cfg.Group, consumer: s.cfg.Consumer, start: "$"}
	if set.group == "" {
		set.group = opts.Group
	}
	if set.group == "" {
		set.group = "nimbus"
	}
	if set.consumer == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "nimbus"
		}
		set.consumer = host
	}
	if s.cfg.StartPosition == StartTrimHorizon {
		set.start = "0"
	}
	return set
}
