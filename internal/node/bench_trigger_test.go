package node_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// triggerNode is a node with the no-op Go function deployed.
func triggerNode(b *testing.B) *node.Node {
	b.Helper()
	n := nodetest.Start(b, nil)
	deploy(b, n, lambdaClient(n), goFunction(b, "noop"))
	return n
}

// addTrigger creates the trigger "in" on noop.
func addTrigger(b *testing.B, n *node.Node, typ string, config any, batch int) {
	b.Helper()
	body, _ := json.Marshal(map[string]any{"name": "in", "type": typ, "config": config, "batchSize": batch, "batchWindow": "10ms"})
	resp, err := http.Post(nodetest.Endpoint(n)+"/nimbus/v1/functions/noop/triggers", "application/json", strings.NewReader(string(body)))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		b.Fatalf("create trigger: %d", resp.StatusCode)
	}
}

// delivered reads the trigger's delivered count.
func delivered(b *testing.B, hc *http.Client, n *node.Node) int64 {
	resp, err := hc.Get(nodetest.Endpoint(n) + "/nimbus/v1/functions/noop/triggers/in")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var t struct {
		Status struct {
			State     string `json:"state"`
			Reason    string `json:"reason"`
			Delivered int64  `json:"delivered"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		b.Fatal(err)
	}
	if t.Status.State == "Error" {
		b.Fatalf("trigger error: %s", t.Status.Reason)
	}
	return t.Status.Delivered
}

// waitDelivered polls until the trigger delivered want messages.
func waitDelivered(b *testing.B, hc *http.Client, n *node.Node, want int64, poll time.Duration) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for delivered(b, hc, n) < want {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d after 5 minutes", delivered(b, hc, n), want)
		}
		time.Sleep(poll)
	}
}

// sharedJetStream connects to the machine's NATS, skipping without it.
func sharedJetStream(b *testing.B) (*nats.Conn, jetstream.JetStream) {
	b.Helper()
	if c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second); err != nil {
		testenv.Unavailable(b, "NATS", "127.0.0.1:4222", err)
	} else {
		c.Close()
	}
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return nc, js
}

func stream(b *testing.B, js jetstream.JetStream) string {
	b.Helper()
	name := fmt.Sprintf("nimbus-bench-%d", rand.Int64())
	if _, err := js.CreateStream(b.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = js.DeleteStream(b.Context(), name) })
	return name
}

// BenchmarkTriggerThroughput measures messages per second from a broker
// into the no-op Go function through a trigger with batches of 100
// (target >= 5,000/s): b.N messages are published first, then the trigger
// is created and timed until it has delivered them all. Baseline: a plain
// client of the same broker reading the same messages, in the same run.
func BenchmarkTriggerThroughput(b *testing.B) {
	msg := []byte(`{"order":12345,"item":"book"}`)
	b.Run("kafka/baseline-consumer", func(b *testing.B) {
		cluster := kafkaWith(b, b.N, msg)
		cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("bench"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		b.ResetTimer()
		for got := 0; got < b.N; {
			got += cl.PollFetches(b.Context()).NumRecords()
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("kafka/nimbus", func(b *testing.B) {
		cluster := kafkaWith(b, b.N, msg)
		n := triggerNode(b)
		hc := httpClient(b, 1)
		b.ResetTimer()
		addTrigger(b, n, "kafka", map[string]any{"brokers": cluster.ListenAddrs(), "topic": "bench", "startPosition": "TRIM_HORIZON"}, 100)
		waitDelivered(b, hc, n, int64(b.N), 5*time.Millisecond)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("nats-jetstream/baseline-consumer", func(b *testing.B) {
		_, js := sharedJetStream(b)
		name := stream(b, js)
		publishJS(b, js, name, b.N, msg)
		cons, err := js.OrderedConsumer(b.Context(), name, jetstream.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		it, err := cons.Messages()
		if err != nil {
			b.Fatal(err)
		}
		for range b.N {
			if _, err := it.Next(); err != nil {
				b.Fatal(err)
			}
		}
		it.Stop()
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("nats-jetstream/nimbus", func(b *testing.B) {
		_, js := sharedJetStream(b)
		name := stream(b, js)
		publishJS(b, js, name, b.N, msg)
		n := triggerNode(b)
		hc := httpClient(b, 1)
		b.ResetTimer()
		addTrigger(b, n, "nats", map[string]any{"url": "nats://127.0.0.1:4222", "stream": name, "startPosition": "TRIM_HORIZON"}, 100)
		waitDelivered(b, hc, n, int64(b.N), 5*time.Millisecond)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// kafkaWith starts an in-process Kafka (kfake) holding n messages on
// "bench" (4 partitions).
func kafkaWith(b *testing.B, n int, msg []byte) *kfake.Cluster {
	b.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cluster.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("bench"))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	for i := range n {
		cl.Produce(b.Context(), &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: msg}, nil)
	}
	if err := cl.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	return cluster
}

func publishJS(b *testing.B, js jetstream.JetStream, name string, n int, msg []byte) {
	b.Helper()
	for range n {
		if _, err := js.PublishAsync(name+".m", msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish did not complete")
	}
}

// BenchmarkTriggerLatency measures, without batching, the time from a
// publish to NATS JetStream until the no-op Go function has run the
// message through a trigger (publish to delivered, which is later than
// the function's start; target p50 <= 5 ms), one message at a time, beside
// a plain JetStream subscriber's publish-to-receive latency in the same
// run.
func BenchmarkTriggerLatency(b *testing.B) {
	msg := []byte(`{"order":12345}`)
	b.Run("nats-jetstream/baseline-subscriber", func(b *testing.B) {
		_, js := sharedJetStream(b)
		name := stream(b, js)
		cons, err := js.OrderedConsumer(b.Context(), name, jetstream.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages()
		if err != nil {
			b.Fatal(err)
		}
		defer it.Stop()
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			began := time.Now()
			if _, err := js.Publish(b.Context(), name+".m", msg); err != nil {
				b.Fatal(err)
			}
			if _, err := it.Next(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(began))
		}
		reportLatency(b, lat, "ms")
	})
	b.Run("nats-jetstream/nimbus", func(b *testing.B) {
		_, js := sharedJetStream(b)
		name := stream(b, js)
		n := triggerNode(b)
		hc := httpClient(b, 1)
		addTrigger(b, n, "nats", map[string]any{"url": "nats://127.0.0.1:4222", "stream": name, "startPosition": "TRIM_HORIZON"}, 1)
		// Warm: the trigger is connected and an instance runs.
		if _, err := js.Publish(b.Context(), name+".m", msg); err != nil {
			b.Fatal(err)
		}
		waitDelivered(b, hc, n, 1, time.Millisecond)
		lat := make([]time.Duration, 0, b.N)
		want := int64(1)
		for b.Loop() {
			began := time.Now()
			if _, err := js.Publish(b.Context(), name+".m", msg); err != nil {
				b.Fatal(err)
			}
			want++
			for delivered(b, hc, n) < want {
				time.Sleep(100 * time.Microsecond)
			}
			lat = append(lat, time.Since(began))
		}
		reportLatency(b, lat, "ms")
	})
}
