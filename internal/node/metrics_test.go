package node_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/metrics/metricstest"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// metricsPy succeeds, fails or outlasts its timeout as its event asks.
const metricsPy = `import time

def handler(event, context):
    if event.get("fail"):
        raise ValueError("boom")
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
`

// pythonRuntime is the host's Python runtime id.
func pythonRuntime(t *testing.T) string {
	t.Helper()
	for _, rt := range runtimes.Discover(slog.New(slog.DiscardHandler)) {
		if rt.Kind == runtimes.KindPython {
			return rt.ID
		}
	}
	testenv.Missing(t, "Python", nil)
	return ""
}

// createPython creates the metrics function (timeout 1 s) and waits until
// it is Active.
func createPython(t *testing.T, c *lambda.Client, name string) {
	t.Helper()
	_, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.Runtime(pythonRuntime(t)), Role: aws.String("arn:aws:iam::000000000000:role/x"),
		Handler: aws.String("app.handler"), Timeout: aws.Int32(1),
		Code: &types.FunctionCode{ZipFile: nodetest.Zip(t, map[string]string{"app.py": metricsPy})},
	})
	if err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	w := lambda.NewFunctionActiveV2Waiter(c)
	if err := w.Wait(t.Context(), &lambda.GetFunctionInput{FunctionName: aws.String(name)}, 30*time.Second); err != nil {
		t.Fatalf("wait for %s: %v", name, err)
	}
}

func parseScrape(t *testing.T, url string) metricstest.Families {
	t.Helper()
	code, _, body := metricstest.Get(t, url, "", "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return metricstest.Parse(t, strings.NewReader(body))
}

// TestMetricsEndToEnd: a real Python function succeeds (a cold start, then
// warm), fails, times out and runs asynchronously; a scrape of /metrics,
// on the API and on --metrics-addr, counts each by trigger and outcome,
// with the durations, the pools, the Async Service and the store; once
// the function is deleted its series are gone.
func TestMetricsEndToEnd(t *testing.T) {
	n := nodetest.Start(t, func(c *node.Config) { c.MetricsAddr = "127.0.0.1:0" })
	c := lambdaClient(n)
	createPython(t, c, "metered")
	invoke := func(payload string, typ types.InvocationType) *lambda.InvokeOutput {
		t.Helper()
		out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("metered"), Payload: []byte(payload), InvocationType: typ})
		if err != nil {
			t.Fatalf("invoke %s: %v", payload, err)
		}
		return out
	}
	for _, p := range []string{`{}`, `{}`} {
		if out := invoke(p, types.InvocationTypeRequestResponse); out.FunctionError != nil {
			t.Fatalf("invoke %s: function error %s", p, out.Payload)
		}
	}
	if out := invoke(`{"fail": true}`, types.InvocationTypeRequestResponse); out.FunctionError == nil {
		t.Fatal("the failing invoke succeeded")
	}
	if out := invoke(`{"sleep": 3}`, types.InvocationTypeRequestResponse); out.FunctionError == nil || !strings.Contains(string(out.Payload), "Sandbox.Timedout") {
		t.Fatalf("the sleeping invoke: %s, want a timeout", out.Payload)
	}
	invoke(`{}`, types.InvocationTypeEvent)

	api := nodetest.Endpoint(n) + "/metrics"
	var f metricstest.Families
	deadline := time.Now().Add(30 * time.Second)
	for {
		f = parseScrape(t, api)
		if v, _ := f.Value("faas_invocations_total", "function", "metered", "trigger", "async", "outcome", "success"); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the async invocation was never counted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A scrape reads the vectors one after another, not at one instant: the
	// scrape that saw the count may have read other vectors before the
	// invocation's end reached them. One begun after it sees them all.
	f = parseScrape(t, api)
	check := func(f metricstest.Families, want float64, name string, labels ...string) {
		t.Helper()
		if got, ok := f.Value(name, labels...); !ok || got != want {
			t.Errorf("%s%v = %v (found %v), want %v", name, labels, got, ok, want)
		}
	}
	atLeast := func(f metricstest.Families, least float64, name string, labels ...string) {
		t.Helper()
		if got, _ := f.Value(name, labels...); got < least {
			t.Errorf("%s%v = %v, want at least %v", name, labels, got, least)
		}
	}
	fn := []string{"function", "metered", "qualifier", "$LATEST"}
	check(f, 2, "faas_invocations_total", append(fn, "trigger", "api", "outcome", "success")...)
	check(f, 1, "faas_invocations_total", append(fn, "trigger", "api", "outcome", "function_error")...)
	check(f, 1, "faas_invocations_total", append(fn, "trigger", "api", "outcome", "timeout")...)
	check(f, 0, "faas_invocations_total", append(fn, "trigger", "api", "outcome", "throttled")...)
	check(f, 5, "faas_invocations_total", fn...)
	check(f, 2, "faas_errors_total", append(fn, "trigger", "api")...)
	check(f, 1, "faas_timeouts_total", append(fn, "trigger", "api")...)
	atLeast(f, 2, "faas_coldstarts_total", fn...) // the first invoke, and the one after the timeout killed its instance
	check(f, 4, "faas_invoke_duration_seconds", append(fn, "trigger", "api")...)
	if s := f.Sum("faas_invoke_duration_seconds", append(fn, "trigger", "api")...); s < 1 {
		t.Errorf("invoke durations sum to %v s, want at least the 1 s timeout", s)
	}
	atLeast(f, 2, "faas_init_duration_seconds", fn...)
	atLeast(f, 1, "nimbus_queue_duration_seconds", fn...)
	check(f, 1, "nimbus_async_events_submitted_total", "function", "metered")
	check(f, 1, "nimbus_async_event_age_seconds", "function", "metered")
	atLeast(f, 1, "nimbus_instances", append(fn, "state", "idle")...)
	check(f, 0, "nimbus_queue_depth", fn...)
	atLeast(f, 1, "nimbus_store_write_duration_seconds", "op", "kv_create")
	atLeast(f, 1, "nimbus_store_write_duration_seconds", "op", "blob_put")
	atLeast(f, 1, "nimbus_node_instances")
	if _, ok := f.Value("nimbus_sandbox_helpers_target"); !ok {
		t.Error("no nimbus_sandbox_helpers_target")
	}
	if _, ok := f.Value("go_goroutines"); !ok {
		t.Error("no go_goroutines")
	}

	// A timer trigger's ticks are counted as trigger deliveries and as
	// invocations by the timer.
	createPython(t, c, "ticked")
	if err := postTrigger(n, "ticked", `{"name":"often","type":"timer","config":{"schedule":"@every 1s"}}`); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		f = parseScrape(t, api)
		if v, _ := f.Value("nimbus_trigger_messages_delivered_total", "function", "ticked", "trigger", "timer"); v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no timer tick was counted as delivered")
		}
		time.Sleep(100 * time.Millisecond)
	}
	f = parseScrape(t, api) // the invocation's counts come before the delivery's: see above
	atLeast(f, 1, "faas_invocations_total", "function", "ticked", "trigger", "timer", "outcome", "success")
	atLeast(f, 1, "nimbus_trigger_batch_size", "function", "ticked", "trigger", "timer")
	atLeast(f, 1, "nimbus_trigger_lag_seconds", "function", "ticked", "trigger", "timer")
	if v, _ := f.Value("nimbus_trigger_messages_failed_total", "function", "ticked"); v != 0 {
		t.Errorf("%v timer ticks failed", v)
	}

	// The --metrics-addr listener serves the same, unauthenticated.
	other := parseScrape(t, "http://"+n.MetricsAddr()+"/metrics")
	check(other, 1, "faas_invocations_total", append(fn, "trigger", "api", "outcome", "function_error")...)

	if _, err := c.DeleteFunction(t.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String("metered")}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		f = parseScrape(t, api)
		left := 0
		for _, name := range []string{"faas_invocations_total", "faas_invoke_duration_seconds", "nimbus_async_events_submitted_total", "nimbus_instances"} {
			left += f.Series(name, "function", "metered")
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d series of the deleted function left", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMetricsAuth: with authentication on, /metrics on the API takes an
// admin key's HTTP Basic credentials (id and secret) or signature; no
// credentials, a developer key, or a wrong secret get Lambda's 403. The
// --metrics-addr listener needs none.
func TestMetricsAuth(t *testing.T) {
	var dir string
	n := nodetest.Start(t, func(c *node.Config) {
		c.Auth, c.MetricsAddr, c.PrestartedHelpers, dir = node.AuthSigV4, "127.0.0.1:0", 0, c.DataDir
	})
	sc, err := config.LoadSharedConfigProfile(t.Context(), "nimbus", func(o *config.LoadSharedConfigOptions) {
		o.CredentialsFiles, o.ConfigFiles = []string{filepath.Join(dir, "credentials")}, []string{}
	})
	if err != nil || !sc.Credentials.HasKeys() {
		t.Fatalf("admin key: %v", err)
	}
	admin := sc.Credentials
	sn := &signedNode{n: n, admin: admin}
	var dev struct{ AccessKeyId, SecretAccessKey string }
	if code := sn.call(t, admin, "POST", "/nimbus/v1/keys", map[string]string{"Name": "dev", "Role": "developer", "Functions": "*"}, &dev); code != 201 && code != 200 {
		t.Fatalf("create a developer key: %d", code)
	}
	api := nodetest.Endpoint(n) + "/metrics"
	for _, tt := range []struct {
		name, user, password string
		status               int
		errType              string
	}{
		{"no credentials", "", "", 403, "MissingAuthenticationTokenException"},
		{"admin key", admin.AccessKeyID, admin.SecretAccessKey, 200, ""},
		{"developer key", dev.AccessKeyId, dev.SecretAccessKey, 403, "AccessDeniedException"},
		{"wrong secret", admin.AccessKeyID, admin.SecretAccessKey + "x", 403, "UnrecognizedClientException"},
	} {
		code, h, body := metricstest.Get(t, api, tt.user, tt.password)
		if code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, code, body, tt.status)
			continue
		}
		if tt.errType == "" {
			if !strings.Contains(body, "faas_") && !strings.Contains(body, "go_goroutines") {
				t.Errorf("%s: body is not the metrics: %.200s", tt.name, body)
			}
			continue
		}
		var e struct{ Type, Message string }
		if json.Unmarshal([]byte(body), &e) != nil || e.Type != "User" || !strings.HasPrefix(h.Get("X-Amzn-ErrorType"), tt.errType) {
			t.Errorf("%s: %s (%s), want Lambda's %s", tt.name, body, h.Get("X-Amzn-ErrorType"), tt.errType)
		}
	}
	if code := signedScrape(t, n, admin); code != 200 {
		t.Errorf("signed by the admin key: %d, want 200", code)
	}
	if code, _, body := metricstest.Get(t, "http://"+n.MetricsAddr()+"/metrics", "", ""); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("--metrics-addr without credentials: %d %.200s, want the metrics", code, body)
	}
}

// signedScrape GETs /metrics on the API signed with creds.
func signedScrape(t *testing.T, n *node.Node, creds aws.Credentials) int {
	t.Helper()
	return nodetest.Call(t, nodetest.Endpoint(n), creds, http.MethodGet, "/metrics", nil, nil)
}
