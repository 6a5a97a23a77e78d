package nats

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// TestSourceSuite runs the message source conformance suite on core NATS
// and on JetStream, on the shared server; order is per subject.
func TestSourceSuite(t *testing.T) {
	t.Run("core", func(t *testing.T) {
		triggertest.RunSourceSuite(t, triggertest.Harness{
			Setup: setupCore, Ordered: true,
			AtMostOnce: "core NATS is at-most-once: the server keeps no message, so what a stopped " +
				"or disconnected node held, and what was published meanwhile, is lost",
		})
	})
	t.Run("jetstream", func(t *testing.T) {
		triggertest.RunSourceSuite(t, triggertest.Harness{
			Setup: setupJetStream, Ordered: true,
			Reorders: "JetStream redelivers a message negatively acknowledged after a failure, or held " +
				"by a pull request that was lost, after later messages of its subject",
		})
	})
}

// target is a fresh subject prefix on the shared server (and, for
// JetStream, a stream on prefix.>); messages go to prefix.k<key>.
type target struct {
	url, prefix string
	nc          *nats.Conn
	js          jetstream.JetStream
	stream      string // "": core NATS
}

func setupCore(t *testing.T) triggertest.Target {
	url := shared(t)
	nc, js := connect(t, url)
	return &target{url: url, prefix: unique("nimbustest"), nc: nc, js: js}
}

func setupJetStream(t *testing.T) triggertest.Target {
	url := shared(t)
	nc, js := connect(t, url)
	name, prefix := stream(t, js, jetstream.MemoryStorage)
	return &target{url: url, prefix: prefix, nc: nc, js: js, stream: name}
}

func (tg *target) Addr() string { return strings.TrimPrefix(tg.url, "nats://") }

func (tg *target) Source(t *testing.T, s triggertest.SourceSetup) trigger.Source {
	url := tg.url
	if s.Via != "" {
		url = "nats://" + s.Via
	}
	if tg.stream == "" {
		return testSource(t, Config{URL: url, Subject: tg.prefix + ".*"})
	}
	src := testSource(t, Config{URL: url, Stream: tg.stream, StartPosition: StartTrimHorizon})
	src.ackWait = 2 * time.Second // what a lost pull request held comes back soon
	return src
}

func (tg *target) Publish(t *testing.T, keys int, bodies ...[]byte) {
	t.Helper()
	for i, b := range bodies {
		subject := fmt.Sprintf("%s.k%d", tg.prefix, i%keys)
		var err error
		if tg.stream == "" {
			err = tg.nc.Publish(subject, b)
		} else {
			_, err = tg.js.PublishAsync(subject, b)
		}
		if err != nil {
			t.Fatal(err)
		}
		if tg.stream != "" && i%1000 == 999 {
			publishWait(t, tg.js)
		}
	}
	if tg.stream == "" {
		if err := tg.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return
	}
	publishWait(t, tg.js)
}

func (tg *target) DeadLetters(*testing.T) [][]byte { return nil } // NATS has no dead-letter subject of its own

func (tg *target) Check(t *testing.T, m trigger.Message) {
	t.Helper()
	where, subject := tg.prefix+".*", tg.prefix+".k0"
	if tg.stream != "" {
		where = tg.stream
	}
	if want := "nats://" + tg.Addr() + "/" + where; m.Source != want {
		t.Errorf("source %q, want %q", m.Source, want)
	}
	if m.Type != EventType || m.Subject != subject || m.Key != subject {
		t.Errorf("type %q, subject %q, key %q; want %s and the subject %s as subject and key", m.Type, m.Subject, m.Key, EventType, subject)
	}
	if tg.stream == "" {
		if m.Extensions != nil {
			t.Errorf("extensions %v, want none", m.Extensions)
		}
		return
	}
	seq, _ := m.Extensions["sequence"].(uint64)
	if m.Extensions["stream"] != tg.stream || fmt.Sprint(seq) != m.ID {
		t.Errorf("id %q, extensions %v; want the stream %s and its sequence, also as id", m.ID, m.Extensions, tg.stream)
	}
}
