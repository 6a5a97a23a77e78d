package kafka

import (
	"bytes"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Start positions, as Lambda names them.
const (
	// StartLatest starts a new consumer group at the end of each partition:
	// only messages produced after the group first joined are delivered.
	StartLatest = "LATEST"
	// StartTrimHorizon starts a new consumer group at the oldest message
	// still stored.
	StartTrimHorizon = "TRIM_HORIZON"
)

// maxGroupLen bounds a consumer group id (Kafka has no limit of its own;
// this keeps ids sane).
const maxGroupLen = 255

// validTopic is Kafka's rule for topic names.
var validTopic = lazyre.New(`^[a-zA-Z0-9._-]{1,249}$`)

// Config is a Kafka trigger's configuration. Lambda's
// CreateEventSourceMapping for self-managed Kafka maps onto it.
type Config struct {
	// Brokers are the bootstrap brokers, "host:port" each.
	Brokers []string `json:"brokers"`
	// Topic is the topic to consume.
	Topic string `json:"topic"`
	// StartPosition is where a consumer group without committed offsets
	// starts: StartLatest (the default) or StartTrimHorizon. A group that
	// has committed offsets always resumes from them.
	StartPosition string `json:"startPosition,omitempty"`
	// Group overrides the consumer group id (default: Options.Group).
	Group string `json:"group,omitempty"`
	// SessionTimeout is how long the group waits for a member that stopped
	// heartbeating (a crashed node) before it gives that member's
	// partitions to the others: a Go duration from 1s to 30m, default 45s
	// (Kafka's session.timeout.ms; the brokers' group.min.session.timeout.ms
	// and group.max.session.timeout.ms, 6s and 30m by default, bound it
	// further). A node that stops cleanly leaves the group at once.
	SessionTimeout string `json:"sessionTimeout,omitempty"`
}

// Bounds and default of Config.SessionTimeout.
const (
	MinSessionTimeout     = time.Second
	MaxSessionTimeout     = 30 * time.Minute
	DefaultSessionTimeout = 45 * time.Second
)

// maxHeartbeat is franz-go's (and Kafka's) default heartbeat interval; a
// shorter session heartbeats three times per session timeout.
const maxHeartbeat = 3 * time.Second

// New is the trigger.Factory of Kafka triggers: it decodes and validates raw.
// Errors are nimbus.ErrInvalid user errors naming the field.
func New(raw json.RawMessage) (trigger.Source, error) {
	return newSource(raw)
}

func newSource(raw json.RawMessage) (*Source, error) {
	var cfg Config
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage(`{}`)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, nimbus.Invalidf("kafka trigger config: %v", err)
	}
	session, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if cfg.StartPosition == "" {
		cfg.StartPosition = StartLatest
	}
	return &Source{
		cfg:        cfg,
		session:    session,
		source:     "kafka://" + cfg.Brokers[0] + "/" + cfg.Topic,
		lagEvery:   10 * time.Second,
		probeWait:  10 * time.Second,
		minBackoff: 100 * time.Millisecond,
		maxBackoff: 30 * time.Second,
		revokeWait: 30 * time.Second,
	}, nil
}

// validate reports the first invalid field, or returns the session
// timeout.
func (c *Config) validate() (time.Duration, error) {
	if len(c.Brokers) == 0 {
		return 0, nimbus.Invalidf("kafka trigger config: brokers is required (e.g. [\"127.0.0.1:9092\"])")
	}
	for i, b := range c.Brokers {
		if err := validBroker(b); err != nil {
			return 0, nimbus.Invalidf("kafka trigger config: brokers[%d] %q: %s", i, b, err)
		}
	}
	switch {
	case c.Topic == "":
		return 0, nimbus.Invalidf("kafka trigger config: topic is required")
	case c.Topic == "." || c.Topic == ".." || !validTopic().MatchString(c.Topic):
		return 0, nimbus.Invalidf("kafka trigger config: topic %q is not a valid Kafka topic name (1-249 letters, digits, '.', '_', '-')", c.Topic)
	}
	switch c.StartPosition {
	case "", StartLatest, StartTrimHorizon:
	default:
		return 0, nimbus.Invalidf("kafka trigger config: startPosition %q: must be %s or %s", c.StartPosition, StartLatest, StartTrimHorizon)
	}
	if len(c.Group) > maxGroupLen {
		return 0, nimbus.Invalidf("kafka trigger config: group is longer than %d bytes", maxGroupLen)
	}
	if strings.IndexFunc(c.Group, unicode.IsControl) >= 0 {
		return 0, nimbus.Invalidf("kafka trigger config: group contains control characters")
	}
	return c.sessionTimeout()
}

// sessionTimeout parses SessionTimeout (empty: the default).
func (c *Config) sessionTimeout() (time.Duration, error) {
	if c.SessionTimeout == "" {
		return DefaultSessionTimeout, nil
	}
	d, err := time.ParseDuration(c.SessionTimeout)
	if err != nil || d < MinSessionTimeout || d > MaxSessionTimeout || d%time.Millisecond != 0 {
		got := c.SessionTimeout
		if len(got) > 32 {
			got = got[:32] + "..."
		}
		return 0, nimbus.Invalidf("kafka trigger config: sessionTimeout %q: must be a duration from %s to %s in whole milliseconds, such as \"10s\"",
			got, MinSessionTimeout, MaxSessionTimeout)
	}
	return d, nil
}

// validBroker checks one "host:port" address and says what is wrong.
func validBroker(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errString("must be host:port")
	}
	if host == "" || strings.ContainsAny(host, " /\t") {
		return errString("host is missing or invalid")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errString("port must be a number from 1 to 65535")
	}
	return nil
}

// errString is a constant-message error.
type errString string

func (e errString) Error() string { return string(e) }
