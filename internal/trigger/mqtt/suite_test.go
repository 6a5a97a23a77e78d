package mqtt

import (
	"encoding/json"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// TestSourceSuite runs the message source conformance suite on MQTT with
// the default order (per topic).
func TestSourceSuite(t *testing.T) {
	triggertest.RunSourceSuite(t, triggertest.Harness{Setup: setupTarget, Ordered: true, DeadLetter: true})
}

// target is a fresh topic root, subscribed to as root/+ by one client id
// (a persistent session), with a dead-letter topic of its own.
type target struct {
	root, clientID, dlq string

	mu   sync.Mutex
	sub  bool     // the dead-letter topic is subscribed to
	dead [][]byte // what arrived there
}

func setupTarget(t *testing.T) triggertest.Target {
	tg := &target{root: topic(), clientID: "nimbus-test-" + randomID(), dlq: topic() + "/dlq"}
	forget(t, tg.clientID) // skips the test without a broker
	return tg
}

func (tg *target) Addr() string { return brokerAddr() }

func (tg *target) Source(t *testing.T, s triggertest.SourceSetup) trigger.Source {
	addr := brokerAddr()
	if s.Via != "" {
		addr = s.Via
	}
	cfg := Config{URL: "mqtt://" + addr, Topic: tg.root + "/+", ClientID: tg.clientID, SessionExpirySeconds: 300}
	if s.DeadLetter {
		cfg.DeadLetterTopic = tg.dlq
		tg.subscribeDeadLetters(t)
	}
	raw, _ := json.Marshal(cfg)
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	src.minBackoff, src.maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	return src
}

// subscribeDeadLetters collects what arrives on the dead-letter topic from
// now on.
func (tg *target) subscribeDeadLetters(t *testing.T) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if tg.sub {
		return
	}
	tg.sub = true
	c := client(t, brokerAddr(), "nimbus-test-dlq-"+randomID(), true, func(p *paho.Publish) {
		tg.mu.Lock()
		tg.dead = append(tg.dead, p.Payload)
		tg.mu.Unlock()
	})
	if _, err := c.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: tg.dlq, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
}

// Publish sends bodies at QoS 1 to root/k<i%keys>, in order, and waits for
// the broker to take the last.
func (tg *target) Publish(t *testing.T, keys int, bodies ...[]byte) {
	t.Helper()
	c := client(t, brokerAddr(), "nimbus-test-pub-"+randomID(), true, nil)
	for i, b := range bodies {
		method := paho.PublishMethod_AsyncSend
		if i == len(bodies)-1 {
			method = paho.PublishMethod_Blocking
		}
		p := &paho.Publish{QoS: 1, Topic: tg.root + "/k" + strconv.Itoa(i%keys), Payload: b}
		if _, err := c.PublishWithOptions(t.Context(), p, paho.PublishOptions{Method: method}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

func (tg *target) DeadLetters(*testing.T) [][]byte {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([][]byte(nil), tg.dead...)
}

func (tg *target) Check(t *testing.T, m trigger.Message) {
	t.Helper()
	if want := "mqtt://" + brokerAddr() + "/" + url.PathEscape(tg.root+"/+"); m.Source != want {
		t.Errorf("source %q, want %q", m.Source, want)
	}
	if topic := tg.root + "/k0"; m.Type != EventType || m.Subject != topic || m.Key != topic {
		t.Errorf("type %q, subject %q, key %q; want %s and the topic %s as subject and key", m.Type, m.Subject, m.Key, EventType, topic)
	}
	if m.Extensions["qos"] != 1 || m.Extensions["retain"] != false || m.Extensions["redelivered"] != false {
		t.Errorf("extensions %v, want qos 1, retain and redelivered false", m.Extensions)
	}
}
