package kafka

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// TestSourceSuite runs the message source conformance suite on Kafka
// (kfake, in-process): order per partition, failures retried in place.
func TestSourceSuite(t *testing.T) {
	triggertest.RunSourceSuite(t, triggertest.Harness{Setup: setupTarget, Ordered: true})
}

// target is a cluster of its own with testTopic.
type target struct{ brokers []string }

func setupTarget(t *testing.T) triggertest.Target { return &target{brokers: cluster(t)} }

func (tg *target) Addr() string { return tg.brokers[0] }

// Source connects to the cluster, through via when set: every broker
// connection (the cluster advertises its own address) is dialled there.
func (tg *target) Source(t *testing.T, s triggertest.SourceSetup) trigger.Source {
	src := testSource(t, tg.brokers, StartTrimHorizon)
	if via := s.Via; via != "" {
		src.extra = append(src.extra, kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, via)
		}))
	}
	return src
}

// Publish writes body i to partition i%keys.
func (tg *target) Publish(t *testing.T, keys int, bodies ...[]byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(tg.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(bodies))
	for i, b := range bodies {
		recs[i] = &kgo.Record{Topic: testTopic, Partition: int32(i % keys), Value: b}
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (tg *target) DeadLetters(*testing.T) [][]byte { return nil } // Kafka has no dead-letter topic of its own

func (tg *target) Check(t *testing.T, m trigger.Message) {
	t.Helper()
	if want := "kafka://" + tg.brokers[0] + "/" + testTopic; m.Source != want {
		t.Errorf("source %q, want %q", m.Source, want)
	}
	if m.Type != EventType || m.Subject != testTopic || m.Key != "0" {
		t.Errorf("type %q, subject %q, key %q; want %s, the topic %s, partition 0", m.Type, m.Subject, m.Key, EventType, testTopic)
	}
	off, ok := m.Extensions["offset"].(int64)
	if m.Extensions["partition"] != int32(0) || !ok || m.ID != "0-"+strconv.FormatInt(off, 10) {
		t.Errorf("id %q, extensions %v; want partition 0 and the offset, id <partition>-<offset>", m.ID, m.Extensions)
	}
}
