package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/seal"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// member is one node of a test cluster: its flags stay the same across
// restarts.
type member struct {
	name string
	// wrap runs the binary, e.g. in a network namespace: nsenter's
	// arguments before it ("" for none).
	wrap []string
	args []string
	addr string // HTTP API
	nats string // its embedded server's client listener
	dir  string
	*server
}

// start runs the member's `nimbus serve` without waiting for it.
func (m *member) start(t *testing.T) {
	t.Helper()
	argv := append(append(slices.Clone(m.wrap), nimbusBin), m.args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	logs := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, addr: m.addr, dir: m.dir, logs: logs, done: make(chan error, 1)}
	if m.server != nil {
		s.creds = m.creds // a restart: the key the test took before
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := <-s.done
		s.done <- err
		if t.Failed() {
			t.Logf("%s's log:\n%s", m.name, logs)
		}
	})
	m.server = s
}

// ready waits until the member answers /healthz.
func (m *member) ready(deadline time.Time) error {
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + m.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-m.done:
			m.done <- err
			return fmt.Errorf("%s exited: %v", m.name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer on %s", m.name, m.addr)
}

// kill9 kills the member with SIGKILL and waits for it.
func (m *member) kill9(t *testing.T) {
	t.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	err := <-m.done
	m.done <- err
}

// TestCluster forms a cluster of three `nimbus serve` processes from the
// flags alone (embedded NATS servers joined by routes, JetStream
// replicated): a function deployed on one runs on the others, an update
// reaches all, every bucket and stream has 3 replicas, and the cluster
// keeps serving with one member SIGKILLed, which rejoins when restarted.
func TestCluster(t *testing.T) {
	began := time.Now()
	nodeKey := seal.Generate()
	cluster := fmt.Sprintf("t%d", time.Now().UnixNano()%1e9)
	ms := make([]*member, 3)
	routes := make([]string, 3)
	for i := range ms {
		routes[i] = freeAddr(t)
		ms[i] = &member{name: string(rune('A' + i)), addr: freeAddr(t), nats: freeAddr(t), dir: dataDir(t)}
	}
	for i, m := range ms {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		m.args = []string{"serve", "--addr", m.addr, "--data-dir", m.dir, "--shutdown-grace", "5s",
			"--node-key", nodeKey, "--cluster-name", cluster, "--cluster-listen", routes[i],
			"--peers", strings.Join(peers, ","), "--cluster-wait", "60s", "--prestarted-helpers", "1"}
		if i != 1 { // B has no client listener but the loopback one a member gets anyway
			m.args = append(m.args, "--nats-listen", m.nats)
		}
		m.start(t)
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, m := range ms {
		if err := m.ready(deadline); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s: cluster formed", time.Since(began).Round(time.Millisecond))
	a, b, c := ms[0], ms[1], ms[2]
	if !strings.Contains(a.logs.String()+b.logs.String()+c.logs.String(), "nats cluster ready") {
		t.Error("no member logged that the cluster was ready")
	}
	// One member made the first admin key; all take it.
	for _, m := range ms {
		if _, err := os.Stat(filepath.Join(m.dir, "credentials")); err == nil {
			creds := loadCreds(t, m.addr, m.dir)
			for _, o := range ms {
				o.creds = creds
				serverCreds.Store(o.addr, creds)
			}
			break
		}
	}
	if !a.creds.HasKeys() {
		t.Fatal("no member wrote the first admin key's credentials")
	}

	// Deployed on A, run on B and C.
	create(t, a.client(), "hello", "def handler(e, c):\n    return 'v1'\n")
	for _, m := range []*member{b, c} {
		waitInvoke(t, m, "hello", `"v1"`, 15*time.Second)
	}

	// Updated on C: every node runs the new code next.
	cc := c.client()
	if _, err := cc.UpdateFunctionCode(t.Context(), &lambda.UpdateFunctionCodeInput{
		FunctionName: aws.String("hello"),
		ZipFile:      nodetest.Zip(t, map[string]string{"app.py": "def handler(e, c):\n    return 'v2'\n"}),
	}); err != nil {
		t.Fatalf("UpdateFunctionCode on C: %v", err)
	}
	waitUpdated(t, cc, "hello")
	for _, m := range ms {
		waitInvoke(t, m, "hello", `"v2"`, 10*time.Second)
		for range 3 { // and only it from then on
			if got := invoke(t, m, "hello"); got != `"v2"` {
				t.Errorf("%s ran %s after it had run v2", m.name, got)
			}
		}
	}

	t.Logf("%s: deployed, updated", time.Since(began).Round(time.Millisecond))
	checkReplicas(t, a.nats, 3)

	// C dies: A and B keep deploying and serving, once JetStream has
	// elected new leaders for what C led. KNOWN ISSUE: in about half the
	// runs that takes a few seconds; in the others the survivors stall for
	// up to about two minutes (creates answered 503, invokes that fetch
	// code time out) before they serve again. The bounds below let the
	// test see them recover, and it logs how long they took.
	c.kill9(t)
	killed := time.Now()
	waitCreate(t, a, "after", "def handler(e, c):\n    return 'after'\n")
	waitInvoke(t, a, "after", `"after"`, 90*time.Second)
	waitInvoke(t, a, "hello", `"v2"`, 15*time.Second)
	waitInvoke(t, b, "hello", `"v2"`, 15*time.Second)
	t.Logf("%s after the kill: deployed on A, run on A and B", time.Since(killed).Round(time.Millisecond))
	// B fetches the new code from the object store.
	waitInvoke(t, b, "after", `"after"`, 150*time.Second)
	t.Logf("%s after the kill: B ran the code deployed on A", time.Since(killed).Round(time.Millisecond))
	// C restarts on its data dir and rejoins: it has what was made while
	// it was away.
	c.start(t)
	if err := c.ready(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// Until it has caught up with the keys bucket, C refuses the key (403)
	// and then the address (429, the failed-authentication limit): it is
	// asked once a second, not to lock the address out. KNOWN ISSUE: that
	// catch-up took more than 20 s in some runs (docs/cluster.md).
	waitInvokeEvery(t, c, "after", `"after"`, 120*time.Second, time.Second)
	waitInvokeEvery(t, c, "hello", `"v2"`, 30*time.Second, time.Second)
	t.Logf("%s: C rejoined", time.Since(began).Round(time.Millisecond))
	checkReplicas(t, c.nats, 3)
}

// invoke calls fn on m and returns its payload, or the error's text.
func invoke(t *testing.T, m *member, fn string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	out, err := m.client().Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn)})
	switch {
	case err != nil:
		return "error: " + err.Error()
	case out.FunctionError != nil:
		return "function error: " + string(out.Payload)
	}
	return string(out.Payload)
}

// waitInvoke invokes fn on m until it answers want, within d.
func waitInvoke(t *testing.T, m *member, fn, want string, d time.Duration) {
	t.Helper()
	waitInvokeEvery(t, m, fn, want, d, 100*time.Millisecond)
}

// waitInvokeEvery is waitInvoke asking every interval.
func waitInvokeEvery(t *testing.T, m *member, fn, want string, d, every time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := invoke(t, m, fn)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: invoke %s = %s, want %s", m.name, fn, got, want)
		}
		time.Sleep(every)
	}
}

// waitCreate creates a Python function on m, trying again while the
// node answers a server error (503 while leaders are elected) or does not
// answer in time. A create that did happen but whose answer was lost is
// found by the next try (409) and is success.
func waitCreate(t *testing.T, m *member, name, src string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		_, err := m.client().CreateFunction(ctx, createInput(t, name, src, nil))
		cancel()
		var re *awshttp.ResponseError
		switch {
		case err == nil:
			return
		case errors.As(err, &re) && re.HTTPStatusCode() == http.StatusConflict:
			return // an earlier try created it
		case errors.As(err, &re) && re.HTTPStatusCode() != 0 && re.HTTPStatusCode() < 500 || time.Now().After(deadline):
			t.Fatalf("CreateFunction on %s: %v", m.name, err)
		}
		t.Logf("CreateFunction on %s, trying again: %v", m.name, err)
		time.Sleep(200 * time.Millisecond)
	}
}

// waitUpdated waits until fn's last update succeeded.
func waitUpdated(t *testing.T, c *lambda.Client, fn string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := c.GetFunctionConfiguration(t.Context(), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(fn)})
		if err == nil && out.LastUpdateStatus == types.LastUpdateStatusSuccessful {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's update did not succeed: %v %v", fn, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkReplicas checks through a member's NATS listener that every stream
// (buckets and object stores are streams too) has want replicas placed.
func checkReplicas(t *testing.T, url string, want int) {
	t.Helper()
	nc, err := nats.Connect("nats://" + url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), "nimbus_functions")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info := st.(*jetstream.KeyValueBucketStatus).StreamInfo(); info.Config.Replicas != want {
		t.Errorf("functions bucket: %d replicas, want %d", info.Config.Replicas, want)
	}
	names := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var bad []string
		streams := js.ListStreams(t.Context())
		for info := range streams.Info() {
			names[info.Config.Name] = true
			if info.Config.Replicas != want || info.Cluster == nil || len(info.Cluster.Replicas) != want-1 {
				bad = append(bad, fmt.Sprintf("%s: %d replicas configured, cluster %+v", info.Config.Name, info.Config.Replicas, info.Cluster))
			}
		}
		if err := streams.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
			t.Fatal(err)
		}
		if len(bad) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams without %d replicas:\n%s", want, strings.Join(bad, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, s := range []string{"KV_nimbus_functions", "KV_nimbus_keys", "OBJ_nimbus_code", "nimbus_QUEUE", "nimbus_TASKS", "nimbus_AUDIT", "nimbus_INVOCATIONS", "nimbus_LOGS"} {
		if !names[s] {
			t.Errorf("no stream %s among %v", s, names)
		}
	}
}

// TestClusterFlagErrors: bad cluster flags stop `nimbus serve` at once with
// one line that names the flag.
func TestClusterFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--peers", "127.0.0.1:6222"}, "--peers needs --cluster-listen"},
		{[]string{"--cluster-listen", "127.0.0.1"}, `--cluster-listen "127.0.0.1"`},
		{[]string{"--cluster-listen", "127.0.0.1:0", "--peers", "h:1,nope"}, `--peers: "nope"`},
		{[]string{"--cluster-listen", "127.0.0.1:0", "--peers", "h:1", "--replicas", "3"}, "--replicas 3 is more than the cluster's 2 member(s)"},
		{[]string{"--cluster-listen", "127.0.0.1:0", "--cluster-tls-cert", "/nonexistent.pem", "--cluster-tls-key", "/k", "--cluster-tls-ca", "/c"}, "--cluster-tls-cert: open /nonexistent.pem"},
		{[]string{"--nats-url", "nats://127.0.0.1:1", "--cluster-listen", "127.0.0.1:0"}, "cannot go with --nats-url"},
	}
	for _, tt := range tests {
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, tt.args...)
		out, err := exec.Command(nimbusBin, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("%v: %v, want an exit status\n%s", tt.args, err, out)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if !strings.Contains(string(out), tt.want) || len(lines) != 1 {
			t.Errorf("%v: output %q, want one line with %q", tt.args, out, tt.want)
		}
	}
}
