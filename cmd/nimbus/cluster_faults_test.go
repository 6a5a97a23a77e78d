package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/redis/go-redis/v9"

	"github.com/nimbus-serverless/nimbus/internal/seal"
)

// The fault tests of a three-node cluster: a member SIGKILLed while async
// events and trigger messages flow, and a rolling restart under load. They
// use the member harness of cluster_test.go.

// counter is a Python function that counts its runs per event id in a Redis
// hash (HINCRBY over a raw socket: the function has no libraries), so the
// test sees what ran and how often. The nodes run with --function-network
// host to reach Redis on the host's loopback.
const counter = `import os, socket
KEY = os.environ["RESULT_KEY"].encode()
def handler(event, context):
    parts = [b"HINCRBY", KEY, str(event["id"]).encode(), b"1"]
    cmd = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    s = socket.create_connection(("127.0.0.1", 6379))
    s.sendall(cmd)
    s.recv(64)
    s.close()
    return event
`

// startCluster starts three members that form a cluster, with extra flags
// on each, and waits until every one is ready and has the admin key.
func startCluster(t *testing.T, extra ...string) []*member {
	t.Helper()
	nodeKey := seal.Generate()
	name := fmt.Sprintf("f%d", time.Now().UnixNano()%1e9)
	ms := make([]*member, 3)
	routes := make([]string, 3)
	for i := range ms {
		routes[i] = freeAddr(t)
		ms[i] = &member{name: string(rune('A' + i)), addr: freeAddr(t), dir: dataDir(t)}
	}
	for i, m := range ms {
		m.args = append([]string{"serve", "--addr", m.addr, "--data-dir", m.dir, "--node-key", nodeKey,
			"--cluster-name", name, "--cluster-listen", routes[i], "--peers", peersOf(routes, i),
			"--cluster-wait", "90s", "--prestarted-helpers", "1"}, extra...)
		m.start(t)
	}
	deadline := time.Now().Add(120 * time.Second)
	for _, m := range ms {
		if err := m.readyz(deadline); err != nil {
			t.Fatal(err)
		}
	}
	shareAdminKey(t, ms)
	return ms
}

// sigterm stops the member with SIGTERM and waits for it to exit, within d.
func (m *member) sigterm(t *testing.T, d time.Duration) {
	t.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		m.done <- err
		if err != nil {
			t.Errorf("%s: exit after SIGTERM: %v", m.name, err)
		}
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s of SIGTERM", m.name, d)
	}
}

// balancer is a client that spreads requests over the members in turn,
// as a load balancer does: a request that a member refused (no listener)
// or answered 502/503, or whose connection closed before any answer, is
// sent to the next member (nginx: proxy_next_upstream error
// non_idempotent). Nothing else is sent again: a member that has just restarted and not caught up with the keys
// bucket reads it again rather than refuse a valid key (403), so neither a
// 403 nor the 429 of an address refused too often is taken here.
type balancer struct {
	ms    []*member
	next  atomic.Uint64
	hc    *http.Client
	creds aws.Credentials

	mu      sync.Mutex
	retries map[string]int // by reason
}

func newBalancer(ms []*member) *balancer {
	return &balancer{ms: ms, creds: ms[0].creds, retries: map[string]int{}, hc: &http.Client{
		Timeout: 60 * time.Second,
		// A balancer (nginx's default) opens a connection per request:
		// no request is written into a connection the member closes.
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
}

// retryable reports whether a request's failure says it was not taken, and
// names why.
func retryable(err error, status int) (string, bool) {
	switch {
	case err == nil:
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused", true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The connection closed before any answer: a member that was
		// stopping closed its listener with this connection still in its
		// backlog, or closed the connection as the request came. A balancer
		// set as docs/cluster.md says sends it to another member.
		return "closed", true
	default:
		return "", false
	}
	switch status {
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return strconv.Itoa(status), true
	}
	return "", false
}

// retried returns how many requests were sent again, by reason.
func (b *balancer) retried() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, v := range b.retries {
		out[k] = v
	}
	return out
}

// send sends a signed POST of body to path on the members in turn until
// one takes it or within d; it returns the answer's status and body, or
// the last error.
func (b *balancer) send(path string, hdr map[string]string, body []byte, d time.Duration) (int, []byte, error) {
	deadline := time.Now().Add(d)
	for try := 0; ; try++ {
		m := b.ms[b.next.Add(1)%uint64(len(b.ms))]
		status, out, err := b.post(m.addr, path, hdr, body)
		why, again := retryable(err, status)
		if !again || time.Now().After(deadline) {
			if err != nil {
				err = fmt.Errorf("%s: %w", m.name, err)
			}
			return status, out, err
		}
		b.mu.Lock()
		b.retries[m.name+" "+why]++
		b.mu.Unlock()
		if try%len(b.ms) == len(b.ms)-1 {
			time.Sleep(100 * time.Millisecond) // every member refused: wait a little
		}
	}
}

func (b *balancer) post(addr, path string, hdr map[string]string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), b.creds, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
		return 0, nil, err
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// submit submits one async event (its task id is id) through the
// balancer; true when a member answered 202. A submission that got no
// answer is sent again to the next member, as a client does, within d.
func (b *balancer) submit(fn, id string, d time.Duration) bool {
	hdr := map[string]string{"X-Amz-Invocation-Type": "Event", "X-Nimbus-Task-Id": id}
	deadline := time.Now().Add(d)
	for {
		status, _, err := b.send("/2015-03-31/functions/"+fn+"/invocations", hdr, []byte(`{"id":"`+id+`"}`), time.Until(deadline))
		if err == nil && status == http.StatusAccepted {
			return true
		}
		if err == nil && status != http.StatusConflict && status < 500 || time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runs reads the counter's hash: the runs of each event id.
func runs(t *testing.T, rc *redis.Client, key string) map[string]int {
	t.Helper()
	h, err := rc.HGetAll(t.Context(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int, len(h))
	for k, v := range h {
		n, _ := strconv.Atoi(v)
		out[k] = n
	}
	return out
}

// waitRuns waits until every id of acked ran at least once, within d; it
// returns the runs seen.
func waitRuns(t *testing.T, rc *redis.Client, key string, acked map[string]bool, d time.Duration, ask *member, fn string) map[string]int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := runs(t, rc, key)
		var missing []string
		for id := range acked {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			n := len(missing)
			if n > 10 {
				missing = missing[:10]
			}
			for _, id := range missing { // what the cluster knows of them
				resp, err := get("http://" + ask.addr + "/nimbus/v1/functions/" + fn + "/tasks/" + id)
				if err != nil {
					t.Logf("task %s: %v", id, err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Logf("task %s: %d %s", id, resp.StatusCode, b)
			}
			t.Fatalf("%d of %d acknowledged events never ran after %s (some: %v)", n, len(acked), d, missing)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// duplicates counts the runs beyond the first of each event.
func duplicates(got map[string]int) int {
	n := 0
	for _, r := range got {
		n += r - 1
	}
	return n
}

// redisFor connects to Redis (or skips) and deletes key at the end.
func redisFor(t *testing.T, key string) *redis.Client {
	t.Helper()
	need(t, "Redis", "127.0.0.1:6379")
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { rc.Del(context.Background(), key); rc.Close() })
	return rc
}

// TestClusterAsyncKill submits 3,000 async events across the three members
// while one of them is SIGKILLed midway and later restarted on its data
// directory: every event a member acknowledged (202) runs at least once.
func TestClusterAsyncKill(t *testing.T) {
	key := fmt.Sprintf("nimbus-cluster-async-%d", rand.Int64())
	rc := redisFor(t, key)
	began := time.Now()
	ms := startCluster(t, "--function-network", "host", "--shutdown-grace", "5s",
		"--async-ack-wait", "3s", "--async-concurrency", "8")
	t.Logf("%s: cluster formed", time.Since(began).Round(time.Millisecond))
	waitCreateEnv(t, ms[0], "count", counter, map[string]string{"RESULT_KEY": key})
	for _, m := range ms {
		waitInvokeID(t, m, "count")
	}
	rc.Del(t.Context(), key)

	const total = 3000
	lb := newBalancer(ms)
	victim := ms[2]
	var (
		mu     sync.Mutex
		acked  = map[string]bool{}
		next   atomic.Int64
		wg     sync.WaitGroup
		killed = make(chan struct{})
		once   sync.Once
	)
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				if i == total/2 {
					once.Do(func() {
						victim.kill9(t)
						close(killed)
					})
				}
				id := fmt.Sprintf("ev-%d", i)
				if lb.submit("count", id, 150*time.Second) {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				}
			}
		}()
	}
	<-killed
	killedAt := time.Now()
	wg.Wait()
	t.Logf("%s: %d of %d events acknowledged, the last %s after the kill; sent again to the next member: %v", time.Since(began).Round(time.Millisecond),
		len(acked), total, time.Since(killedAt).Round(time.Millisecond), lb.retried())
	if len(acked) < total*9/10 {
		t.Errorf("only %d of %d events acknowledged: the survivors should take submissions", len(acked), total)
	}
	victim.start(t)
	if err := victim.ready(time.Now().Add(90 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got := waitRuns(t, rc, key, acked, 4*time.Minute, ms[0], "count")
	t.Logf("%s: all %d acknowledged events ran; %d duplicate runs, %d runs of unacknowledged events",
		time.Since(began).Round(time.Millisecond), len(acked), duplicates(got), len(got)-len(acked))
}

// waitCreateEnv is waitCreate with environment variables.
func waitCreateEnv(t *testing.T, m *member, name, src string, env map[string]string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		_, err := m.client().CreateFunction(ctx, createInput(t, name, src, env))
		cancel()
		if err == nil || strings.Contains(err.Error(), "409") || strings.Contains(err.Error(), "ResourceConflict") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CreateFunction on %s: %v", m.name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitInvokeID invokes fn (one that returns its event) on m with an id
// until it answers, within 90 s, once a second (a restarted member refuses
// keys for a while, then the address: known issue, docs/cluster.md).
func waitInvokeID(t *testing.T, m *member, fn string) {
	t.Helper()
	lb := newBalancer([]*member{m})
	deadline := time.Now().Add(90 * time.Second)
	for {
		status, out, err := lb.post(m.addr, "/2015-03-31/functions/"+fn+"/invocations", nil, []byte(`{"id":"warm-`+m.name+`"}`))
		if err == nil && status == http.StatusOK && strings.Contains(string(out), "warm-") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: invoke %s: %d %s %v", m.name, fn, status, out, err)
		}
		time.Sleep(time.Second)
	}
}

// TestClusterTriggerKill: a NATS JetStream trigger (on the NATS server at
// 4222) keeps delivering while a member is SIGKILLed: messages published
// before, during and after the kill are all processed.
func TestClusterTriggerKill(t *testing.T) {
	need(t, "Redis", "127.0.0.1:6379")
	b := brokers["nats-jetstream"]
	const total = 1500
	id := fmt.Sprintf("nimbus-ckill-%d", rand.Int64())
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rc.Close()
	t.Cleanup(func() { rc.Del(context.Background(), id+"-result") })
	trigCfg := b.config(t, id) // skips without NATS

	began := time.Now()
	ms := startCluster(t, "--function-network", "host", "--shutdown-grace", "5s")
	t.Logf("%s: cluster formed", time.Since(began).Round(time.Millisecond))
	waitCreateEnv(t, ms[0], "rec", recorder, map[string]string{"RESULT_KEY": id + "-result"})
	trig := map[string]any{"name": "in", "type": b.typ, "config": trigCfg, "batchSize": 20, "batchWindow": "50ms"}
	postJSON(t, "http://"+ms[0].addr+"/nimbus/v1/functions/rec/triggers", trig)
	for _, m := range ms {
		waitTriggerActive(t, m.addr)
	}

	b.publish(t, id, 0, total/3) // before
	waitCount(t, rc, id+"-result", total/6, 60*time.Second)
	victim := ms[1]
	var killed time.Time
	killDone := make(chan struct{})
	go func() {
		defer close(killDone)
		time.Sleep(100 * time.Millisecond)
		killed = time.Now()
		victim.kill9(t)
	}()
	b.publish(t, id, total/3, 2*total/3) // during
	<-killDone
	b.publish(t, id, 2*total/3, total) // after, with the member down
	waitCount(t, rc, id+"-result", total, 3*time.Minute)
	t.Logf("%s after the kill: all %d messages processed by the survivors", time.Since(killed).Round(time.Millisecond), total)

	// The member comes back and takes its share again.
	victim.start(t)
	if err := victim.readyz(time.Now().Add(90 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b.publish(t, id, total, total+total/5)
	waitCount(t, rc, id+"-result", total+total/5, 2*time.Minute)
	t.Logf("%s: all %d messages processed", time.Since(began).Round(time.Millisecond), total+total/5)
}

// TestClusterRollingRestart restarts the three members one at a time
// (SIGTERM, exit, start on the same data directory, ready) while a client
// keeps invoking synchronously and submitting async events through a
// balancer: no invoke fails and every acknowledged event runs.
func TestClusterRollingRestart(t *testing.T) {
	key := fmt.Sprintf("nimbus-cluster-roll-%d", rand.Int64())
	rc := redisFor(t, key)
	began := time.Now()
	ms := startCluster(t, "--function-network", "host", "--shutdown-grace", "10s",
		"--async-ack-wait", "30s", "--async-concurrency", "4")
	t.Logf("%s: cluster formed", time.Since(began).Round(time.Millisecond))
	waitCreateEnv(t, ms[0], "count", counter, map[string]string{"RESULT_KEY": key})
	waitCreateEnv(t, ms[0], "echo", "import time\ndef handler(e, c):\n    time.sleep(0.05)\n    return e\n", nil)
	for _, m := range ms {
		waitInvokeID(t, m, "count")
		waitInvokeID(t, m, "echo")
	}
	rc.Del(t.Context(), key)

	lb := newBalancer(ms)
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		acked    = map[string]bool{}
		failures []string
		invokes  atomic.Int64
		submits  atomic.Int64
	)
	fail := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, s)
		}
	}
	for w := range 4 { // synchronous invokes
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"id":"s-%d-%d"}`, w, i)
				status, out, err := lb.send("/2015-03-31/functions/echo/invocations", nil, []byte(body), 60*time.Second)
				invokes.Add(1)
				if err != nil || status != http.StatusOK || !strings.Contains(string(out), fmt.Sprintf(`"s-%d-%d"`, w, i)) {
					fail(fmt.Sprintf("%s invoke %s: %d %.200s %v", time.Now().Format("15:04:05.000"), body, status, out, err))
				}
			}
		}()
	}
	for w := range 2 { // async submits
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("a-%d-%d", w, i)
				submits.Add(1)
				if lb.submit("count", id, 60*time.Second) {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				} else {
					fail(fmt.Sprintf("%s submit %s: not acknowledged", time.Now().Format("15:04:05.000"), id))
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	time.Sleep(2 * time.Second)
	for _, m := range ms {
		t0 := time.Now()
		m.sigterm(t, 30*time.Second)
		stopped := time.Since(t0)
		m.start(t)
		if err := m.readyz(time.Now().Add(90 * time.Second)); err != nil {
			t.Fatal(err)
		}
		// Until it has caught up with the keys bucket a restarted member
		// refuses keys (known issue, docs/cluster.md): wait for it to take
		// one before the next member stops.
		waitInvokeID(t, m, "echo")
		t.Logf("%s: %s restarted (stopped in %s, back in %s)", time.Since(began).Round(time.Millisecond), m.name,
			stopped.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d invokes, %d submits (%d acknowledged); sent again to the next member: %v", invokes.Load(), submits.Load(), len(acked), lb.retried())
	for _, f := range failures {
		t.Error(f)
	}
	got := waitRuns(t, rc, key, acked, 2*time.Minute, ms[0], "count")
	t.Logf("%s: all %d acknowledged events ran; %d duplicate runs", time.Since(began).Round(time.Millisecond), len(acked), duplicates(got))
}
