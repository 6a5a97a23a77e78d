// Package mqtt is the MQTT 5 message source of the Poller Service
// (github.com/eclipse/paho.golang, its autopaho connection manager).
//
// Config (JSON):
//
//	{"url": "mqtt://user:pass@127.0.0.1:1883", "topic": "sensors/+/temp",
//	 "qos": 1, "shared": true, "clientId": "nimbus-node-1", "orderBy": "topic",
//	 "sessionExpirySeconds": 86400, "receiveMaximum": 100, "deadLetterTopic": "sensors/dlq"}
//
// url schemes: mqtt/tcp, mqtts/ssl/tls, ws, wss; credentials go in the URL.
// With shared (the default) the source subscribes to
// $share/<Options.Group>/<topic>, so the nodes of a deployment split the
// messages; without it every node receives every message.
//
// orderBy chooses each message's ordering key (Message.Key):
//
//   - "topic" (the default): the message's topic. A topic's batches are
//     delivered one at a time, in arrival order; batches of different
//     topics in parallel.
//   - "none": no key (Message.Key is empty). Batches, also of one topic,
//     are delivered in parallel and may finish in any order, so a single
//     busy topic scales too.
//
// Order holds per node and as the broker sends the messages: MQTT orders a
// topic's messages per publisher and QoS, and with shared subscriptions each
// node gets only its share.
//
// Semantics:
//
//   - The session is persistent: never a clean start, session expiry
//     sessionExpirySeconds (default 86400, one day), a client id stable
//     across restarts (default "<group>-<host>"). QoS 1 messages are
//     acknowledged (PUBACK, manual acknowledgement) only after the Deliver
//     of their batch returned nil, so the broker delivers again whatever
//     was not acknowledged when the connection or the process went away,
//     and keeps what is published while the node is down. Execution is at
//     least once.
//   - Caveat of persistent sessions: the broker keeps a stopped node's
//     session, and Mosquitto keeps routing that node's share of a shared
//     subscription to it, until the node returns or the session expires
//     (then those messages are gone). Source.Forget (trigger.Forgetter)
//     ends the session; the Manager calls it when a trigger is deleted.
//   - Received messages are cut into batches per ordering key
//     (trigger.Lanes): a batch holds at most BatchSize messages of one key
//     and is due when full or when its oldest message has waited
//     BatchWindow. Up to Options.Concurrency batches are out at once, so
//     parallelism grows with the backlog: a lone message is a batch of one,
//     a backlog over several topics (or, with orderBy "none", any backlog)
//     keeps every worker busy. A topic never has two batches out unless
//     orderBy is "none".
//   - MQTT 5 (section 4.6) requires PUBACKs in the order the messages
//     arrived, whatever their topic. paho queues an acknowledgement made
//     out of order and, every 10 ms, sends those at the head of the arrival
//     order up to the first message not yet acknowledged. So a batch that
//     finishes before an earlier-received one is acknowledged only after
//     it, and its messages count against Receive Maximum until then.
//   - Flow control: the CONNECT Receive Maximum (receiveMaximum, default
//     BatchSize×(Concurrency+1), capped at 65535, raised to BatchSize when
//     smaller) is the most QoS 1 messages the broker should send
//     unacknowledged, and the source holds at most as many. Pulling
//     therefore pauses while every worker's Deliver blocks (the function is
//     saturated), and also while the oldest unacknowledged message's batch
//     is still out. Brokers may cap it lower (Mosquitto's
//     max_inflight_messages, default 20, applies only to clients that send
//     no Receive Maximum), which then bounds the batches in flight too.
//     Mosquitto 2.0.11 keeps to it only until an acknowledgement arrives
//     while it has messages queued for the session: it then sends all of
//     them at once (seen: 218 unacknowledged for a Receive Maximum of 40),
//     and a resumed session gets every unacknowledged message again at
//     once. The source still holds only receiveMaximum messages, paho
//     buffers as many more, and beyond those the connection is not read
//     until a batch finishes (TCP back-pressure); should that last about
//     twice the keep-alive (30 s), paho's keep-alive check, whose PINGRESP
//     is not read either, may drop the connection, and the unacknowledged
//     messages come again. Messages the broker holds back wait there, and
//     Mosquitto keeps at most max_queued_messages (default 1000) per
//     session beyond those in flight, dropping the rest (QoS 1 too): raise
//     it on the broker for larger backlogs.
//   - paho.golang (v0.23.0) can forget messages that a resumed session
//     sends again right after CONNACK, so that their acknowledgements are
//     never sent and the broker, its Receive Maximum full of them, stalls
//     the connection. The source holds each connection's messages until
//     paho's Connect has returned (see gatedSession), which prevents it.
//   - MQTT has no negative acknowledgement. When Deliver fails, no further
//     batch starts; the batches already out finish, and those that succeed
//     are acknowledged. Then the source disconnects (keeping the session)
//     and, after a back-off (100 ms, doubling to 30 s while no batch
//     succeeds), reconnects, which makes the broker send every
//     unacknowledged message again, in order, with redelivered=true. As
//     PUBACKs leave in arrival order, a message that arrived after the
//     first unacknowledged one (of the failed batch, or still waiting in
//     its lane) is sent again even when its own batch succeeded: it is
//     delivered twice. A topic's messages after a failed batch are never
//     delivered before it, so order per topic survives failures.
//   - When ctx ends, Deliver calls in progress see it cancelled and no
//     further batch starts; a batch whose Deliver still returned nil is
//     acknowledged, and the connection is kept about 30 ms more so that
//     paho sends those acknowledgements, then closed keeping the session.
//   - Lost connections are retried by autopaho with exponential back-off
//     (100 ms to 30 s) until ctx ends; the Status shows Error meanwhile.
//     Messages held from the lost connection are not delivered (their
//     acknowledgements could not be sent; the broker sends them again on
//     the new connection), and a batch of them already out is delivered
//     again. MQTT reports no backlog, so there is no lag.
//   - QoS 0 (qos: 0) gives no delivery guarantee, and Receive Maximum does
//     not bound QoS 0 messages: once the source holds its limit and paho's
//     buffer (receiveMaximum messages too) is full, the connection is not
//     read until a batch finishes, and the broker may drop messages or the
//     connection meanwhile.
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

	paholog "github.com/eclipse/paho.golang/paho/log"

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
	// ReceiveMaximum bounds unacknowledged messages; default
	// BatchSize×(Concurrency+1), capped at 65535. It is raised to BatchSize
	// when smaller.
	ReceiveMaximum int `json:"receiveMaximum,omitempty"`
	// OrderBy is the ordering key: OrderTopic (the default) or OrderNone.
	OrderBy string `json:"orderBy,omitempty"`
	// DeadLetterTopic, when set, receives messages that failed for good
	// (see Source.DeadLetter).
	DeadLetterTopic string `json:"deadLetterTopic,omitempty"`
}

// The values of Config.OrderBy.
const (
	// OrderTopic keeps order per topic (Message.Key is the topic): a
	// topic's batches are delivered one at a time, batches of different
	// topics in parallel.
	OrderTopic = "topic"
	// OrderNone gives messages no ordering key: batches, even of one topic,
	// are delivered in parallel and may complete in any order.
	OrderNone = "none"
)

// Source consumes one MQTT subscription.
type Source struct {
	cfg      Config
	server   *url.URL // without credentials
	user     string
	password string
	qos      byte
	shared   bool
	ordered  bool // OrderTopic
	source   string

	minBackoff, maxBackoff time.Duration
	keepAlive              uint16
	pahoDebug              paholog.Logger // paho's debug log; tests set it to slow paho down
}

var (
	_ trigger.Source    = (*Source)(nil)
	_ trigger.Forgetter = (*Source)(nil)
)

var _ trigger.Redactor = (*Source)(nil)

// Secrets implements trigger.Redactor: the url's credentials.
func (s *Source) Secrets() trigger.Secrets { return trigger.Secrets{URLs: []string{"url"}} }

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
	s := &Source{cfg: cfg, qos: 1, shared: true, ordered: true, minBackoff: 100 * time.Millisecond, maxBackoff: 30 * time.Second, keepAlive: 30}
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
	switch c.OrderBy {
	case "", OrderTopic:
	case OrderNone:
		s.ordered = false
	default:
		got := c.OrderBy
		if len(got) > 64 {
			got = got[:64] + "..."
		}
		return nimbus.Invalidf("mqtt trigger config: orderBy must be %q or %q, got %q", OrderTopic, OrderNone, got)
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
	opts.BatchSize = max(opts.BatchSize, 1)
	opts.Concurrency = max(opts.Concurrency, 1)
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
	set.receiveMax = uint16(receiveMaximum(s.cfg.ReceiveMaximum, opts.BatchSize, opts.Concurrency))
	return set
}

// receiveMaximum is the CONNECT Receive Maximum: configured (0: enough for
// every worker's batch and one more, BatchSize×(Concurrency+1)), at least
// one batch and at most 65535.
func receiveMaximum(configured, batchSize, concurrency int) int {
	rm := configured
	if rm == 0 {
		// Each factor is below 65536 once capped, so the product cannot
		// overflow.
		rm = min(batchSize, 65535) * (min(concurrency, 65535) + 1)
	}
	return min(max(rm, batchSize), 65535)
}
