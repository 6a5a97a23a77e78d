package api_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// pyBatch reports the events whose data is {"poison": true} as failed, in
// Lambda's partial batch response.
const pyBatch = `def handler(event, context):
    events = event if isinstance(event, list) else [event]
    bad = [{"itemIdentifier": e["id"]} for e in events if (e.get("data") or {}).get("poison")]
    return {"batchItemFailures": bad}
`

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestTriggerDeliveryEndToEnd runs the whole path on a real node: a Kafka
// topic (kfake) -> the kafka trigger's source -> the Sink -> a Python
// function that fails one poison message through a partial batch response
// -> the retries -> the failure destination (a NATS subject on the node's
// embedded server), with the counts in the trigger's status.
func TestTriggerDeliveryEndToEnd(t *testing.T) {
	natsAddr := freeAddr(t)
	n := nodetest.Start(t, func(c *node.Config) { c.NATSListen = natsAddr })
	c := client(n)
	createPy(t, c, "batcher", nodetest.Zip(t, map[string]string{"app.py": pyBatch}))
	waitActive(t, c, "batcher")

	const topic = "orders"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	failed := make(chan *nats.Msg, 10)
	sub, err := nc.ChanSubscribe("trigtest.failed", failed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	const total = 50
	produce(t, cluster.ListenAddrs(), topic, total)
	brokers, _ := json.Marshal(cluster.ListenAddrs())
	base := nodetest.Endpoint(n) + "/nimbus/v1/functions/batcher/triggers"
	callJSON[api.TriggerView](t, "POST", base, fmt.Sprintf(`{"name":"orders","type":"kafka",
		"config":{"brokers":%s,"topic":%q,"startPosition":"TRIM_HORIZON"},
		"batchSize":10,"maxRetries":1,"failureDestination":"nats:trigtest.failed"}`, brokers, topic), http.StatusCreated)

	deadline := time.Now().Add(60 * time.Second)
	var v api.TriggerView
	for {
		v = callJSON[api.TriggerView](t, "GET", base+"/orders", "", http.StatusOK)
		if v.Status.Delivered+v.Status.Failed >= total+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v.Status.Delivered != total || v.Status.Failed != 1 || v.Status.LastEvent.IsZero() {
		t.Fatalf("status: got %+v, want %d delivered and 1 failed", v.Status, total)
	}
	select {
	case m := <-failed:
		var rec struct {
			RequestContext struct {
				Condition              string `json:"condition"`
				ApproximateInvokeCount int    `json:"approximateInvokeCount"`
			} `json:"requestContext"`
			RequestPayload struct {
				SpecVersion string         `json:"specversion"`
				Data        map[string]any `json:"data"`
			} `json:"requestPayload"`
		}
		if err := json.Unmarshal(m.Data, &rec); err != nil {
			t.Fatalf("failure record: %v: %s", err, m.Data)
		}
		if rec.RequestContext.Condition != "RetriesExhausted" || rec.RequestContext.ApproximateInvokeCount != 2 ||
			rec.RequestPayload.SpecVersion != "1.0" || rec.RequestPayload.Data["poison"] != true {
			t.Errorf("failure record: got %s", m.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no failure record on the NATS subject")
	}

	// Deleting the trigger deletes its consumer group (and offsets) too.
	group := trigger.GroupName("batcher", "orders")
	if !hasGroup(t, cluster.ListenAddrs(), group) {
		t.Fatalf("no consumer group %s while the trigger runs", group)
	}
	if status, raw, _ := call(t, "DELETE", base+"/orders", ""); status != http.StatusNoContent {
		t.Fatalf("delete trigger: %d %s", status, raw)
	}
	for hasGroup(t, cluster.ListenAddrs(), group) {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("consumer group %s still there after the trigger was deleted", group)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hasGroup reports whether the Kafka cluster has consumer group name.
func hasGroup(t *testing.T, brokers []string, name string) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	groups, err := kadm.NewClient(cl).ListGroups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_, ok := groups[name]
	return ok
}

// produce writes total JSON messages to topic, one of them poison.
func produce(t *testing.T, brokers []string, topic string, total int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range total {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i%5), Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	recs = append(recs, &kgo.Record{Key: []byte("k0"), Value: []byte(`{"poison":true}`)})
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
