package rabbitmq

import (
	"encoding/json"
	"net"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// TestSourceSuite runs the message source conformance suite on RabbitMQ
// with the default order (none).
func TestSourceSuite(t *testing.T) {
	triggertest.RunSourceSuite(t, triggertest.Harness{Setup: setupTarget, DeadLetter: true})
}

// target is a fresh queue with a dead-letter exchange bound to a queue of
// its own.
type target struct {
	c        *amqp.Connection
	uri      amqp.URI
	q        string
	dlx, dlq string
}

func setupTarget(t *testing.T) triggertest.Target {
	c := broker(t)
	uri, err := amqp.ParseURI(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{c: c, uri: uri, q: queue(t, c), dlq: queue(t, c)}
	tg.dlx = tg.dlq + "-dlx"
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(tg.dlx, "fanout", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(tg.dlq, "", tg.dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ch.ExchangeDelete(tg.dlx, false, false)
		ch.Close()
	})
	return tg
}

func (tg *target) Addr() string { return net.JoinHostPort(tg.uri.Host, strconv.Itoa(tg.uri.Port)) }

func (tg *target) Source(t *testing.T, s triggertest.SourceSetup) trigger.Source {
	cfg := Config{URL: brokerURL(), Queue: tg.q}
	if s.Via != "" {
		u := tg.uri
		host, port, _ := net.SplitHostPort(s.Via)
		u.Host, u.Port = host, mustAtoi(port)
		cfg.URL = u.String()
	}
	if s.DeadLetter {
		cfg.DeadLetterExchange = tg.dlx
	}
	raw, _ := json.Marshal(cfg)
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	src.minBackoff, src.maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	src.lagEvery = 50 * time.Millisecond
	return src
}

func (tg *target) Publish(t *testing.T, _ int, bodies ...[]byte) {
	t.Helper()
	ch, err := tg.c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var last *amqp.DeferredConfirmation
	for _, b := range bodies {
		last, err = ch.PublishWithDeferredConfirmWithContext(t.Context(), "", tg.q, false, false, amqp.Publishing{Body: b})
		if err != nil {
			t.Fatal(err)
		}
	}
	if last != nil && !last.Wait() {
		t.Fatal("broker nacked a publish")
	}
}

func (tg *target) DeadLetters(t *testing.T) [][]byte {
	t.Helper()
	ch, err := tg.c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	var out [][]byte
	for {
		d, ok, err := ch.Get(tg.dlq, false) // left in the queue: read again next time
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, d.Body)
	}
}

func (tg *target) Check(t *testing.T, m trigger.Message) {
	t.Helper()
	if want := eventSource(tg.uri, tg.q); m.Source != want {
		t.Errorf("source %q, want %q", m.Source, want)
	}
	if m.Type != EventType || m.Subject != tg.q || m.Key != "" {
		t.Errorf("type %q, subject %q, key %q; want %s, the queue %s (the routing key), no key", m.Type, m.Subject, m.Key, EventType, tg.q)
	}
	if m.Extensions["exchange"] != "" || m.Extensions["redelivered"] != false {
		t.Errorf("extensions %v, want exchange \"\" and redelivered false", m.Extensions)
	}
}
