package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// brokerURL is the shared broker (NIMBUS_RABBITMQ_URL overrides).
func brokerURL() string {
	if u := os.Getenv("NIMBUS_RABBITMQ_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// broker connects to the shared RabbitMQ, skipping the test when it is down
// unless NIMBUS_REQUIRE_SERVICES=1.
func broker(t testing.TB) *amqp.Connection {
	t.Helper()
	c, err := amqp.DialConfig(brokerURL(), amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", brokerURL(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// queue declares a fresh queue, deleted when the test ends.
func queue(t testing.TB, c *amqp.Connection) string {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	name := "nimbus-test-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + suffix()
	if _, err := ch.QueueDeclare(name, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(name, false, false, false)
		ch.Close()
	})
	return name
}

// publish sends bodies m-<from>..m-<to-1> to the queue with confirms.
func publish(t testing.TB, c *amqp.Connection, q string, from, to int) {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var last *amqp.DeferredConfirmation
	for i := from; i < to; i++ {
		last, err = ch.PublishWithDeferredConfirmWithContext(context.Background(), "", q, false, false,
			amqp.Publishing{Body: []byte(triggertest.Body(i))})
		if err != nil {
			t.Fatal(err)
		}
	}
	if last != nil && !last.Wait() {
		t.Fatal("broker nacked a publish")
	}
}

// source builds a Source for q at url with short back-offs.
func source(t testing.TB, url, q string) *Source {
	t.Helper()
	raw, _ := json.Marshal(Config{URL: url, Queue: q})
	s, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	s.minBackoff, s.maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	s.lagEvery = 50 * time.Millisecond
	return s
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"not json", `{`, "rabbitmq trigger config"},
		{"unknown field", `{"url":"amqp://h/","queue":"q","quue":1}`, `unknown field "quue"`},
		{"wrong type", `{"url":"amqp://h/","queue":"q","prefetch":"5"}`, "prefetch"},
		{"no url", `{"queue":"q"}`, "url is required"},
		{"bad url", `{"url":"http://u:secret@h/","queue":"q"}`, "url is not a valid AMQP URI"},
		{"no queue", `{"url":"amqp://h/"}`, "queue is required"},
		{"long queue", `{"url":"amqp://h/","queue":"` + strings.Repeat("q", 256) + `"}`, "queue is longer"},
		{"negative prefetch", `{"url":"amqp://h/","queue":"q","prefetch":-1}`, "prefetch must be between 0 (the default) and 65535, got -1"},
		{"huge prefetch", `{"url":"amqp://h/","queue":"q","prefetch":70000}`, "prefetch must be between 0 (the default) and 65535, got 70000"},
		{"orderBy unknown", `{"url":"amqp://h/","queue":"q","orderBy":"partition"}`, `orderBy must be "none", "queue", "routingKey" or "header:<name>", got "partition"`},
		{"orderBy wrong case", `{"url":"amqp://h/","queue":"q","orderBy":"RoutingKey"}`, `orderBy must be`},
		{"orderBy header without name", `{"url":"amqp://h/","queue":"q","orderBy":"header:"}`, `orderBy "header:" names no header`},
		{"orderBy long header", `{"url":"amqp://h/","queue":"q","orderBy":"header:` + strings.Repeat("h", 256) + `"}`, "orderBy header name is longer than 255 bytes"},
		{"orderBy not a string", `{"url":"amqp://h/","queue":"q","orderBy":1}`, "orderBy"},
		{"key without exchange", `{"url":"amqp://h/","queue":"q","deadLetterRoutingKey":"k"}`, "needs deadLetterExchange"},
		{"long exchange", `{"url":"amqp://h/","queue":"q","deadLetterExchange":"` + strings.Repeat("x", 256) + `"}`, "deadLetterExchange is longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(json.RawMessage(tt.raw))
			if !errors.Is(err, nimbus.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New(%s) = %v, want an ErrInvalid containing %q", tt.raw, err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
	src, err := New(json.RawMessage(`{"url":"amqp://u:p@h:5673/v","queue":"q","prefetch":10,"deadLetterExchange":"dlx"}`))
	if err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if got, want := src.(*Source).source, "rabbitmq://h:5673/v/q"; got != want {
		t.Errorf("source = %q, want %q", got, want)
	}
	for orderBy, want := range map[string]ordering{
		``:                             {by: OrderNone},
		`,"orderBy":"none"`:            {by: OrderNone},
		`,"orderBy":"queue"`:           {by: OrderQueue},
		`,"orderBy":"routingKey"`:      {by: OrderRoutingKey},
		`,"orderBy":"header:x-tenant"`: {by: OrderHeader, header: "x-tenant"},
		`,"orderBy":"header:a:b c"`:    {by: OrderHeader, header: "a:b c"},
	} {
		src, err := newSource(json.RawMessage(`{"url":"amqp://h/","queue":"q"` + orderBy + `}`))
		if err != nil {
			t.Errorf("config with %s: %v", orderBy, err)
			continue
		}
		if src.order != want {
			t.Errorf("config with %s: ordering = %+v, want %+v", orderBy, src.order, want)
		}
	}
}

func TestPrefetch(t *testing.T) {
	tests := []struct {
		name              string
		prefetch          int
		orderBy           string
		size, concurrency int
		want              int
	}{
		{"default scales with concurrency", 0, "", 10, 4, 50},
		{"default with one worker", 0, "none", 10, 1, 20},
		{"zero concurrency is one", 0, "none", 10, 0, 20},
		{"queue order has one worker", 0, "queue", 10, 8, 20},
		{"keyed order scales", 0, "routingKey", 10, 8, 90},
		{"header order scales", 0, "header:h", 3, 2, 9},
		{"default capped at 65535", 0, "", 10000, 1000, 65535},
		{"configured", 7, "", 5, 10, 7},
		{"configured below the batch size", 3, "", 5, 10, 5},
		{"configured maximum", 65535, "", 10000, 1000, 65535},
		{"batch size past 65535", 0, "", 70000, 1, 65535},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, _ := json.Marshal(Config{URL: "amqp://h/", Queue: "q", Prefetch: tt.prefetch, OrderBy: tt.orderBy})
			src, err := newSource(raw)
			if err != nil {
				t.Fatal(err)
			}
			set := src.settings(trigger.Options{BatchSize: tt.size, Concurrency: tt.concurrency})
			if set.prefetch != tt.want {
				t.Errorf("prefetch = %d, want %d", set.prefetch, tt.want)
			}
		})
	}
}

// TestMessageProperties checks what becomes of the AMQP properties (the
// suite checks messages without them).
func TestMessageProperties(t *testing.T) {
	c := broker(t)
	q := queue(t, c)
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	at := time.Unix(1700000000, 0)
	pubs := []amqp.Publishing{
		{Body: []byte(`{"a":1}`), MessageId: "id-1", Timestamp: at, CorrelationId: "c1", ReplyTo: "r", AppId: "app", Type: "t", UserId: "guest"},
		{Body: []byte("hello"), ContentType: "text/plain"},
	}
	for _, p := range pubs {
		if err := ch.PublishWithContext(t.Context(), "", q, false, false, p); err != nil {
			t.Fatal(err)
		}
	}
	sink := &triggertest.Sink{}
	stop := triggertest.Run(t, source(t, brokerURL(), q), sink, triggertest.Options(10, 0))
	sink.WaitDistinct(t, 2, 10*time.Second)
	stop()
	m := sink.Messages()
	want := map[string]any{"correlationid": "c1", "replyto": "r", "appid": "app", "messagetype": "t", "userid": "guest"}
	if m[0].ID != "id-1" || !m[0].Time.Equal(at) || m[0].DataContentType != "application/json" {
		t.Errorf("message 0 = %+v, want the message id, the timestamp, JSON", m[0])
	}
	for k, v := range want {
		if m[0].Extensions[k] != v {
			t.Errorf("extension %s = %v, want %v", k, m[0].Extensions[k], v)
		}
	}
	if m[1].DataContentType != "text/plain" || m[1].Extensions["correlationid"] != nil {
		t.Errorf("message 1 = %+v, want content type text/plain and no correlation id", m[1])
	}
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func TestQueueMissing(t *testing.T) {
	c := broker(t)
	name := "nimbus-test-missing-" + suffix()
	o := triggertest.Options(10, 0)
	sink := &triggertest.Sink{}
	stop := triggertest.Run(t, source(t, brokerURL(), name), sink, o)
	triggertest.WaitFor(t, "a not-found status", func() bool {
		v := o.Status.View()
		return v.State == trigger.StateError && strings.Contains(v.Reason, "not found")
	})
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(name, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer ch.QueueDelete(name, false, false, false)
	publish(t, c, name, 0, 5)
	sink.WaitDistinct(t, 5, 20*time.Second)
	stop()
}

func TestDeadLetter(t *testing.T) {
	c := broker(t)
	dlq := queue(t, c)
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	dlx := dlq + "-dlx"
	if err := ch.ExchangeDeclare(dlx, "fanout", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer ch.ExchangeDelete(dlx, false, false)
	raw, _ := json.Marshal(Config{URL: brokerURL(), Queue: dlq, DeadLetterExchange: dlx})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []trigger.Message{{ID: "a", Data: []byte("poison"), DataContentType: "text/plain", Subject: "k"}}
	raw, _ = json.Marshal(Config{URL: brokerURL(), Queue: dlq, DeadLetterExchange: dlx + "-missing"})
	missing, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := missing.DeadLetter(t.Context(), msgs); err == nil || !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Fatalf("DeadLetter to a missing exchange = %v, want a NOT_FOUND error", err)
	}
	if err := src.DeadLetter(t.Context(), msgs); err == nil || !strings.Contains(err.Error(), "no queue") {
		t.Fatalf("DeadLetter to an unbound exchange = %v, want a no-queue error", err)
	}
	if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := src.DeadLetter(t.Context(), msgs); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	d, ok, err := ch.Get(dlq, true)
	if err != nil || !ok || string(d.Body) != "poison" || d.MessageId != "a" || d.ContentType != "text/plain" {
		t.Fatalf("dead-letter queue holds %+v, %v, %v; want the poison message", d, ok, err)
	}
	plain := source(t, brokerURL(), dlq)
	if err := plain.DeadLetter(t.Context(), msgs); !errors.Is(err, trigger.ErrNoDeadLetter) {
		t.Errorf("DeadLetter without an exchange = %v, want ErrNoDeadLetter", err)
	}
}

// BenchmarkThroughput measures messages/s from a queue into a no-op sink
// with batches of 100.
func BenchmarkThroughput(b *testing.B) {
	c := broker(b)
	q := queue(b, c)
	publish(b, c, q, 0, b.N)
	sink := &countSink{}
	b.ResetTimer()
	stop := triggertest.Run(b, source(b, brokerURL(), q), sink, triggertest.Options(100, 5*time.Millisecond))
	for sink.n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// countSink counts what it is given.
type countSink struct{ n atomic.Int64 }

func (s *countSink) Deliver(_ context.Context, batch []trigger.Message) error {
	s.n.Add(int64(len(batch)))
	return nil
}
