package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// brokerAddr is the shared Mosquitto (NIMBUS_MQTT_ADDR overrides).
func brokerAddr() string {
	if a := os.Getenv("NIMBUS_MQTT_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:1883"
}

// dial connects to the broker at addr, skipping the test when it is not
// reachable (failing it with NIMBUS_REQUIRE_SERVICES=1).
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		testenv.Unavailable(t, "MQTT broker", addr, err)
	}
	return conn
}

// client connects an MQTT 5 client to addr; handler, when set, receives
// messages.
func client(t testing.TB, addr, id string, clean bool, handler func(*paho.Publish)) *paho.Client {
	t.Helper()
	conn := dial(t, addr)
	cfg := paho.ClientConfig{ClientID: id, Conn: conn}
	if handler != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			handler(pr.Packet)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	var expiry uint32
	if _, err := c.Connect(t.Context(), &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		t.Fatalf("connect to MQTT broker: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// forget deletes the broker's session of clientID when the test ends. It
// skips the test at once when there is no broker.
func forget(t testing.TB, clientID string) {
	dial(t, brokerAddr()).Close()
	t.Cleanup(func() {
		conn, err := net.DialTimeout("tcp", brokerAddr(), 2*time.Second)
		if err != nil {
			return
		}
		c := paho.NewClient(paho.ClientConfig{ClientID: clientID, Conn: conn})
		var expiry uint32
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
			t.Logf("forget session %s: %v", clientID, err)
			conn.Close()
			return
		}
		_ = c.Disconnect(&paho.Disconnect{})
	})
}

// publish sends bodies m-<from>..m-<to-1> at QoS 1, in order, and waits for
// the broker to take all of them.
func publish(t testing.TB, topic string, from, to int) {
	t.Helper()
	c := client(t, brokerAddr(), "nimbus-test-pub-"+randomID(), true, nil)
	for i := from; i < to; i++ {
		method := paho.PublishMethod_AsyncSend
		if i == to-1 {
			method = paho.PublishMethod_Blocking // PUBACK of the last: the broker has them all
		}
		p := &paho.Publish{QoS: 1, Topic: topic, Payload: []byte(triggertest.Body(i))}
		if _, err := c.PublishWithOptions(t.Context(), p, paho.PublishOptions{Method: method}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

// topic is a fresh topic root for the test.
func topic() string { return "nimbus-test/" + randomID() }

// source builds a Source for filter at addr as clientID, with short timings;
// its session is deleted when the test ends.
func source(t testing.TB, addr, filter, clientID string) *Source {
	t.Helper()
	raw, _ := json.Marshal(Config{URL: "mqtt://" + addr, Topic: filter, ClientID: clientID, SessionExpirySeconds: 300})
	s, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	s.minBackoff, s.maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	forget(t, clientID)
	return s
}

// start starts src; the returned stop cancels it and checks Run returned nil.
func start(t testing.TB, src trigger.Source, sink trigger.Sink, opts trigger.Options) (stop func()) {
	t.Helper()
	return triggertest.Run(t, src, sink, opts)
}

// run starts src and waits until it subscribed; the returned stop cancels
// it and checks Run returned nil.
func run(t testing.TB, src trigger.Source, sink trigger.Sink, opts trigger.Options) (stop func()) {
	t.Helper()
	stop = start(t, src, sink, opts)
	subscribed(t, opts)
	return stop
}

// subscribed waits for the source's subscription.
func subscribed(t testing.TB, opts trigger.Options) {
	t.Helper()
	triggertest.WaitFor(t, "the subscription", func() bool { return opts.Status.View().State == trigger.StateActive })
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"not json", `{"url":`, "mqtt trigger config"},
		{"unknown field", `{"url":"mqtt://h","topic":"a","qso":1}`, `unknown field "qso"`},
		{"wrong type", `{"url":"mqtt://h","topic":"a","shared":"yes"}`, "shared"},
		{"no url", `{"topic":"a"}`, "url is required"},
		{"bad url", `{"url":"mqtt://u:secret@[::1","topic":"a"}`, "url is not a valid URL"},
		{"no host", `{"url":"mqtt:///x","topic":"a"}`, "url is not a valid URL"},
		{"bad scheme", `{"url":"http://u:secret@h","topic":"a"}`, "url scheme must be"},
		{"no topic", `{"url":"mqtt://h"}`, "topic is required"},
		{"hash not last", `{"url":"mqtt://h","topic":"a/#/b"}`, "# must be a whole level and the last"},
		{"hash in level", `{"url":"mqtt://h","topic":"a/b#"}`, "# must be a whole level"},
		{"plus in level", `{"url":"mqtt://h","topic":"a/b+/c"}`, "+ must be a whole level"},
		{"share prefix", `{"url":"mqtt://h","topic":"$share/g/a"}`, `set "shared": true`},
		{"nul", `{"url":"mqtt://h","topic":"a\u0000b"}`, "without NUL"},
		{"qos 2", `{"url":"mqtt://h","topic":"a","qos":2}`, "qos must be 0 or 1"},
		{"negative expiry", `{"url":"mqtt://h","topic":"a","sessionExpirySeconds":-1}`, "sessionExpirySeconds"},
		{"huge expiry", `{"url":"mqtt://h","topic":"a","sessionExpirySeconds":4294967296}`, "sessionExpirySeconds"},
		{"huge receive max", `{"url":"mqtt://h","topic":"a","receiveMaximum":70000}`, "receiveMaximum must be"},
		{"wildcard dlq", `{"url":"mqtt://h","topic":"a","deadLetterTopic":"d/#"}`, "deadLetterTopic must not contain wildcards"},
		{"bad orderBy", `{"url":"mqtt://h","topic":"a","orderBy":"key"}`, `orderBy must be "topic" or "none", got "key"`},
		{"orderBy case", `{"url":"mqtt://h","topic":"a","orderBy":"Topic"}`, `orderBy must be "topic" or "none"`},
		{"orderBy type", `{"url":"mqtt://h","topic":"a","orderBy":1}`, "orderBy"},
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
	src, err := New(json.RawMessage(`{"url":"mqtt://u:p@h","topic":"a/+/#","qos":0,"shared":false}`))
	if err != nil {
		t.Fatalf("valid config: %v", err)
	}
	s := src.(*Source)
	if s.source != "mqtt://h:1883/a%2F+%2F%23" || s.user != "u" || s.password != "p" || s.server.User != nil || s.qos != 0 {
		t.Errorf("source = %+v", s)
	}
	set := s.settings(trigger.Options{Group: "fn/t#1", BatchSize: 10})
	if set.filter != "a/+/#" || set.receiveMax != 20 || !strings.HasPrefix(set.clientID, "fn_t_1-") {
		t.Errorf("settings = %+v, want no $share, receive maximum 20, client id from the group", set)
	}
	s.shared = true
	if got := s.settings(trigger.Options{Group: "g"}).filter; got != "$share/g/a/+/#" {
		t.Errorf("shared filter = %q", got)
	}
	if !s.ordered {
		t.Error("orderBy defaults to none, want topic")
	}
	none, err := newSource(json.RawMessage(`{"url":"mqtt://h","topic":"a","orderBy":"none"}`))
	if err != nil || none.ordered {
		t.Errorf("orderBy none: source %+v, err %v; want unordered", none, err)
	}
}

func TestReceiveMaximum(t *testing.T) {
	tests := []struct {
		name                          string
		configured, size, concurrency int
		want                          int
	}{
		{"default, one worker", 0, 10, 1, 20},
		{"default grows with concurrency", 0, 10, 4, 50},
		{"default capped", 0, 1000, 100, 65535},
		{"huge options capped", 0, 1 << 40, 1 << 40, 65535},
		{"configured", 300, 10, 4, 300},
		{"configured below a batch", 5, 10, 4, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := receiveMaximum(tt.configured, tt.size, tt.concurrency); got != tt.want {
				t.Errorf("receiveMaximum(%d, %d, %d) = %d, want %d", tt.configured, tt.size, tt.concurrency, got, tt.want)
			}
		})
	}
	raw := json.RawMessage(`{"url":"mqtt://h","topic":"a"}`)
	s, _ := newSource(raw)
	if got := s.settings(trigger.Options{BatchSize: 10, Concurrency: 4}).receiveMax; got != 50 {
		t.Errorf("settings receiveMax = %d, want 50 (BatchSize×(Concurrency+1))", got)
	}
	if got := s.settings(trigger.Options{}).receiveMax; got != 2 {
		t.Errorf("settings receiveMax without options = %d, want 2 (batch 1, one worker)", got)
	}
}

// TestContentTypeProperty checks that an MQTT 5 content type is the
// message's (the suite checks messages without one).
func TestContentTypeProperty(t *testing.T) {
	root := topic()
	sink := &triggertest.Sink{}
	stop := run(t, source(t, brokerAddr(), root+"/+", "nimbus-test-"+randomID()), sink, triggertest.Options(10, 0))
	pub := client(t, brokerAddr(), "nimbus-test-pub-"+randomID(), true, nil)
	p := &paho.Publish{QoS: 1, Topic: root + "/t", Payload: []byte(`{"a":1}`), Properties: &paho.PublishProperties{ContentType: "text/plain"}}
	if _, err := pub.Publish(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	sink.WaitDistinct(t, 1, 10*time.Second)
	stop()
	if m := sink.Messages()[0]; m.DataContentType != "text/plain" {
		t.Errorf("content type %q, want the property's, text/plain", m.DataContentType)
	}
}

func TestSharedSubscription(t *testing.T) {
	root := topic()
	a, b := &triggertest.Sink{}, &triggertest.Sink{}
	oa, ob := triggertest.Options(10, 0), triggertest.Options(10, 0)
	oa.Group = "g" + randomID()
	ob.Group = oa.Group
	stopA := run(t, source(t, brokerAddr(), root, "nimbus-test-a-"+randomID()), a, oa)
	stopB := run(t, source(t, brokerAddr(), root, "nimbus-test-b-"+randomID()), b, ob)
	publish(t, root, 0, 200)
	triggertest.WaitFor(t, "200 messages between the two", func() bool { return a.Distinct()+b.Distinct() >= 200 })
	triggertest.WaitFor(t, "200 acknowledged", func() bool { return oa.Status.View().Delivered+ob.Status.View().Delivered >= 200 })
	stopA()
	stopB()
	seen := map[string]bool{}
	for _, m := range append(a.Messages(), b.Messages()...) {
		if seen[string(m.Data)] {
			t.Errorf("%s delivered to both members of the group", m.Data)
		}
		seen[string(m.Data)] = true
	}
	if len(seen) != 200 || a.Distinct() == 0 || b.Distinct() == 0 {
		t.Errorf("the group received %d messages, split %d/%d; want 200 split between both", len(seen), a.Distinct(), b.Distinct())
	}
}

func TestForget(t *testing.T) {
	root, id := topic(), "nimbus-test-"+randomID()
	o := triggertest.Options(10, 0)
	stop := run(t, source(t, brokerAddr(), root, id), &triggertest.Sink{}, o)
	stop()
	publish(t, root, 0, 5) // queued for the stopped node's session
	if err := source(t, brokerAddr(), root, id).Forget(t.Context(), o); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	sink := &triggertest.Sink{}
	stop = run(t, source(t, brokerAddr(), root, id), sink, triggertest.Options(10, 0))
	publish(t, root, 5, 6)
	sink.WaitDistinct(t, 1, 10*time.Second)
	stop()
	if m := sink.Messages(); string(m[0].Data) != triggertest.Body(5) {
		t.Errorf("first message after Forget = %s, want %s: the old session's messages are gone", m[0].Data, triggertest.Body(5))
	}
}

func TestDeadLetter(t *testing.T) {
	dlq := topic() + "/dlq"
	got := make(chan *paho.Publish, 1)
	sub := client(t, brokerAddr(), "nimbus-test-sub-"+randomID(), true, func(p *paho.Publish) { got <- p })
	if _, err := sub.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: dlq, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(Config{URL: "mqtt://" + brokerAddr(), Topic: "x", DeadLetterTopic: dlq})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []trigger.Message{{ID: "e1", Data: []byte("poison"), DataContentType: "text/plain", Subject: "x"}}
	if err := src.DeadLetter(t.Context(), msgs); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	select {
	case p := <-got:
		if string(p.Payload) != "poison" || p.Properties.ContentType != "text/plain" || p.Properties.User.Get("id") != "e1" {
			t.Errorf("dead letter = %+v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no dead letter arrived")
	}
	raw, _ = json.Marshal(Config{URL: "mqtt://" + brokerAddr(), Topic: "x"})
	plain, _ := newSource(raw)
	if err := plain.DeadLetter(t.Context(), msgs); !errors.Is(err, trigger.ErrNoDeadLetter) {
		t.Errorf("DeadLetter without a topic = %v, want ErrNoDeadLetter", err)
	}
}

// BenchmarkThroughput measures messages/s from publish to a no-op sink
// with batches of 100, one at a time.
func BenchmarkThroughput(b *testing.B) {
	root := topic()
	sink := &countSink{}
	o := triggertest.Options(100, 5*time.Millisecond)
	stop := run(b, source(b, brokerAddr(), root, "nimbus-bench-"+randomID()), sink, o)
	b.ResetTimer()
	publish(b, root, 0, b.N)
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
