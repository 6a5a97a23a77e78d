// Package mqtt is the MQTT 5 message source of the Poller Service
// (github.com/eclipse/paho.golang, its autopaho connection manager).
//
// Config (JSON):
//
//	{"url": "mqtt://user:pass@127.0.0.1:1883", "topic": "sensors/+/temp",
//	 "qos": 1, "shared": true, "clientId": "nimbus-node-1",
//	 "sessionExpirySeconds": 86400, "receiveMaximum": 100, "deadLetterTopic": "sensors/dlq"}
//
// url schemes: mqtt/tcp, mqtts/ssl/tls, ws, wss; credentials go in the URL.
// With shared (the default) the source subscribes to
// $share/<Options.Group>/<topic>, so the nodes of a deployment split the
// messages; without it every node receives every message.
//
// Semantics:
//
//   - The session is persistent: never a clean start, session expiry
//     sessionExpirySeconds (default 86400, one day), a client id stable
//     across restarts (default "<group>-<host>"). QoS 1 messages are
//     acknowledged (PUBACK, manual acknowledgement) only after Deliver
//     returned nil, so the broker delivers again whatever was not
//     acknowledged when the connection or the process went away, and keeps
//     what is published while the node is down. Execution is at least once.
//   - Caveat of persistent sessions: the broker keeps a stopped node's
//     session, and Mosquitto keeps routing that node's share of a shared
//     subscription to it, until the node returns or the session expires
//     (then those messages are gone). Call Source.Forget when a trigger is
//     deleted or a node leaves for good.
//   - MQTT has no negative acknowledgement: when Deliver fails the source
//     disconnects (keeping the session) and, after a back-off, reconnects,
//     which makes the broker send every unacknowledged message again, in
//     order.
//   - Flow control: the CONNECT Receive Maximum (receiveMaximum, default
//     2×BatchSize, at least BatchSize) bounds the QoS 1 messages the broker
//     sends unacknowledged, so pulling pauses while Deliver blocks. A batch
//     is delivered when it holds BatchSize messages or BatchWindow has
//     passed since its first (a broker that bounds in-flight messages below
//     BatchSize also bounds the batches).
//   - Batches are delivered one at a time in arrival order (order holds per
//     topic, as MQTT orders it: Message.Key is the topic; Options.Concurrency
//     is not used).
//   - Lost connections are retried by autopaho with exponential back-off
//     (100 ms to 30 s) until ctx ends; the Status shows Error meanwhile. MQTT
//     reports no backlog, so there is no lag.
//   - QoS 0 (qos: 0) gives no delivery guarantee.
//
// Messages become CloudEvents with ID a random UUID (packet ids are reused),
// Source "mqtt://host:port/<topic filter>", Type "com.nimbus.mqtt.message",
// Subject the message's topic, Time the time received, DataContentType the
// MQTT 5 content type (or sniffed: JSON or octet-stream) and extensions qos,
// retain and redelivered (the DUP flag).
//
// With deadLetterTopic set, DeadLetter publishes messages the Sink gave up on
// to that topic at QoS 1.
package mqtt

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// EventType is the CloudEvents type of MQTT messages.
const EventType = "com.nimbus.mqtt.message"

// Config is an MQTT trigger's configuration.
type Config struct {
	// URL is the broker, e.g. "mqtt://user:pass@127.0.0.1:1883".
	URL string `json:"url"`
	// Topic is the topic filter (+ and # wildcards allowed).
	Topic string `json:"topic"`
	// QoS is the subscription's QoS: 1 (default) or 0.
	QoS *int `json:"qos,omitempty"`
	// Shared subscribes as $share/<group>/<topic> (default true).
	Shared *bool `json:"shared,omitempty"`
	// ClientID names the session; default "<Options.Group>-<host>".
	ClientID string `json:"clientId,omitempty"`
	// SessionExpirySeconds is how long the broker keeps the session of a
	// disconnected node; default 86400.
	SessionExpirySeconds int `json:"sessionExpirySeconds,omitempty"`
	// ReceiveMaximum bounds unacknowledged messages; default 2×BatchSize.
	// It is raised to BatchSize when smaller.
	ReceiveMaximum int `json:"receiveMaximum,omitempty"`
	// DeadLetterTopic, when set, receives messages that failed for good
	// (see Source.DeadLetter).
	DeadLetterTopic string `json:"deadLetterTopic,omitempty"`
}

// Source consumes one MQTT subscription.
type Source struct {
	cfg      Config
	server   *url.URL // without credentials
	user     string
	password string
	qos      byte
	shared   bool
	source   string

	minBackoff, maxBackoff time.Duration
	keepAlive              uint16
}

var _ trigger.Source = (*Source)(nil)

// New is the trigger.Factory of MQTT triggers: it decodes and validates raw.
// Errors are nimbus.ErrInvalid user errors naming the field.
func New(raw json.RawMessage) (trigger.Source, error) {
	return newSource(raw)
}

func newSource(raw json.RawMessage) (*Source, error) {
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, nimbus.Invalidf("mqtt trigger config: %v", err)
	}
	s := &Source{cfg: cfg, qos: 1, shared: true, minBackoff: 100 * time.Millisecond, maxBackoff: 30 * time.Second, keepAlive: 30}
	if err := s.validate(); err != nil {
		return nil, err
	}
	if s.cfg.SessionExpirySeconds == 0 {
		s.cfg.SessionExpirySeconds = 86400
	}
	s.source = "mqtt://" + s.server.Host + "/" + url.PathEscape(cfg.Topic)
	return s, nil
}

// validate checks every field and fills in the parsed ones.
func (s *Source) validate() error {
	c := &s.cfg
	if err := s.parseURL(); err != nil {
		return err
	}
	if err := validTopic("topic", c.Topic, true); err != nil {
		return err
	}
	if c.QoS != nil {
		if *c.QoS != 0 && *c.QoS != 1 {
			return nimbus.Invalidf("mqtt trigger config: qos must be 0 or 1, got %d", *c.QoS)
		}
		s.qos = byte(*c.QoS)
	}
	if c.Shared != nil {
		s.shared = *c.Shared
	}
	switch {
	case len(c.ClientID) > 65535 || !utf8.ValidString(c.ClientID):
		return nimbus.Invalidf("mqtt trigger config: clientId must be valid UTF-8 of at most 65535 bytes")
	case c.SessionExpirySeconds < 0 || int64(c.SessionExpirySeconds) > math.MaxUint32:
		return nimbus.Invalidf("mqtt trigger config: sessionExpirySeconds must be between 1 and %d, got %d", uint32(math.MaxUint32), c.SessionExpirySeconds)
	case c.ReceiveMaximum < 0 || c.ReceiveMaximum > 65535:
		return nimbus.Invalidf("mqtt trigger config: receiveMaximum must be between 1 and 65535, got %d", c.ReceiveMaximum)
	}
	if c.DeadLetterTopic != "" {
		return validTopic("deadLetterTopic", c.DeadLetterTopic, false)
	}
	return nil
}

// parseURL checks url and splits off its credentials.
func (s *Source) parseURL() error {
	if s.cfg.URL == "" {
		return nimbus.Invalidf("mqtt trigger config: url is required (e.g. mqtt://127.0.0.1:1883)")
	}
	u, err := url.Parse(s.cfg.URL)
	if err != nil || u.Host == "" {
		// The parser's message may quote the URL and its password.
		return nimbus.Invalidf("mqtt trigger config: url is not a valid URL (mqtt://[user:password@]host:port)")
	}
	switch u.Scheme {
	case "mqtt", "tcp", "mqtts", "ssl", "tls", "ws", "wss":
	default:
		return nimbus.Invalidf("mqtt trigger config: url scheme must be mqtt, mqtts, tcp, ssl, tls, ws or wss, got %q", u.Scheme)
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.password, _ = u.User.Password()
		u.User = nil
	}
	if u.Port() == "" {
		port := map[string]string{"ws": "80", "wss": "443", "mqtts": "8883", "ssl": "8883", "tls": "8883"}[u.Scheme]
		if port == "" {
			port = "1883"
		}
		u.Host += ":" + port
	}
	s.server = u
	return nil
}

// validTopic checks a topic filter (wildcards allowed) or a topic name.
func validTopic(field, t string, filter bool) error {
	switch {
	case t == "":
		return nimbus.Invalidf("mqtt trigger config: %s is required", field)
	case len(t) > 65535 || !utf8.ValidString(t) || strings.ContainsRune(t, 0):
		return nimbus.Invalidf("mqtt trigger config: %s must be valid UTF-8 of at most 65535 bytes without NUL", field)
	case strings.HasPrefix(t, "$share/"):
		return nimbus.Invalidf("mqtt trigger config: %s must not start with $share/ (set \"shared\": true instead)", field)
	case !filter && strings.ContainsAny(t, "+#"):
		return nimbus.Invalidf("mqtt trigger config: %s must not contain wildcards (+ or #)", field)
	}
	levels := strings.Split(t, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return nimbus.Invalidf("mqtt trigger config: %s %q: # must be a whole level and the last one", field, t)
		}
		if strings.Contains(l, "+") && l != "+" {
			return nimbus.Invalidf("mqtt trigger config: %s %q: + must be a whole level", field, t)
		}
	}
	return nil
}

// settings are the Options with defaults applied.
type settings struct {
	trigger.Options
	clientID   string
	filter     string // the subscription, with $share/<group>/ when shared
	receiveMax uint16
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
	group := strings.NewReplacer("/", "_", "+", "_", "#", "_").Replace(opts.Group)
	if group == "" {
		group = "nimbus"
	}
	set := settings{Options: opts, clientID: s.cfg.ClientID, filter: s.cfg.Topic}
	if set.clientID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "node"
		}
		set.clientID = group + "-" + host
	}
	if s.shared {
		set.filter = "$share/" + group + "/" + s.cfg.Topic
	}
	rm := s.cfg.ReceiveMaximum
	if rm == 0 {
		rm = 2 * opts.BatchSize
	}
	set.receiveMax = uint16(min(max(rm, opts.BatchSize), 65535))
	return set
}
