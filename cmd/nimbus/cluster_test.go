package main

import (
	"context"
	"encoding/json"
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
	return m.await("/healthz", 50*time.Millisecond, deadline, "did not answer")
}

// readyz waits until the member answers GET /readyz with 200.
func (m *member) readyz(deadline time.Time) error {
	return m.await("/readyz", 100*time.Millisecond, deadline, "not ready")
}

// await asks the member's path every interval until it answers 200, the
// member exits, or deadline passes (the error then says the member is
// failure).
func (m *member) await(path string, every time.Duration, deadline time.Time, failure string) error {
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + m.addr + path)
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
		case <-time.After(every):
		}
	}
	return fmt.Errorf("%s %s on %s", m.name, failure, m.addr)
}

// peersOf is the --peers of member i: the others' routes.
func peersOf(routes []string, i int) string {
	return strings.Join(slices.Delete(slices.Clone(routes), i, i+1), ",")
}

// shareAdminKey gives every member the first admin key, which the member
// that made it wrote to its data directory's credentials file.
func shareAdminKey(t *testing.T, ms []*member) {
	t.Helper()
	for _, m := range ms {
		if _, err := os.Stat(filepath.Join(m.dir, "credentials")); err == nil {
			creds := loadCreds(t, m.addr, m.dir)
			for _, o := range ms {
				o.creds = creds
				serverCreds.Store(o.addr, creds)
			}
			return
		}
	}
	t.Fatal("no member wrote the first admin key's credentials")
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
	ms := formCluster(t)
	t.Logf("%s: cluster formed", time.Since(began).Round(time.Millisecond))
	a, b, c := ms[0], ms[1], ms[2]

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

	// C dies: A and B keep deploying and serving once JetStream has
	// elected new leaders for what C led, within takeover.
	c.kill9(t)
	killed := time.Now()
	waitCreateUntil(t, a, "after", "def handler(e, c):\n    return 'after'\n", killed.Add(takeover))
	waitInvokeUntil(t, a, "after", `"after"`, killed.Add(takeover))
	waitInvokeUntil(t, a, "hello", `"v2"`, killed.Add(takeover))
	waitInvokeUntil(t, b, "hello", `"v2"`, killed.Add(takeover))
	// B fetches the new code from the object store.
	waitInvokeUntil(t, b, "after", `"after"`, killed.Add(takeover))
	t.Logf("%s after the kill: deployed on A, run on A and B", time.Since(killed).Round(time.Millisecond))
	// A key made, and a function updated, while C is away.
	fresh := memberKey(t, a, "fresh")
	if _, err := a.client().UpdateFunctionCode(t.Context(), &lambda.UpdateFunctionCodeInput{
		FunctionName: aws.String("hello"),
		ZipFile:      nodetest.Zip(t, map[string]string{"app.py": "def handler(e, c):\n    return 'v3'\n"}),
	}); err != nil {
		t.Fatalf("UpdateFunctionCode on A while C is away: %v", err)
	}
	waitUpdated(t, a.client(), "hello")
	// C restarts on its data dir and rejoins: it has what was made while
	// it was away. It never refuses a valid key, not even the one made
	// while it was away and asked as soon as it answers; once ready it
	// runs what was deployed while it was away.
	c.start(t)
	if err := c.ready(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	waitRejoined(t, c, fresh, "after", `"after"`, restarted.Add(60*time.Second))
	// Ready, it runs the code of the update it missed, and only it.
	if err := c.readyz(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := invoke(t, c, "hello"); got != `"v3"` {
			t.Errorf("C ran %s once ready, want the update made while it was away (v3)", got)
		}
	}
	t.Logf("%s: C rejoined", time.Since(began).Round(time.Millisecond))
	checkReplicas(t, c.nats, 3)
}

// formCluster starts three members, A, B and C, each with the other two
// as peers, waits until they answer, and gives each the first admin key.
// A and C have a NATS client listener of their own (member.nats).
func formCluster(t *testing.T) []*member {
	t.Helper()
	nodeKey := seal.Generate()
	cluster := fmt.Sprintf("t%d", time.Now().UnixNano()%1e9)
	ms := make([]*member, 3)
	routes := make([]string, 3)
	for i := range ms {
		routes[i] = freeAddr(t)
		ms[i] = &member{name: string(rune('A' + i)), addr: freeAddr(t), nats: freeAddr(t), dir: dataDir(t)}
	}
	for i, m := range ms {
		m.args = []string{"serve", "--addr", m.addr, "--data-dir", m.dir, "--shutdown-grace", "5s",
			"--node-key", nodeKey, "--cluster-name", cluster, "--cluster-listen", routes[i],
			"--peers", peersOf(routes, i), "--cluster-wait", "60s", "--prestarted-helpers", "1"}
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
	a, b, c := ms[0], ms[1], ms[2]
	if !strings.Contains(a.logs.String()+b.logs.String()+c.logs.String(), "nats cluster ready") {
		t.Error("no member logged that the cluster was ready")
	}
	shareAdminKey(t, ms) // one member made the first admin key; all take it
	return ms
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

// takeover bounds how long the survivors of a SIGKILLed member take to
// deploy and run functions again: JetStream's Raft election (4 to 9 s
// after the dead leader's last heartbeat), then a store operation that
// got no answer meanwhile is tried again (at most 5 s later); the rest
// is room for a loaded machine.
const takeover = 30 * time.Second

// waitInvokeUntil is waitInvoke until deadline.
func waitInvokeUntil(t *testing.T, m *member, fn, want string, deadline time.Time) {
	t.Helper()
	waitInvoke(t, m, fn, want, time.Until(deadline))
}

// memberKey makes an invoker key on m through the CLI, signing with m's
// admin key.
func memberKey(t *testing.T, m *member, name string) aws.Credentials {
	t.Helper()
	cmd := exec.Command(nimbusBin, "keys", "create", name, "--role", "invoker", "--functions", "*", "-o", "json", "--endpoint", "http://"+m.addr)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_") && !strings.HasPrefix(e, "NIMBUS_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+t.TempDir(), "AWS_ACCESS_KEY_ID="+m.creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+m.creds.SecretAccessKey)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nimbus keys create %s on %s: %v\n%s", name, m.name, err, out)
	}
	var k key
	if err := json.Unmarshal(out, &k); err != nil || k.AccessKeyId == "" {
		t.Fatalf("nimbus keys create -o json printed %q (%v)", out, err)
	}
	return k.creds()
}

// waitRejoined asks m, from the moment it answers, to run fn with creds
// every 100 ms until it answers want (before deadline): m must never
// refuse the key (403, or 429 for the failed authentications) nor say it
// is ready (GET /readyz) before it runs fn. It logs whether /readyz was
// seen unavailable, and why.
func waitRejoined(t *testing.T, m *member, creds aws.Credentials, fn, want string, deadline time.Time) {
	t.Helper()
	c := clientAs(m.server, creds)
	start, last := time.Now(), ""
	for {
		ready, why := readyz(t, m)
		if !ready && why != last {
			t.Logf("%s: /readyz after %s: %s", m.name, time.Since(start).Round(time.Millisecond), why)
			last = why
		}
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn)})
		cancel()
		var re *awshttp.ResponseError
		switch {
		case err == nil && out.FunctionError == nil && string(out.Payload) == want:
			t.Logf("%s: ran %s with the new key %s after it answered", m.name, fn, time.Since(start).Round(time.Millisecond))
			return
		case errors.As(err, &re) && (re.HTTPStatusCode() == http.StatusForbidden || re.HTTPStatusCode() == http.StatusTooManyRequests):
			t.Fatalf("%s refused a valid key %s after it answered: %v", m.name, time.Since(start).Round(time.Millisecond), err)
		case ready:
			t.Fatalf("%s is ready but invoke %s: %v %v", m.name, fn, err, out)
		case time.Now().After(deadline):
			t.Fatalf("%s: invoke %s: %v", m.name, fn, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readyz asks m's GET /readyz: whether it is ready and, if not, its
// failing checks.
func readyz(t *testing.T, m *member) (bool, string) {
	t.Helper()
	resp, err := http.Get("http://" + m.addr + "/readyz?format=json")
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var ans struct {
		Checks map[string]string `json:"checks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return false, fmt.Sprintf("%s: %v", resp.Status, err)
	}
	var failing []string
	for name, res := range ans.Checks {
		if res != "ok" {
			failing = append(failing, name+": "+res)
		}
	}
	slices.Sort(failing)
	return resp.StatusCode == http.StatusOK, strings.Join(failing, "; ")
}

// waitInvoke invokes fn on m until it answers want, within d.
func waitInvoke(t *testing.T, m *member, fn, want string, d time.Duration) {
	t.Helper()
	waitInvokeEvery(t, m, fn, want, d, 100*time.Millisecond)
}

// waitInvokeEvery is waitInvoke asking every interval.
func waitInvokeEvery(t *testing.T, m *member, fn, want string, d, every time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	last := ""
	for {
		got := invoke(t, m, fn)
		if got == want {
			return
		}
		if got != last { // what it answers instead, once
			t.Logf("%s: invoke %s after %s: %s", m.name, fn, time.Since(start).Round(time.Millisecond), got)
			last = got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: invoke %s = %s, want %s", m.name, fn, got, want)
		}
		time.Sleep(every)
	}
}

// waitCreate creates a Python function on m, trying again while the
// node answers a server error (503 while leaders are elected) or does not
// answer in time, for up to 90 s. A create that did happen but whose
// answer was lost is found by the next try (409) and is success.
func waitCreate(t *testing.T, m *member, name, src string) {
	t.Helper()
	waitCreateUntil(t, m, name, src, time.Now().Add(90*time.Second))
}

// waitCreateUntil is waitCreate until deadline.
func waitCreateUntil(t *testing.T, m *member, name, src string, deadline time.Time) {
	t.Helper()
	for {
		ctx, cancel := context.WithDeadline(t.Context(), deadline)
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

// leadAll makes the member whose NATS listener is url the leader of every
// stream (buckets and object stores are streams too), as far as JetStream
// lets it, and returns its server name.
func leadAll(t *testing.T, url string) string {
	t.Helper()
	nc, err := nats.Connect("nats://" + url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	name := nc.ConnectedServerName()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var streams []string
	for n := range js.StreamNames(t.Context()).Name() {
		streams = append(streams, n)
	}
	req := fmt.Appendf(nil, `{"placement":{"preferred":%q}}`, name)
	for _, s := range streams {
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, err := js.Stream(t.Context(), s)
			if err == nil && st.CachedInfo().Cluster != nil && st.CachedInfo().Cluster.Leader == name {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream %s: %s did not become its leader: %v", s, name, err)
			}
			if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+s, req, 5*time.Second); err != nil {
				t.Logf("step down %s: %v", s, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return name
}

// TestClusterTakeover kills, with SIGKILL, the member that leads every
// stream (the functions and keys buckets, the code store): the two others
// deploy and run functions again within takeover, including code that B
// has to fetch from the store.
func TestClusterTakeover(t *testing.T) {
	ms := formCluster(t)
	a, b, c := ms[0], ms[1], ms[2]
	create(t, a.client(), "hello", "def handler(e, c):\n    return 'v1'\n")
	for _, m := range ms {
		waitInvoke(t, m, "hello", `"v1"`, 15*time.Second)
	}
	// B has never run "cold": it fetches its code after the kill.
	create(t, a.client(), "cold", "def handler(e, c):\n    return 'cold'\n")
	waitInvoke(t, a, "cold", `"cold"`, 15*time.Second)
	victim := leadAll(t, c.nats)
	t.Logf("C (%s) leads every stream", victim)
	c.kill9(t)
	killed := time.Now()
	waitInvokeUntil(t, b, "cold", `"cold"`, killed.Add(takeover))
	waitCreateUntil(t, a, "after", "def handler(e, c):\n    return 'after'\n", killed.Add(takeover))
	created := time.Since(killed)
	waitInvokeUntil(t, a, "after", `"after"`, killed.Add(takeover))
	waitInvokeUntil(t, b, "after", `"after"`, killed.Add(takeover))
	t.Logf("take-over: created on A %s after the kill, run on A and B %s after", created.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
}
