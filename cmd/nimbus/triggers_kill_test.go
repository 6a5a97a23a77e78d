package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// recorder is a Python function that adds each event's "n" to a Redis set
// (over a raw socket: the function has no libraries), so the test can count
// what was processed whatever the duplicates. Redis is on the host's
// loopback, which only functions on the host's network reach: the nodes
// run with --function-network host.
const recorder = `import json, os, socket
KEY = os.environ["RESULT_KEY"].encode()
def sadd(members):
    parts = [b"SADD", KEY] + members
    cmd = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    s = socket.create_connection(("127.0.0.1", 6379))
    s.sendall(cmd)
    s.recv(64)
    s.close()
def handler(event, context):
    events = event if isinstance(event, list) else [event]
    sadd([str(e["data"]["n"]).encode() for e in events])
    return {"ok": len(events)}
`

// need skips (or, with NIMBUS_REQUIRE_SERVICES=1, fails) without a service.
func need(t *testing.T, name, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		testenv.Unavailable(t, name, addr, err)
	}
	c.Close()
}

// broker is one message source under test: the trigger to create and a
// way to publish message n.
type broker struct {
	typ     string
	config  func(t *testing.T, id string) any
	publish func(t *testing.T, id string, from, to int)
}

func body(n int) []byte { return []byte(fmt.Sprintf(`{"n":%d}`, n)) }

var brokers = map[string]broker{
	"rabbitmq": {
		typ: "rabbitmq",
		config: func(t *testing.T, id string) any {
			need(t, "RabbitMQ", "127.0.0.1:5672")
			conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
			if err != nil {
				t.Fatal(err)
			}
			ch, _ := conn.Channel()
			if _, err := ch.QueueDeclare(id, true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = ch.QueueDelete(id, false, false, false); conn.Close() })
			return map[string]any{"url": "amqp://guest:guest@127.0.0.1:5672/", "queue": id}
		},
		publish: func(t *testing.T, id string, from, to int) {
			conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ch, _ := conn.Channel()
			_ = ch.Confirm(false)
			for i := from; i < to; i++ {
				dc, err := ch.PublishWithDeferredConfirmWithContext(t.Context(), "", id, false, false,
					amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body(i)})
				if err != nil {
					t.Fatal(err)
				}
				if i == to-1 {
					dc.Wait()
				}
			}
		},
	},
	"redis": {
		typ: "redis",
		config: func(t *testing.T, id string) any {
			return map[string]any{"url": "redis://127.0.0.1:6379/0", "stream": id, "startPosition": "TRIM_HORIZON", "dataField": "data"}
		},
		publish: func(t *testing.T, id string, from, to int) {
			rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
			defer rc.Close()
			for i := from; i < to; i++ {
				if err := rc.XAdd(t.Context(), &redis.XAddArgs{Stream: id, Values: map[string]any{"data": string(body(i))}}).Err(); err != nil {
					t.Fatal(err)
				}
			}
		},
	},
	"nats-jetstream": {
		typ: "nats",
		config: func(t *testing.T, id string) any {
			need(t, "NATS", "127.0.0.1:4222")
			nc, err := nats.Connect("nats://127.0.0.1:4222")
			if err != nil {
				t.Fatal(err)
			}
			js, _ := jetstream.New(nc)
			if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: id, Subjects: []string{id + ".>"}}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = js.DeleteStream(context.Background(), id); nc.Close() })
			return map[string]any{"url": "nats://127.0.0.1:4222", "stream": id, "startPosition": "TRIM_HORIZON"}
		},
		publish: func(t *testing.T, id string, from, to int) {
			nc, err := nats.Connect("nats://127.0.0.1:4222")
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			for i := from; i < to; i++ {
				if _, err := js.Publish(t.Context(), id+".m", body(i)); err != nil {
					t.Fatal(err)
				}
			}
		},
	},
	"mqtt": {
		typ: "mqtt",
		config: func(t *testing.T, id string) any {
			need(t, "Mosquitto", "127.0.0.1:1883")
			return map[string]any{"url": "mqtt://127.0.0.1:1883", "topic": "nimbus-test/" + id, "qos": 1}
		},
		publish: func(t *testing.T, id string, from, to int) {
			conn, err := net.Dial("tcp", "127.0.0.1:1883")
			if err != nil {
				t.Fatal(err)
			}
			c := paho.NewClient(paho.ClientConfig{Conn: conn})
			if _, err := c.Connect(t.Context(), &paho.Connect{ClientID: "pub-" + id, CleanStart: true, KeepAlive: 30}); err != nil {
				t.Fatal(err)
			}
			defer c.Disconnect(&paho.Disconnect{})
			for i := from; i < to; i++ {
				if _, err := c.Publish(t.Context(), &paho.Publish{QoS: 1, Topic: "nimbus-test/" + id, Payload: body(i)}); err != nil {
					t.Fatal(err)
				}
			}
		},
	},
}

// TestTriggersSurviveSIGKILL sends 1,000 messages through each message
// trigger into a function, kills Nimbus with SIGKILL mid-stream, restarts
// it, and checks that all 1,000 were processed.
func TestTriggersSurviveSIGKILL(t *testing.T) {
	need(t, "Redis", "127.0.0.1:6379")
	// The killed node stays in the consumer group until its session times
	// out: a short one (the cluster allows it) saves the default 45 s.
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders"), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer kafka.Close()
	all := map[string]broker{}
	for k, v := range brokers {
		all[k] = v
	}
	all["kafka"] = broker{
		typ: "kafka",
		config: func(t *testing.T, id string) any {
			return map[string]any{"brokers": kafka.ListenAddrs(), "topic": "orders", "startPosition": "TRIM_HORIZON", "sessionTimeout": "2s"}
		},
		publish: func(t *testing.T, id string, from, to int) {
			cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			for i := from; i < to; i++ {
				r := &kgo.Record{Topic: "orders", Key: []byte(fmt.Sprint(i % 7)), Value: body(i)}
				if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
		},
	}
	for name, b := range all {
		t.Run(name, func(t *testing.T) { killMidStream(t, b) })
	}
}

func killMidStream(t *testing.T, b broker) {
	const total = 1000
	id := fmt.Sprintf("nimbus-kill-%d", rand.Int64())
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rc.Close()
	t.Cleanup(func() { rc.Del(context.Background(), id, id+"-result") })

	dir := dataDir(t)
	s := startServer(t, dir, "--function-network", "host")
	_, err := s.client().CreateFunction(t.Context(), createInput(t, "rec", recorder, map[string]string{"RESULT_KEY": id + "-result"}))
	if err != nil {
		t.Fatal(err)
	}
	trig := map[string]any{"name": "in", "type": b.typ, "config": b.config(t, id), "batchSize": 20, "batchWindow": "50ms"}
	postJSON(t, "http://"+s.addr+"/nimbus/v1/functions/rec/triggers", trig)
	waitTriggerActive(t, s.addr)

	b.publish(t, id, 0, total/2)
	waitCount(t, rc, id+"-result", total/5, 60*time.Second)
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
	s.done <- nil
	b.publish(t, id, total/2, total) // while Nimbus is down

	startServer(t, dir, "--function-network", "host")
	waitCount(t, rc, id+"-result", total, 2*time.Minute)
}

func postJSON(t *testing.T, url string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	resp, err := post(url, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("POST %s: %d %v", url, resp.StatusCode, e)
	}
}

func waitTriggerActive(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := get("http://" + addr + "/nimbus/v1/functions/rec/triggers/in")
		if err != nil {
			t.Fatal(err)
		}
		var tr struct {
			Status struct{ State, Reason string } `json:"status"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&tr)
		resp.Body.Close()
		if tr.Status.State == "Active" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("trigger not Active: %+v", tr.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitCount(t *testing.T, rc *redis.Client, key string, want int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n, err := rc.SCard(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages processed after %s", n, want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
