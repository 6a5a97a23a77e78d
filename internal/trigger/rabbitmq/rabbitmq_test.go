package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
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

func TestThousandMessages(t *testing.T) {
	c := broker(t)
	q := queue(t, c)
	publish(t, c, q, 0, 1000)
	sink := &triggertest.Sink{}
	o := triggertest.Options(50, 10*time.Millisecond)
	stop := triggertest.Run(t, source(t, brokerURL(), q), sink, o)
	sink.WaitDistinct(t, 1000, 20*time.Second)
	triggertest.WaitFor(t, "1000 acknowledged", func() bool { return o.Status.View().Delivered == 1000 })
	stop()
	msgs := sink.Messages()
	if len(msgs) != 1000 {
		t.Errorf("delivered %d messages, want 1000 (no duplicates without failures)", len(msgs))
	}
	triggertest.InOrder(t, msgs)
	for _, b := range sink.Batches() {
		if len(b) > 50 {
			t.Fatalf("batch of %d, want at most 50", len(b))
		}
	}
	v := o.Status.View()
	if v.Delivered != 1000 || v.Lag == nil {
		t.Errorf("status = %+v, want 1000 delivered and a lag", v)
	}
}

func TestMessageFields(t *testing.T) {
	c := broker(t)
	q := queue(t, c)
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	at := time.Unix(1700000000, 0)
	pubs := []amqp.Publishing{
		{Body: []byte(`{"a":1}`), MessageId: "id-1", Timestamp: at, CorrelationId: "c1"},
		{Body: []byte{0xff, 0x00}},
		{Body: []byte("hello"), ContentType: "text/plain"},
	}
	for _, p := range pubs {
		if err := ch.PublishWithContext(t.Context(), "", q, false, false, p); err != nil {
			t.Fatal(err)
		}
	}
	sink := &triggertest.Sink{}
	stop := triggertest.Run(t, source(t, brokerURL(), q), sink, triggertest.Options(10, 0))
	sink.WaitDistinct(t, 3, 10*time.Second)
	stop()
	m := sink.Messages()
	if m[0].ID != "id-1" || !m[0].Time.Equal(at) || m[0].DataContentType != "application/json" ||
		m[0].Extensions["correlationid"] != "c1" {
		t.Errorf("message 0 = %+v", m[0])
	}
	if m[1].DataContentType != "application/octet-stream" || m[1].ID == "" || m[1].ID == m[2].ID {
		t.Errorf("message 1 = %+v", m[1])
	}
	if m[2].DataContentType != "text/plain" {
		t.Errorf("message 2 content type = %q, want text/plain", m[2].DataContentType)
	}
	want := "rabbitmq://127.0.0.1:5672/" + q
	if !strings.HasPrefix(brokerURL(), "amqp://guest:guest@127.0.0.1:5672/") {
		want = m[0].Source
	}
	for _, x := range m {
		if x.Source != want || x.Type != EventType || x.Subject != q || x.Key != "" || x.Extensions["redelivered"] != false {
			t.Errorf("message = %+v, want source %s, type %s, subject %s and no key", x, want, EventType, q)
		}
	}
}

func TestDeliverFailureRedelivers(t *testing.T) {
	c := broker(t)
	q := queue(t, c)
	publish(t, c, q, 0, 100)
	var failures atomic.Int32
	sink := &triggertest.Sink{Fail: func(batch []trigger.Message) error {
		for _, m := range batch {
			if string(m.Data) == triggertest.Body(42) && failures.Add(1) <= 2 {
				return triggertest.ErrRefused
			}
		}
		return nil
	}}
	o := triggertest.Options(10, 5*time.Millisecond)
	stop := triggertest.Run(t, source(t, brokerURL(), q), sink, o)
	sink.WaitDistinct(t, 100, 20*time.Second)
	stop()
	if failures.Load() < 3 {
		t.Errorf("batch with %s was tried %d times, want 3 (two refusals)", triggertest.Body(42), failures.Load())
	}
	msgs := sink.Messages()
	triggertest.InOrder(t, msgs)
	for _, m := range msgs {
		if string(m.Data) == triggertest.Body(42) && m.Extensions["redelivered"] != true {
			t.Errorf("%s delivered with redelivered=%v, want true", m.Data, m.Extensions["redelivered"])
		}
	}
}

func TestBatching(t *testing.T) {
	c := broker(t)
	t.Run("size", func(t *testing.T) {
		q := queue(t, c)
		publish(t, c, q, 0, 20)
		sink := &triggertest.Sink{}
		stop := triggertest.Run(t, source(t, brokerURL(), q), sink, triggertest.Options(5, time.Hour))
		sink.WaitDistinct(t, 20, 10*time.Second)
		stop()
		for _, b := range sink.Batches() {
			if len(b) != 5 {
				t.Errorf("batch of %d, want 5 (a full batch ends the window)", len(b))
			}
		}
	})
	t.Run("window", func(t *testing.T) {
		q := queue(t, c)
		publish(t, c, q, 0, 3)
		sink := &triggertest.Sink{}
		stop := triggertest.Run(t, source(t, brokerURL(), q), sink, triggertest.Options(100, 20*time.Millisecond))
		sink.WaitDistinct(t, 3, 10*time.Second)
		stop()
		if n := len(sink.Messages()); n != 3 {
			t.Errorf("delivered %d, want 3 in batches smaller than 100 once the window ended", n)
		}
	})
}

func TestLostConnection(t *testing.T) {
	for _, concurrency := range []int{1, 4} {
		t.Run(fmt.Sprintf("concurrency %d", concurrency), func(t *testing.T) {
			c := broker(t)
			q := queue(t, c)
			publish(t, c, q, 0, 1000)
			uri, err := amqp.ParseURI(brokerURL())
			if err != nil {
				t.Fatal(err)
			}
			proxy := triggertest.NewProxy(t, net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)))
			var cut atomic.Bool
			sink := &triggertest.Sink{Fail: func(batch []trigger.Message) error {
				for _, m := range batch {
					if string(m.Data) == triggertest.Body(300) && !cut.Swap(true) {
						proxy.Cut() // mid-batch: this batch's ack is lost
					}
				}
				return nil
			}}
			o := triggertest.Options(20, 5*time.Millisecond)
			o.Concurrency = concurrency
			stop := triggertest.Run(t, source(t, proxyURL(t, proxy), q), sink, o)
			triggertest.WaitFor(t, "an Error status after the cut", func() bool { return o.Status.View().State == trigger.StateError })
			if sink.Distinct() >= 1000 {
				t.Fatal("everything was delivered before the cut")
			}
			proxy.Restore()
			sink.WaitDistinct(t, 1000, 20*time.Second)
			triggertest.WaitFor(t, "an Active status", func() bool { return o.Status.View().State == trigger.StateActive })
			stop()
			if concurrency == 1 {
				triggertest.InOrder(t, sink.Messages())
			}
		})
	}
}

func proxyURL(t testing.TB, p *triggertest.Proxy) string {
	t.Helper()
	uri, err := amqp.ParseURI(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(p.Addr())
	uri.Host, uri.Port = host, mustAtoi(port)
	return uri.String()
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func TestCrashRedelivers(t *testing.T) {
	c := broker(t)
	q := queue(t, c)
	publish(t, c, q, 0, 200)
	refuse := func([]trigger.Message) error { return triggertest.ErrRefused }
	for name, sink := range map[string]*blockSink{"blocked": {}, "failing": {fail: refuse}} {
		sink.entered = make(chan struct{})
		stop := triggertest.Run(t, source(t, brokerURL(), q), sink, triggertest.Options(10, 0))
		select {
		case <-sink.entered:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s sink never called", name)
		}
		stop() // a crash: nothing was acknowledged
	}
	sink := &triggertest.Sink{}
	stop := triggertest.Run(t, source(t, brokerURL(), q), sink, triggertest.Options(10, 0))
	sink.WaitDistinct(t, 200, 20*time.Second)
	stop()
	triggertest.InOrder(t, sink.Messages())
}

// blockSink blocks until ctx ends, or fails with fail when set.
type blockSink struct {
	entered chan struct{}
	once    sync.Once
	fail    func([]trigger.Message) error
}

func (s *blockSink) Deliver(ctx context.Context, batch []trigger.Message) error {
	s.once.Do(func() { close(s.entered) })
	if s.fail != nil {
		return s.fail(batch)
	}
	<-ctx.Done()
	return ctx.Err()
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
