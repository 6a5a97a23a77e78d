package nats

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Start positions of a new JetStream consumer, named as Lambda names them.
const (
	// StartLatest delivers only messages stored after the consumer was
	// created (JetStream DeliverNew).
	StartLatest = "LATEST"
	// StartTrimHorizon delivers every message the stream holds
	// (JetStream DeliverAll).
	StartTrimHorizon = "TRIM_HORIZON"
)

// maxNameLen bounds stream, consumer and queue names.
const maxNameLen = 255

// Config is a NATS trigger's configuration. Without Stream it subscribes to
// Subject in core NATS as a member of queue group Queue; with Stream it
// consumes a durable JetStream pull consumer.
type Config struct {
	// URL is the server, e.g. "nats://127.0.0.1:4222"; several servers of
	// one cluster may be given separated by commas.
	URL string `json:"url"`
	// Subject is the subject to subscribe to (core NATS, required) or the
	// consumer's filter subject (JetStream, optional). Wildcards allowed.
	Subject string `json:"subject,omitempty"`
	// Queue is the core NATS queue group (default: Options.Group).
	Queue string `json:"queue,omitempty"`
	// Stream selects JetStream: the stream to consume.
	Stream string `json:"stream,omitempty"`
	// Consumer is the durable consumer's name (JetStream only; default:
	// Options.Group with characters other than letters, digits, '-' and
	// '_' replaced by '_').
	Consumer string `json:"consumer,omitempty"`
	// StartPosition is where a new durable consumer starts: StartLatest
	// (the default) or StartTrimHorizon (JetStream only). An existing
	// consumer resumes where it was.
	StartPosition string `json:"startPosition,omitempty"`
}

// JetStream reports whether the config consumes a JetStream stream.
func (c Config) JetStream() bool { return c.Stream != "" }

// New is the trigger.Factory of NATS triggers: it decodes and validates raw.
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
		return nil, nimbus.Invalidf("nats trigger config: %v", err)
	}
	host, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if cfg.JetStream() && cfg.StartPosition == "" {
		cfg.StartPosition = StartLatest
	}
	where := cfg.Subject
	if cfg.JetStream() {
		where = cfg.Stream
	}
	return &Source{
		cfg:           cfg,
		source:        "nats://" + host + "/" + where,
		ackWait:       30 * time.Second,
		lagEvery:      10 * time.Second,
		probeWait:     5 * time.Second,
		minBackoff:    100 * time.Millisecond,
		maxBackoff:    30 * time.Second,
		reconnectWait: time.Second,
	}, nil
}

// validate reports the first invalid field, or returns the first server's
// host:port.
func (c *Config) validate() (string, error) {
	host, err := validURL(c.URL)
	if err != nil {
		return "", err
	}
	if c.JetStream() {
		return host, c.validateJetStream()
	}
	switch {
	case c.Subject == "":
		return "", nimbus.Invalidf("nats trigger config: subject is required (or stream, for JetStream)")
	case c.Consumer != "":
		return "", nimbus.Invalidf("nats trigger config: consumer is only valid with stream (JetStream)")
	case c.StartPosition != "":
		return "", nimbus.Invalidf("nats trigger config: startPosition is only valid with stream (JetStream); core NATS delivers only new messages")
	}
	if err := validSubject(c.Subject); err != "" {
		return "", nimbus.Invalidf("nats trigger config: subject %q: %s", c.Subject, err)
	}
	if c.Queue != "" && (len(c.Queue) > maxNameLen || strings.IndexFunc(c.Queue, badQueueRune) >= 0) {
		return "", nimbus.Invalidf("nats trigger config: queue %q: at most %d characters, no spaces, control characters or wildcards", c.Queue, maxNameLen)
	}
	return host, nil
}

func (c *Config) validateJetStream() error {
	if err := validName(c.Stream); err != "" {
		return nimbus.Invalidf("nats trigger config: stream %q: %s", c.Stream, err)
	}
	if c.Queue != "" {
		return nimbus.Invalidf("nats trigger config: queue is only valid without stream (core NATS); JetStream nodes share the durable consumer")
	}
	if c.Subject != "" {
		if err := validSubject(c.Subject); err != "" {
			return nimbus.Invalidf("nats trigger config: subject %q: %s", c.Subject, err)
		}
	}
	if c.Consumer != "" {
		if err := validName(c.Consumer); err != "" {
			return nimbus.Invalidf("nats trigger config: consumer %q: %s", c.Consumer, err)
		}
	}
	switch c.StartPosition {
	case "", StartLatest, StartTrimHorizon:
		return nil
	default:
		return nimbus.Invalidf("nats trigger config: startPosition %q: must be %s or %s", c.StartPosition, StartLatest, StartTrimHorizon)
	}
}

// validURL checks a comma-separated list of nats:// (or tls://, ws://,
// wss://) URLs and returns the first one's host:port.
func validURL(list string) (string, error) {
	if list == "" {
		return "", nimbus.Invalidf("nats trigger config: url is required (e.g. nats://127.0.0.1:4222)")
	}
	var first string
	for raw := range strings.SplitSeq(list, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" || u.Hostname() == "" {
			// Neither the URL nor the parser's message is quoted: either
			// could hold a password.
			return "", nimbus.Invalidf("nats trigger config: url is not a server URL such as nats://127.0.0.1:4222")
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return "", nimbus.Invalidf("nats trigger config: url: scheme %q: must be nats, tls, ws or wss", u.Scheme)
		}
		if first == "" {
			first = u.Host
		}
	}
	return first, nil
}

// validSubject checks a NATS subject (wildcards allowed) and says what is
// wrong, or "".
func validSubject(s string) string {
	tokens := strings.Split(s, ".")
	for i, tok := range tokens {
		switch {
		case tok == "":
			return "empty token (leading, trailing or double '.')"
		case strings.IndexFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return "spaces and control characters are not allowed"
		case tok == ">" && i != len(tokens)-1:
			return "'>' must be the last token"
		case len(tok) > 1 && strings.ContainsAny(tok, "*>"):
			return "wildcards '*' and '>' must be whole tokens"
		}
	}
	return ""
}

// validName checks a stream or consumer name and says what is wrong, or "".
func validName(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > maxNameLen:
		return "longer than 255 characters"
	case strings.IndexFunc(s, badNameRune) >= 0:
		return "no spaces, control characters, '.', '*', '>', '/' or '\\' allowed"
	}
	return ""
}

func badNameRune(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(".*>/\\", r)
}

func badQueueRune(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || r == '*' || r == '>'
}

// durableName turns a group name into a valid consumer name.
func durableName(group string) string {
	name := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return '_'
	}, group)
	if len(name) > maxNameLen {
		name = name[:maxNameLen]
	}
	return name
}

// queueName turns a group name into a valid queue group name.
func queueName(group string) string {
	return strings.Map(func(r rune) rune {
		if badQueueRune(r) {
			return '_'
		}
		return r
	}, group)
}
