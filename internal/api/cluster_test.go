package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/cluster"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/seal"
)

// clusterOf returns the config change of a node of a test cluster: the
// shared NATS under prefix, one node key, fast heartbeats.
func clusterOf(prefix, key string, more ...func(*node.Config)) func(*node.Config) {
	return func(c *node.Config) {
		c.NATSURL, c.NATSPrefix, c.NodeKey = nodetest.SharedNATS, prefix, key
		c.ClusterHeartbeat, c.ClusterTTL = 200*time.Millisecond, time.Second
		for _, m := range more {
			m(c)
		}
	}
}

func listNodes(t *testing.T, n *node.Node) []api.NodeInfo {
	t.Helper()
	resp, err := http.Get(nodetest.Endpoint(n) + "/nimbus/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /nimbus/v1/nodes: %s", resp.Status)
	}
	var out struct{ Nodes []api.NodeInfo }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Nodes
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterNodes: GET /nimbus/v1/nodes on any node lists the three live
// nodes with their addresses; a stopped node is gone from the others' view
// within the TTL.
func TestClusterNodes(t *testing.T) {
	prefix, key := nodetest.SharedNATSPrefix(t), seal.Generate()
	a := nodetest.Start(t, clusterOf(prefix, key))
	b := nodetest.Start(t, clusterOf(prefix, key))
	c, stopC := nodetest.StartStoppable(t, clusterOf(prefix, key))
	want := map[string]string{a.ID(): "http://" + a.Addr(), b.ID(): "http://" + b.Addr(), c.ID(): "http://" + c.Addr()}
	for _, n := range []*node.Node{a, b, c} {
		var got []api.NodeInfo
		waitFor(t, 3*time.Second, "every node lists the three", func() bool { got = listNodes(t, n); return len(got) == 3 })
		selves := 0
		for _, m := range got {
			if want[m.ID] != m.Address || m.Version == "" || m.Started.IsZero() || m.Heartbeat.Before(m.Started) {
				t.Errorf("node %s lists %+v, want the address %s, a version and times", n.ID(), m, want[m.ID])
			}
			if m.Self {
				selves++
				if m.ID != n.ID() {
					t.Errorf("node %s marks %s as itself", n.ID(), m.ID)
				}
			}
		}
		if selves != 1 {
			t.Errorf("node %s marks %d nodes as itself", n.ID(), selves)
		}
	}
	stopC()
	gone := time.Now()
	waitFor(t, time.Second+500*time.Millisecond, "a stopped node leaves the list within the TTL", func() bool { return len(listNodes(t, a)) == 2 })
	t.Logf("the stopped node left A's list %s after its stop", time.Since(gone).Round(time.Millisecond))
	for _, m := range listNodes(t, b) {
		if m.ID == c.ID() {
			t.Errorf("node B still lists the stopped node")
		}
	}

	// A node that dies without leaving (SIGKILL): its last heartbeat is
	// in the bucket and nothing refreshes it.
	nc, err := nats.Connect(nodetest.SharedNATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(t.Context(), prefix+"_"+cluster.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	ghost, _ := json.Marshal(cluster.Member{ID: "ghost", Address: "http://127.0.0.1:1", Version: "x", Started: time.Now(), At: time.Now()})
	if _, err := kv.Put(t.Context(), "ghost", ghost); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "A lists a node that wrote one heartbeat", func() bool { return len(listNodes(t, a)) == 3 })
	died := time.Now()
	waitFor(t, 2*time.Second, "a node that died is forgotten after the TTL", func() bool { return len(listNodes(t, a)) == 2 })
	if d := time.Since(died); d < 700*time.Millisecond {
		t.Errorf("the dead node was forgotten after %s, before the TTL (1 s)", d)
	} else {
		t.Logf("the dead node left A's list %s after its heartbeat", d.Round(time.Millisecond))
	}
}

// pySleepy sleeps as long as its event says, then answers its n.
const pySleepy = "import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return {'ok': event.get('n')}\n"

// TestClusterForward: with a warm instance only on node B, an invoke on A
// runs on B (no cold start, no instance on A); a forward arriving at a node
// without a free warm instance is not forwarded again; a forge is refused;
// a node that cannot be reached makes A run the invocation itself.
func TestClusterForward(t *testing.T) {
	prefix, key := nodetest.SharedNATSPrefix(t), seal.Generate()
	// D advertises an address where nothing listens: forwards to it fail
	// before anything ran.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	a := nodetest.Start(t, clusterOf(prefix, key))
	b := nodetest.Start(t, clusterOf(prefix, key))
	c := nodetest.Start(t, clusterOf(prefix, key))
	d := nodetest.Start(t, clusterOf(prefix, key, func(c *node.Config) { c.AdvertiseURL = dead }))
	ca, cb := client(a), client(b)
	deploy(t, ca, fixture{name: "fwd", runtime: "python3.11", handler: "app.handler", zip: nodetest.Zip(t, map[string]string{"app.py": pySleepy})})
	deploy(t, ca, fixture{name: "fwd2", runtime: "python3.11", handler: "app.handler", zip: nodetest.Zip(t, map[string]string{"app.py": pySleepy})})
	waitActive(t, ca, "fwd")
	deploy(t, ca, fixture{name: "fwd3", runtime: "python3.11", handler: "app.handler", zip: nodetest.Zip(t, map[string]string{"app.py": pySleepy})})
	waitActive(t, ca, "fwd2")
	waitActive(t, ca, "fwd3")

	// Warm on B only.
	if out := invoke(t, cb, "fwd", `{"n":1}`); string(out.Payload) != `{"ok": 1}` {
		t.Fatalf("B answered %s", out.Payload)
	}
	warmKey := ""
	waitFor(t, 3*time.Second, "A sees B's warm instance", func() bool {
		for _, m := range a.Members().Live() {
			for k := range m.Warm {
				if m.ID == b.ID() && strings.HasPrefix(k, "fwd@") {
					warmKey = k
				}
			}
		}
		return warmKey != ""
	})
	out := invoke(t, ca, "fwd", `{"n":2}`)
	if string(out.Payload) != `{"ok": 2}` || out.FunctionError != nil {
		t.Fatalf("A answered %s (%s)", out.Payload, aws.ToString(out.FunctionError))
	}
	tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	if !strings.Contains(string(tail), "REPORT") || strings.Contains(string(tail), "Init Duration") {
		t.Errorf("the forwarded invocation's log tail has no REPORT or an Init Duration (a cold start):\n%s", tail)
	}
	if got := a.Forwarder().Forwarded.Load(); got != 1 {
		t.Errorf("A forwarded %d invocations, want 1", got)
	}
	if sa, sb := a.Engine().Stats("fwd"), b.Engine().Stats("fwd"); sa.Instances != 0 || sb.Instances != 1 {
		t.Errorf("instances: A %d, B %d; want 0 and 1 (it ran on B's warm one)", sa.Instances, sb.Instances)
	}

	// The hop limit: a signed forward to C, which has no instance of fwd,
	// is not forwarded on to B nor cold-started: C answers "not run".
	sk, err := seal.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	fkey := sk.Derive("cluster forward")
	body := []byte(`{"function":"fwd","key":"` + warmKey + `","invocation":{"requestId":"hop-1","payload":"e30=","trigger":"api"}}`)
	resp := postForward(t, c, body, func(h http.Header) { cluster.Sign(h, fkey, a.ID(), time.Now(), body) })
	if resp.StatusCode != http.StatusConflict || resp.Header.Get(cluster.HeaderNotRun) != "1" {
		t.Errorf("a forward to C without a warm instance: %s, want 409 with %s", resp.Status, cluster.HeaderNotRun)
	}
	time.Sleep(300 * time.Millisecond)
	if sc, sb := c.Engine().Stats("fwd"), b.Engine().Stats("fwd"); sc.Instances != 0 || sb.Instances != 1 {
		t.Errorf("after a forward to C: C has %d instances, B %d; want 0 and 1 (not forwarded again, nothing started)", sc.Instances, sb.Instances)
	}

	// Forges: no signature, a wrong one, a replay, a stale date.
	body = []byte(`{"function":"fwd","key":"` + warmKey + `","invocation":{"requestId":"forge-1","payload":"e30=","trigger":"api"}}`)
	for name, sign := range map[string]func(http.Header){
		"unsigned":    func(http.Header) {},
		"header only": func(h http.Header) { h.Set(cluster.HeaderFrom, a.ID()) },
		"other key":   func(h http.Header) { cluster.Sign(h, bytes.Repeat([]byte{7}, 32), a.ID(), time.Now(), body) },
		"other body":  func(h http.Header) { cluster.Sign(h, fkey, a.ID(), time.Now(), []byte(`{}`)) },
		"stale":       func(h http.Header) { cluster.Sign(h, fkey, a.ID(), time.Now().Add(-time.Minute), body) },
	} {
		if resp := postForward(t, b, body, sign); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s forward: %s, want 401", name, resp.Status)
		}
	}
	signed := http.Header{}
	cluster.Sign(signed, fkey, a.ID(), time.Now(), body)
	copyH := func(h http.Header) {
		for k, v := range signed {
			h[k] = v
		}
	}
	if resp := postForward(t, b, body, copyH); resp.StatusCode != http.StatusOK {
		t.Errorf("a valid forward to B: %s, want 200", resp.Status)
	}
	if resp := postForward(t, b, body, copyH); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the same forward again (a replay): %s, want 401", resp.Status)
	}
	// The marker header on an ordinary invoke changes nothing: it is an
	// invoke like any other (run here: A still has no warm instance of
	// fwd2 and nobody has).
	req, _ := http.NewRequest(http.MethodPost, nodetest.Endpoint(a)+"/2015-03-31/functions/fwd2/invocations", strings.NewReader(`{"n":3}`))
	req.Header.Set(cluster.HeaderFrom, b.ID())
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("an invoke with a forged forward header: %v %v", resp, err)
	}
	if s := a.Engine().Stats("fwd2"); s.Instances != 1 {
		t.Errorf("A has %d instances of fwd2, want 1", s.Instances)
	}

	// A busy instance on B: a forward is given back unrun.
	done := make(chan struct{})
	go func() {
		defer close(done)
		invoke(t, cb, "fwd", `{"n":4,"sleep":1.5}`)
	}()
	waitFor(t, 3*time.Second, "B's instance is busy", func() bool { return b.Engine().Stats("fwd").Idle == 0 })
	body = []byte(`{"function":"fwd","key":"` + warmKey + `","invocation":{"requestId":"busy-1","payload":"e30=","trigger":"api"}}`)
	resp = postForward(t, b, body, func(h http.Header) { cluster.Sign(h, fkey, a.ID(), time.Now(), body) })
	if resp.StatusCode != http.StatusConflict || resp.Header.Get(cluster.HeaderNotRun) != "1" {
		t.Errorf("a forward to B while its instance is busy: %s, want 409 not run", resp.Status)
	}
	if s := b.Engine().Stats("fwd"); s.Instances != 1 {
		t.Errorf("B has %d instances after a forward it gave back, want 1", s.Instances)
	}
	<-done

	// D advertises fwd3 warm at an address nothing answers: A's forward
	// fails before anything ran, and A runs it itself (a cold start).
	if out := invoke(t, client(d), "fwd3", `{"n":5}`); string(out.Payload) != `{"ok": 5}` {
		t.Fatalf("D answered %s", out.Payload)
	}
	waitFor(t, 3*time.Second, "A sees D's warm fwd3", func() bool { return a.Members().PeersWarm("fwd3") })
	fb := a.Forwarder().Fallbacks.Load()
	if out := invoke(t, ca, "fwd3", `{"n":7}`); string(out.Payload) != `{"ok": 7}` {
		t.Fatalf("A answered %s after the failed forward", out.Payload)
	}
	if got := a.Forwarder().Fallbacks.Load() - fb; got != 1 {
		t.Errorf("A fell back %d times, want 1", got)
	}
	if sa, sd := a.Engine().Stats("fwd3"), d.Engine().Stats("fwd3"); sa.Instances != 1 || sd.Instances != 1 {
		t.Errorf("instances of fwd3: A %d, D %d; want 1 and 1 (A started its own)", sa.Instances, sd.Instances)
	}
}

func postForward(t *testing.T, n *node.Node, body []byte, sign func(http.Header)) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, nodetest.Endpoint(n)+cluster.ForwardPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sign(req.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestClusterReservedConcurrency: a reserved concurrency is the cluster's:
// with the function's one reserved instance busy on node B, an invoke on A
// is throttled; once B's is done, A runs it.
func TestClusterReservedConcurrency(t *testing.T) {
	prefix, key := nodetest.SharedNATSPrefix(t), seal.Generate()
	a := nodetest.Start(t, clusterOf(prefix, key, func(c *node.Config) { c.QueueTimeout = time.Second }))
	b := nodetest.Start(t, clusterOf(prefix, key))
	ca, cb := client(a), client(b)
	deploy(t, ca, fixture{name: "res", runtime: "python3.11", handler: "app.handler", zip: nodetest.Zip(t, map[string]string{"app.py": pySleepy})})
	waitActive(t, ca, "res")
	if _, err := ca.PutFunctionConcurrency(t.Context(), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("res"), ReservedConcurrentExecutions: aws.Int32(1),
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "B sees the reserved concurrency", func() bool {
		out, err := cb.GetFunctionConcurrency(t.Context(), &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("res")})
		return err == nil && aws.ToInt32(out.ReservedConcurrentExecutions) == 1
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		invoke(t, cb, "res", `{"n":1,"sleep":3}`)
	}()
	waitFor(t, 3*time.Second, "A knows B uses the reservation", func() bool { return a.Members().RemoteReserved()["res"] == 1 })
	time.Sleep(400 * time.Millisecond) // the engine takes it within a heartbeat interval
	_, err := ca.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("res"), Payload: []byte(`{"n":2}`)},
		func(o *lambda.Options) { o.RetryMaxAttempts = 1 }) // the SDK retries a 429
	var tooMany *types.TooManyRequestsException
	if !errors.As(err, &tooMany) {
		t.Errorf("an invoke on A while B uses the whole reservation: %v, want TooManyRequestsException (A forwarded %d, fell back %d, A stats %+v, B stats %+v)", err,
			a.Forwarder().Forwarded.Load(), a.Forwarder().Fallbacks.Load(), a.Engine().Stats("res"), b.Engine().Stats("res"))
	}
	<-done
	waitFor(t, 3*time.Second, "A learns B's reservation is free", func() bool { return a.Members().RemoteReserved()["res"] == 0 })
	if out := invoke(t, ca, "res", `{"n":3}`); string(out.Payload) != `{"ok": 3}` {
		t.Errorf("A answered %s once B's instance was free", out.Payload)
	}
}

// TestClusterProvisionedSpread: a function's provisioned concurrency is
// spread across the live nodes (4 on 3 nodes: 2, 1 and 1), any node
// reports the cluster's instances (READY with 4), and when a node stops the
// others take its share.
func TestClusterProvisionedSpread(t *testing.T) {
	prefix, key := nodetest.SharedNATSPrefix(t), seal.Generate()
	a := nodetest.Start(t, clusterOf(prefix, key))
	b := nodetest.Start(t, clusterOf(prefix, key))
	c, stopC := nodetest.StartStoppable(t, clusterOf(prefix, key))
	for _, n := range []*node.Node{a, b, c} {
		waitFor(t, 5*time.Second, "every node lists the three", func() bool { return len(n.Members().LiveIDs()) == 3 })
	}
	ca := client(a)
	createPy(t, ca, "spread", pyZip(t))
	waitActive(t, ca, "spread")
	if _, err := ca.PutProvisionedConcurrencyConfig(t.Context(), &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("spread"), Qualifier: aws.String("$LATEST"), ProvisionedConcurrentExecutions: aws.Int32(4),
	}); err != nil {
		t.Fatal(err)
	}
	// Each node's share (what its pool keeps warm) and its instances. A
	// node that missed heartbeats for a moment (a loaded machine) takes a
	// larger share meanwhile, and the instances it started then stay until
	// reaped: instances are checked to cover the shares, not to equal them.
	type view struct{ shares, warm []int }
	look := func(nodes ...*node.Node) (v view) {
		for _, n := range nodes {
			st := n.Engine().Stats("spread")
			v.shares, v.warm = append(v.shares, st.Provisioned), append(v.warm, st.Instances)
		}
		return v
	}
	covered := func(v view) bool {
		for i := range v.shares {
			if v.warm[i] < v.shares[i] {
				return false
			}
		}
		return true
	}
	var v view
	waitFor(t, 60*time.Second, "the three nodes keep 4 between them, 1 or 2 each, and run them", func() bool {
		v = look(a, b, c)
		sum := 0
		for _, s := range v.shares {
			sum += s
		}
		return sum == 4 && slices.Min(v.shares) == 1 && slices.Max(v.shares) == 2 && covered(v)
	})
	t.Logf("shares %v, instances %v", v.shares, v.warm)
	waitFor(t, 10*time.Second, "any node says READY with at least 4 available", func() bool {
		out, err := client(b).GetProvisionedConcurrencyConfig(t.Context(), &lambda.GetProvisionedConcurrencyConfigInput{
			FunctionName: aws.String("spread"), Qualifier: aws.String("$LATEST")})
		return err == nil && out.Status == types.ProvisionedConcurrencyStatusEnumReady && aws.ToInt32(out.AvailableProvisionedConcurrentExecutions) == 4
	})
	stopC()
	waitFor(t, 60*time.Second, "A and B take C's share: 2 each, and run them", func() bool {
		v = look(a, b)
		return v.shares[0] == 2 && v.shares[1] == 2 && covered(v)
	})
}
