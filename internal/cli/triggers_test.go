package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// fakeTriggers serves /nimbus/v1/functions/worker/triggers with fixed
// answers and records what it was sent.
type fakeTriggers struct {
	mu   sync.Mutex
	reqs []string // "METHOD path body"
}

// jobsReason is why the sample "jobs" trigger is in Error: longer than the
// table shows, and on two lines.
const jobsReason = "queue \"jobs\" not found in vhost \"/\" (create it first):\nException (404) Reason: \"NOT_FOUND - no queue 'jobs' in vhost '/'\""

func sampleTriggers() []triggerView {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	lag := int64(12)
	return []triggerView{
		{ID: "6f1c", Name: "orders", Type: "kafka", Enabled: true, Config: json.RawMessage(`{"brokers":["127.0.0.1:9092"],"topic":"orders"}`),
			BatchSize: 100, BatchWindow: "500ms", MaxRetries: 3, FailureDestination: "nats:orders.failed", Created: at, LastModified: at,
			Status: triggerStatus{State: "Active", Lag: &lag, LastEvent: at, Delivered: 1200, Failed: 2,
				LastError: "the function failed: Error: boom", LastErrorTime: at}},
		{ID: "9a2d", Name: "jobs", Type: "rabbitmq", Config: json.RawMessage(`{"url":"amqp://127.0.0.1:5672","queue":"jobs"}`),
			BatchSize: 1, BatchWindow: "0s", MaxRetries: 0, Concurrency: 2, Created: at, LastModified: at,
			Status: triggerStatus{State: "Error", Reason: jobsReason}},
	}
}

func newFakeTriggers(t *testing.T) (*fakeTriggers, string) {
	f := &fakeTriggers{}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeTriggers) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(body)))
	f.mu.Unlock()
	rest, ok := strings.CutPrefix(r.URL.Path, "/nimbus/v1/functions/worker/triggers")
	if !ok {
		w.Header().Set("X-Amzn-ErrorType", "ResourceNotFoundException")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"Type":"User","message":"Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	ts := sampleTriggers()
	switch {
	case r.Method == "GET" && rest == "":
		_ = json.NewEncoder(w).Encode(map[string]any{"triggers": ts})
	case r.Method == "DELETE":
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "POST" && rest == "":
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(ts[0])
	default:
		_ = json.NewEncoder(w).Encode(ts[0])
	}
}

func (f *fakeTriggers) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func TestTriggersCommands(t *testing.T) {
	f, url := newFakeTriggers(t)
	for _, tc := range []struct{ args, golden string }{
		{"triggers ls worker", "triggers-ls.golden"},
		{"triggers ls worker -o json", "triggers-ls.json.golden"},
		{"triggers get worker orders", "triggers-get.golden"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			r := runCmd(t, url, "", strings.Fields(tc.args)...)
			if r.err != nil {
				t.Fatalf("%s: %v", tc.args, r.err)
			}
			golden(t, tc.golden, r.stdout)
		})
	}

	r := runCmd(t, url, "", "triggers", "create", "worker", "orders", "--type", "kafka",
		"--config", `{"brokers": ["127.0.0.1:9092"], "topic": "orders"}`, "--batch-size", "100",
		"--batch-window", "0.5s", "--failure-destination", "nats:orders.failed", "--disabled")
	if r.err != nil {
		t.Fatal(r.err)
	}
	r = runCmd(t, url, "", "triggers", "update", "worker", "orders", "--max-retries", "0", "--failure-destination", "")
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, args := range [][]string{{"disable", "worker", "orders"}, {"enable", "worker", "orders"}, {"rm", "worker", "orders", "jobs"}} {
		if r := runCmd(t, url, "", append([]string{"triggers"}, args...)...); r.err != nil {
			t.Fatalf("%v: %v", args, r.err)
		}
	}
	want := []string{
		`GET /nimbus/v1/functions/worker/triggers`,
		`GET /nimbus/v1/functions/worker/triggers`,
		`GET /nimbus/v1/functions/worker/triggers/orders`,
		`POST /nimbus/v1/functions/worker/triggers {"name":"orders","type":"kafka","enabled":false,"config":{"brokers":["127.0.0.1:9092"],"topic":"orders"},"batchSize":100,"batchWindow":"500ms","failureDestination":"nats:orders.failed"}`,
		`PUT /nimbus/v1/functions/worker/triggers/orders {"maxRetries":0,"failureDestination":""}`,
		`POST /nimbus/v1/functions/worker/triggers/orders/disable`,
		`POST /nimbus/v1/functions/worker/triggers/orders/enable`,
		`DELETE /nimbus/v1/functions/worker/triggers/orders`,
		`DELETE /nimbus/v1/functions/worker/triggers/jobs`,
	}
	if got := f.requests(); !slices.Equal(got, want) {
		t.Errorf("requests:\ngot  %q\nwant %q", got, want)
	}
}

// TestTriggersLsShowsReason checks that ls shows why a trigger is in
// Error: on one line, cut in the table, whole with -o json.
func TestTriggersLsShowsReason(t *testing.T) {
	_, url := newFakeTriggers(t)
	r := runCmd(t, url, "", "triggers", "ls", "worker")
	if r.err != nil {
		t.Fatal(r.err)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasSuffix(strings.TrimSpace(lines[0]), "REASON") {
		t.Fatalf("table %q, want a header with REASON and two rows", r.stdout)
	}
	want := `queue "jobs" not found in vhost "/" (create it first): Ex...` // 60 characters
	if !strings.HasSuffix(lines[2], want) || !strings.HasSuffix(strings.TrimSpace(lines[1]), " -") {
		t.Errorf("rows %q, want the Error's reason on one line, cut at 60 characters (%q), and - for none", lines[1:], want)
	}
	r = runCmd(t, url, "", "triggers", "ls", "worker", "-o", "json")
	var ts []triggerView
	if err := json.Unmarshal([]byte(r.stdout), &ts); err != nil || len(ts) != 2 || ts[1].Status.Reason != jobsReason {
		t.Errorf("-o json: %v, %+v; want the whole reason", err, ts)
	}
}

func TestTriggersCommandErrors(t *testing.T) {
	f, url := newFakeTriggers(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"triggers", "ls", "nope"}, "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"},
		{[]string{"triggers", "create", "worker", "t"}, "--type is required: kafka, rabbitmq, nats, mqtt, redis, timer, s3 or http"},
		{[]string{"triggers", "create", "worker", "a.b", "--type", "kafka"}, `invalid trigger name "a.b": use 1 to 64 letters, digits, hyphens and underscores`},
		{[]string{"triggers", "create", "worker", "t", "--type", "kafka", "--config", "{"}, "--config is not valid JSON: unexpected end of JSON input"},
		{[]string{"triggers", "create", "worker", "t", "--type", "kafka", "--config", "[1]"}, `--config must be a JSON object, such as '{"topic": "orders"}'`},
		{[]string{"triggers", "create", "worker", "t", "--type", "kafka", "--config", "@/nonexistent.json"}, "--config: open /nonexistent.json: no such file or directory"},
		{[]string{"triggers", "create", "worker", "t", "--type", "kafka", "--batch-size", "0"}, "--batch-size must be 1 to 10000, not 0"},
		{[]string{"triggers", "create", "worker", "t", "--type", "kafka", "--batch-window", "6m"}, `--batch-window must be a duration from 0s to 5m (e.g. 500ms), not "6m"`},
		{[]string{"triggers", "update", "worker", "t", "--max-retries", "101"}, "--max-retries must be 0 to 100, not 101"},
		{[]string{"triggers", "update", "worker", "t", "--concurrency", "-1"}, "--concurrency must be 0 to 1000, not -1"},
		{[]string{"triggers", "update", "worker", "t"}, "nothing to update: give at least one of --config, --batch-size, --batch-window, --max-retries, --failure-destination, --concurrency"},
		{[]string{"triggers", "rm", "worker"}, "requires at least 2 arg(s), only received 1"},
		{[]string{"triggers", "get", "worker"}, "accepts 2 arg(s), received 1"},
	}
	for _, tt := range tests {
		r := runCmd(t, url, "", tt.args...)
		if got := OneLine(r.err); got != tt.want {
			t.Errorf("%v: got %q, want %q", tt.args, got, tt.want)
		}
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d requests reached the node, want 1 (the ls): the others are refused by the client", n)
	}
}

const triggersManifest = `functions:
  - name: worker
    runtime: python3.11
    handler: app.handler
    code: ./hello
    triggers:
      - name: orders
        type: kafka
        config:
          brokers: [127.0.0.1:9092]
          topic: orders
        batchSize: 100
        batchWindow: 500ms
        maxRetries: 0
        failureDestination: nats:orders.failed
      - name: nightly
        type: timer
        enabled: false
        config: {schedule: "0 3 * * *", payload: {full: true}}
  - name: other
    runtime: python3.11
    handler: app.handler
    code: ./hello
`

func TestManifestTriggers(t *testing.T) {
	var m manifest
	if _, err := parseManifest([]byte(triggersManifest), "/proj"); err != nil {
		t.Fatalf("parseManifest: %v", err)
	}
	if err := yaml.Unmarshal([]byte(triggersManifest), &m); err != nil {
		t.Fatal(err)
	}
	got := m.Functions[0].triggerSpecs()
	want := []triggerSpec{
		{Name: "orders", Type: "kafka", Enabled: true, Config: json.RawMessage(`{"brokers":["127.0.0.1:9092"],"topic":"orders"}`),
			BatchSize: 100, BatchWindow: 500 * time.Millisecond, MaxRetries: 0, FailureDestination: "nats:orders.failed"},
		{Name: "nightly", Type: "timer", Enabled: false, Config: json.RawMessage(`{"payload":{"full":true},"schedule":"0 3 * * *"}`),
			BatchSize: 1, MaxRetries: 3},
	}
	if got == nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("triggerSpecs:\ngot  %+v\nwant %+v", got, want)
	}
	if m.Functions[1].triggerSpecs() != nil {
		t.Error("a function without a triggers key got a list (its triggers would be deleted)")
	}
}

func TestManifestTriggerErrors(t *testing.T) {
	const base = "functions:\n  - name: hello\n    runtime: python3.11\n    handler: app.handler\n    code: .\n    triggers:\n"
	tests := []struct{ name, doc, want string }{
		{"unknown field", base + "      - name: t\n        type: kafka\n        batchsize: 3\n", `line 9: unknown field "batchsize"`},
		{"not a list", base + "      name: t\n", "line 7: cannot unmarshal !!map into a list of triggers"},
		{"missing name and type", base + "      - batchSize: 3\n", `line 7: functions[0] ("hello"): triggers[0]: name is required` + "\n" +
			`line 7: functions[0] ("hello"): triggers[0]: type is required: kafka, rabbitmq, nats, mqtt, redis, timer, s3 or http`},
		{"ranges", base + "      - name: t\n        type: kafka\n        batchSize: 10001\n        maxRetries: 101\n        concurrency: -1\n",
			`line 7: functions[0] ("hello"): triggers[0] ("t"): batchSize must be 1 to 10000, not 10001` + "\n" +
				`line 7: functions[0] ("hello"): triggers[0] ("t"): maxRetries must be 0 to 100, not 101` + "\n" +
				`line 7: functions[0] ("hello"): triggers[0] ("t"): concurrency must be 0 to 1000, not -1`},
		{"bad window", base + "      - name: t\n        type: kafka\n        batchWindow: 10m\n", "line 9: batchWindow must be a duration from 0s to 5m (e.g. 500ms)"},
		{"config a list", base + "      - name: t\n        type: kafka\n        config: [1]\n",
			`line 7: functions[0] ("hello"): triggers[0] ("t"): config must be a mapping of the type's settings (docs/triggers.md)`},
		{"duplicate", base + "      - {name: t, type: kafka}\n      - {name: t, type: redis}\n",
			`line 8: functions[0] ("hello"): triggers[1] ("t"): name "t" is taken by triggers[0]`},
		{"bad name", base + "      - {name: a.b, type: kafka}\n",
			`line 7: functions[0] ("hello"): triggers[0] ("a.b"): name "a.b" is invalid: use 1 to 64 letters, digits, hyphens and underscores`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseManifest([]byte(tt.doc), "/proj")
			if err == nil || err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestTriggersEndToEnd runs the commands and a manifest's trigger sync
// against a real node.
func TestTriggersEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := nodetest.Start(t, nil)
	endpoint := nodetest.Endpoint(n)
	mustRun := func(args ...string) result {
		t.Helper()
		r := runCmd(t, endpoint, "", args...)
		if r.err != nil {
			t.Fatalf("nimbus %s: %s", strings.Join(args, " "), OneLine(r.err))
		}
		return r
	}
	mustRun("deploy", "worker", "--runtime", "python3.11", "--handler", "app.handler", "--code", writeApp(t))

	cfg := `{"brokers":["127.0.0.1:1"],"topic":"orders"}`
	r := mustRun("triggers", "create", "worker", "orders", "--type", "kafka", "--config", cfg, "--batch-size", "10")
	for _, want := range []string{"Name:                orders\n", "Type:                kafka\n", "Batch:               10 messages, window 0s\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("create output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = mustRun("triggers", "ls", "worker")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "orders ") {
		t.Errorf("ls: got\n%s", r.stdout)
	}
	r = mustRun("triggers", "disable", "worker", "orders", "-o", "json")
	var v triggerView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Enabled || v.Status.State != "Disabled" {
		t.Errorf("disable -o json: got %q (%v)", r.stdout, err)
	}
	mustRun("triggers", "update", "worker", "orders", "--batch-window", "1s")
	r = runCmd(t, endpoint, "", "triggers", "create", "worker", "x", "--type", "kafka", "--config", `{"topic":"t"}`)
	if got := OneLine(r.err); !strings.HasPrefix(got, "InvalidParameterValueException: kafka trigger config: brokers is required") {
		t.Errorf("bad config: got %q", got)
	}
	r = runCmd(t, endpoint, "", "triggers", "get", "worker", "nope")
	if got := OneLine(r.err); got != "ResourceNotFoundException: Function worker has no trigger named nope" {
		t.Errorf("get unknown: got %q", got)
	}

	// A manifest's list: orders changes, ledger is new; then an empty list
	// removes both.
	want := []triggerSpec{
		{Name: "orders", Type: "kafka", Enabled: true, Config: json.RawMessage(cfg), BatchSize: 5, MaxRetries: 3},
		{Name: "ledger", Type: "kafka", Enabled: true, Config: json.RawMessage(`{"brokers":["127.0.0.1:1"],"topic":"ledger"}`), BatchSize: 1, MaxRetries: 0},
	}
	var progress strings.Builder
	c := newClient(endpoint, "us-east-1", aws.Credentials{})
	defer c.close()
	if err := syncTriggers(t.Context(), c, "worker", &want, &progress); err != nil {
		t.Fatal(OneLine(err))
	}
	if got := progress.String(); got != "Updated trigger orders of function worker.\nCreated trigger ledger of function worker.\n" {
		t.Errorf("sync progress: got %q", got)
	}
	progress.Reset()
	if err := syncTriggers(t.Context(), c, "worker", &want, &progress); err != nil || progress.Len() != 0 {
		t.Errorf("second sync: %v, %q; want no change", err, progress.String())
	}
	ts, _ := c.listTriggers(t.Context(), "worker")
	if len(ts) != 2 || ts[0].BatchSize != 5 || ts[0].BatchWindow != "0s" || !ts[0].Enabled || ts[1].MaxRetries != 0 {
		t.Errorf("after sync: got %+v", ts)
	}
	if err := syncTriggers(t.Context(), c, "worker", &[]triggerSpec{}, &progress); err != nil {
		t.Fatal(err)
	}
	if ts, _ := c.listTriggers(t.Context(), "worker"); len(ts) != 0 {
		t.Errorf("after an empty list: got %+v", ts)
	}
	mustRun("triggers", "create", "worker", "orders", "--type", "kafka", "--config", cfg)
	if r := mustRun("triggers", "rm", "worker", "orders"); r.stdout != "Deleted trigger orders of function worker.\n" {
		t.Errorf("rm: got %q", r.stdout)
	}

	// No output shows a trigger's secret.
	const secret = "s3cr3t-s3cr3t"
	for _, args := range [][]string{
		{"triggers", "create", "worker", "up", "--type", "s3", "--config", `{"bucket":"b","secret":"` + secret + `"}`},
		{"triggers", "get", "worker", "up"},
		{"triggers", "get", "worker", "up", "-o", "json"},
		{"triggers", "ls", "worker", "-o", "json"},
		{"triggers", "update", "worker", "up", "--batch-size", "2"},
	} {
		if r := mustRun(args...); strings.Contains(r.stdout, secret) || !strings.Contains(r.stdout, `"****"`) {
			t.Errorf("nimbus %s shows the secret, or not as ****:\n%s", strings.Join(args, " "), r.stdout)
		}
	}
}

func TestDeployManifestTriggers(t *testing.T) {
	n := nodetest.Start(t, nil)
	endpoint := nodetest.Endpoint(n)
	dir := t.TempDir()
	app := writeApp(t)
	doc := "functions:\n  - name: worker\n    runtime: python3.11\n    handler: app.handler\n    code: " + app + "\n" +
		"    triggers:\n      - name: orders\n        type: kafka\n        config: {brokers: [\"127.0.0.1:1\"], topic: orders}\n        batchSize: 10\n"
	path := dir + "/nimbus.yaml"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, endpoint, "", "deploy", "-f", path)
	if r.err != nil {
		t.Fatal(OneLine(r.err))
	}
	if !strings.Contains(r.stderr, "Created trigger orders of function worker.\n") {
		t.Errorf("stderr: %q", r.stderr)
	}
	bad := strings.Replace(doc, "topic: orders", "topic: ''", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runCmd(t, endpoint, "", "deploy", "-f", path)
	if got := OneLine(r.err); !strings.Contains(got, "deploy worker: update trigger orders: InvalidParameterValueException: kafka trigger config: topic is required") {
		t.Errorf("bad config: %q", got)
	}
}
