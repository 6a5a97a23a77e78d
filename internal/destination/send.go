package destination

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	DefaultAttempts = 5
	DefaultBackoff  = time.Second
	// maxBackoff caps one wait between webhook attempts, Retry-After
	// included.
	maxBackoff = time.Minute
	// natsTimeout bounds a NATS publish when the caller's context has no
	// deadline.
	natsTimeout = 10 * time.Second
)

// Config wires a Sender. Every field is optional; a destination whose kind
// has no means of delivery fails with an error saying so.
type Config struct {
	// HTTP posts to webhooks. The default has a 30 s timeout and does not
	// follow redirects (a redirect is a failed delivery).
	HTTP *http.Client
	// NATS publishes to subjects.
	NATS *nats.Conn
	// Reserved lists subject prefixes Send refuses to publish on, such as
	// the store's own subjects ("nimbus."), so that a destination cannot
	// write into Nimbus's streams.
	Reserved []string
	// InvokeAsync submits payload as an asynchronous invocation of function
	// (the Async Service). Its error is returned as is, wrapped.
	InvokeAsync func(ctx context.Context, function string, payload []byte) error
	// Attempts bounds webhook attempts (default 5); Backoff is the wait
	// before the second attempt (default 1 s), doubled for each further
	// one, with jitter, capped at a minute. The context bounds the whole.
	Attempts int
	Backoff  time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
}

// Sender delivers destination records. It is safe for concurrent use.
type Sender struct {
	cfg Config
	log *slog.Logger
	js  jetstream.JetStream // nil without NATS
}

// New returns a Sender.
func New(cfg Config) *Sender {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{
			Timeout:       30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{cfg: cfg, log: cfg.Logger}
	if cfg.NATS != nil {
		s.js, _ = jetstream.New(cfg.NATS) // fails only on a nil connection
	}
	return s
}

// Send delivers rec to dest, signing webhook deliveries with secret (none
// when empty). It returns nil once the destination has the record: the
// function's invocation is submitted, the webhook answered 2xx, or the NATS
// server acknowledged the message (a JetStream ack when a stream captures
// the subject, a flush otherwise). Otherwise the error says why; an invalid
// dest wraps nimbus.ErrInvalid.
func (s *Sender) Send(ctx context.Context, dest, secret string, rec *Record) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode destination record: %w", err)
	}
	return s.deliver(ctx, dest, secret, rec.RequestContext.RequestID+":"+rec.RequestContext.Condition, body, nil)
}

// DeadLetter is an event that failed for good, as it goes to a function's
// dead-letter target: the event itself, as Lambda sends it to a
// dead-letter queue, with why it failed beside it (Lambda's message
// attributes: webhook headers X-Nimbus-Request-Id, X-Nimbus-Error-Code and
// X-Nimbus-Error-Message; NATS headers RequestID, ErrorCode and
// ErrorMessage; nothing for a function, which gets the event as is).
type DeadLetter struct {
	RequestID    string
	ErrorCode    string // the condition, e.g. RetriesExhausted
	ErrorMessage string
	Payload      []byte
}

// SendDeadLetter delivers a dead letter to dest as Send delivers a record.
func (s *Sender) SendDeadLetter(ctx context.Context, dest, secret string, dl DeadLetter) error {
	msg := dl.ErrorMessage
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	msg = strings.Join(strings.Fields(msg), " ") // one line, as headers must be
	attrs := map[string]string{"RequestID": dl.RequestID, "ErrorCode": dl.ErrorCode, "ErrorMessage": msg}
	return s.deliver(ctx, dest, secret, dl.RequestID+":DeadLetter", dl.Payload, attrs)
}

// deliver sends body, identified by id (deduplication, delivery id), with
// its attributes.
func (s *Sender) deliver(ctx context.Context, dest, secret, id string, body []byte, attrs map[string]string) error {
	t, err := Parse(dest, "", "")
	if err != nil {
		return err
	}
	switch t.Kind {
	case Function:
		return s.sendFunction(ctx, t.Name, body)
	case Webhook:
		return s.sendWebhook(ctx, t.Name, secret, id, body, attrs)
	default:
		return s.sendNATS(ctx, t.Name, id, body, attrs)
	}
}

func (s *Sender) sendFunction(ctx context.Context, name string, body []byte) error {
	if s.cfg.InvokeAsync == nil {
		return errors.New("function destinations are not available on this node")
	}
	if err := s.cfg.InvokeAsync(ctx, name, body); err != nil {
		return fmt.Errorf("invoke destination function %s: %w", name, err)
	}
	return nil
}

// sendNATS publishes on subject: through JetStream, with the delivery id as
// its deduplication id, when a stream captures the subject; otherwise a core
// publish and a flush, which shows the server has the message (whether a
// subscriber gets it is up to core NATS).
func (s *Sender) sendNATS(ctx context.Context, subject, id string, body []byte, attrs map[string]string) error {
	if s.cfg.NATS == nil {
		return errors.New("NATS destinations are not available on this node")
	}
	for _, p := range s.cfg.Reserved {
		if strings.HasPrefix(subject, p) {
			return fmt.Errorf("publish to nats:%s: subjects starting with %q are reserved for Nimbus", subject, p)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, natsTimeout)
		defer cancel()
	}
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	for k, v := range attrs {
		msg.Header.Set(k, v)
	}
	if _, err := s.js.StreamNameBySubject(ctx, subject); err == nil {
		_, err = s.js.PublishMsg(ctx, msg, jetstream.WithRetryAttempts(0))
		if !errors.Is(err, jetstream.ErrNoStreamResponse) { // else: the stream went away meanwhile
			return wrapNATS(subject, "jetstream publish", err)
		}
	}
	if err := s.cfg.NATS.PublishMsg(msg); err != nil {
		return wrapNATS(subject, "publish", err)
	}
	return wrapNATS(subject, "flush", s.cfg.NATS.FlushWithContext(ctx))
}

func wrapNATS(subject, op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s to nats:%s: %w", op, subject, err)
}
