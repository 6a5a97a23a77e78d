package async_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/destination"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/process"
	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
)

func TestMain(m *testing.M) {
	process.MaybeInit()
	os.Exit(m.Run())
}

// behaveZip is the code package of the engine's aws-lambda-go test
// function, built and zipped once: deflating a Go binary under the race
// detector takes seconds, which every test paid when each zipped its own.
var behaveZip = sync.OnceValues(func() ([]byte, error) {
	bin, err := behave()
	if err != nil {
		return nil, err
	}
	return zipped(map[string][]byte{"bootstrap": bin})
})

// behave compiles the engine's aws-lambda-go test function (stripped: a
// smaller package is quicker to upload, check and unpack).
func behave() ([]byte, error) {
	dir, err := os.MkdirTemp("", "nimbus-async-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bootstrap")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "../engine/testdata/behave")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, errors.New(string(out))
	}
	return os.ReadFile(bin)
}

// zipped makes a code package whose files are all executable.
func zipped(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(body); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// env is a node with the behave function deployed under name.
type env struct {
	t    *testing.T
	n    *node.Node
	base string
	lc   *lambda.Client
}

func start(t *testing.T, mod func(*node.Config)) *env {
	t.Helper()
	n := nodetest.Start(t, func(c *node.Config) {
		c.AsyncRetryBase = 20 * time.Millisecond
		c.AsyncAckWait = 10 * time.Second
		if mod != nil {
			mod(c)
		}
	})
	lc := lambda.New(lambda.Options{
		HTTPClient:   sdkhttp.Client(),
		BaseEndpoint: aws.String(nodetest.Endpoint(n)), Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
	})
	return &env{t: t, n: n, base: nodetest.Endpoint(n), lc: lc}
}

func (e *env) deploy(name string) {
	e.t.Helper()
	zip, err := behaveZip()
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = e.lc.CreateFunction(e.t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.RuntimeProvidedal2023, Role: aws.String("r"),
		Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(30),
	})
	if err != nil {
		e.t.Fatalf("CreateFunction %s: %v", name, err)
	}
}

// submit invokes asynchronously with the SDK and returns the request id.
func (e *env) submit(name, payload string) string {
	e.t.Helper()
	out, err := e.lc.Invoke(e.t.Context(), &lambda.InvokeInput{
		FunctionName: aws.String(name), InvocationType: types.InvocationTypeEvent, Payload: []byte(payload),
	})
	if err != nil {
		e.t.Fatalf("async Invoke %s: %v", name, err)
	}
	if out.StatusCode != http.StatusAccepted {
		e.t.Fatalf("async Invoke status = %d, want 202", out.StatusCode)
	}
	id, ok := awsmw.GetRequestIDMetadata(out.ResultMetadata)
	if !ok || id == "" {
		e.t.Fatal("async Invoke returned no request id")
	}
	return id
}

// do sends a raw request and decodes a JSON answer into out (if not nil).
func (e *env) do(method, path string, header map[string]string, body string, out any) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, resp.Header, string(b)
}

func (e *env) task(fn, id string) nimbus.Task {
	e.t.Helper()
	var t nimbus.Task
	if code, _, body := e.do("GET", "/nimbus/v1/functions/"+fn+"/tasks/"+id, nil, "", &t); code != 200 {
		e.t.Fatalf("get task %s: %d %s", id, code, body)
	}
	return t
}

// waitTask polls a task until cond holds.
func (e *env) waitTask(fn, id string, cond func(nimbus.Task) bool) nimbus.Task {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		t := e.task(fn, id)
		if cond(t) {
			return t
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s: still %+v", id, t)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func final(t nimbus.Task) bool { return nimbus.TaskFinal(t.Status) }

func TestSubmitRunsAndRecords(t *testing.T) {
	e := start(t, nil)
	e.deploy("echo")
	id := e.submit("echo", `{"echo":"hello"}`)
	got := e.waitTask("echo", id, final)
	if got.Status != nimbus.TaskSucceeded || got.Attempts != 1 || !strings.Contains(got.Result, "hello") {
		t.Fatalf("task = %+v, want Succeeded after 1 attempt with the echo", got)
	}
	if got.Started.IsZero() || got.Finished.IsZero() || got.Finished.Before(got.Created) {
		t.Errorf("timestamps = created %v started %v finished %v", got.Created, got.Started, got.Finished)
	}
	var list api.TaskList
	if code, _, body := e.do("GET", "/nimbus/v1/functions/echo/tasks?status=Succeeded", nil, "", &list); code != 200 || len(list.Tasks) != 1 || list.Tasks[0].ID != id {
		t.Fatalf("list = %d %s", code, body)
	}
}

func TestTaskIDIsIdempotent(t *testing.T) {
	e := start(t, nil)
	e.deploy("once")
	h := map[string]string{"X-Amz-Invocation-Type": "Event", "X-Nimbus-Task-Id": "order-42"}
	var ids []string
	for range 3 {
		code, hdr, body := e.do("POST", "/2015-03-31/functions/once/invocations", h, `{"sleep_ms":200}`, nil)
		if code != 202 {
			t.Fatalf("submit: %d %s", code, body)
		}
		ids = append(ids, hdr.Get("X-Nimbus-Task-Id"))
	}
	if ids[0] != "order-42" || ids[1] != ids[0] || ids[2] != ids[0] {
		t.Fatalf("task ids = %v, want order-42 thrice", ids)
	}
	// Function Compute's header is accepted too.
	fc := map[string]string{"X-Amz-Invocation-Type": "Event", "x-fc-async-task-id": "order-42"}
	if _, hdr, _ := e.do("POST", "/2015-03-31/functions/once/invocations", fc, `{}`, nil); hdr.Get("X-Nimbus-Task-Id") != "order-42" {
		t.Fatalf("fc task id = %q", hdr.Get("X-Nimbus-Task-Id"))
	}
	got := e.waitTask("once", "order-42", final)
	if got.Status != nimbus.TaskSucceeded || got.Attempts != 1 {
		t.Fatalf("task = %+v, want one successful attempt", got)
	}
	var list api.TaskList
	e.do("GET", "/nimbus/v1/functions/once/tasks", nil, "", &list)
	if len(list.Tasks) != 1 {
		t.Fatalf("tasks = %d, want 1", len(list.Tasks))
	}
}

func TestFailingFunctionRetriesThenDeadLetters(t *testing.T) {
	e := start(t, nil)
	e.deploy("bad")
	id := e.submit("bad", `{"error":"boom"}`)
	got := e.waitTask("bad", id, final)
	if got.Status != nimbus.TaskFailed || got.Attempts != 1+nimbus.DefaultRetryAttempts || !strings.Contains(got.Error, "boom") {
		t.Fatalf("task = %+v, want Failed after %d attempts with boom", got, 1+nimbus.DefaultRetryAttempts)
	}
	var dl api.DeadLetterList
	if code, _, body := e.do("GET", "/nimbus/v1/functions/bad/dead-letters", nil, "", &dl); code != 200 || len(dl.DeadLetters) != 1 {
		t.Fatalf("dead letters: %d %s", code, body)
	}
	d := dl.DeadLetters[0]
	if d.TaskID != id || d.Condition != "RetriesExhausted" || d.Attempts != 3 || string(d.Payload) != `{"error":"boom"}` {
		t.Fatalf("dead letter = %+v", d)
	}
	// Re-drive: it runs again (and fails again), and leaves the list meanwhile.
	var rr api.RedriveResult
	if code, _, body := e.do("POST", "/nimbus/v1/functions/bad/dead-letters/redrive", nil, "", &rr); code != 200 || rr.Redriven != 1 {
		t.Fatalf("redrive: %d %s", code, body)
	}
	again := e.waitTask("bad", id, func(t nimbus.Task) bool { return final(t) && t.Updated.After(got.Updated) })
	if again.Status != nimbus.TaskFailed || again.Attempts != 3 {
		t.Fatalf("re-driven task = %+v", again)
	}
	e.do("GET", "/nimbus/v1/functions/bad/dead-letters", nil, "", &dl)
	if len(dl.DeadLetters) != 1 || dl.DeadLetters[0].Seq == d.Seq {
		t.Fatalf("dead letters after redrive = %+v, want one new", dl.DeadLetters)
	}
}

func TestStop(t *testing.T) {
	e := start(t, nil)
	e.deploy("slow")
	// A running task is killed.
	id := e.submit("slow", `{"sleep_ms":20000}`)
	e.waitTask("slow", id, func(t nimbus.Task) bool { return t.Status == nimbus.TaskRunning })
	var st nimbus.Task
	if code, _, body := e.do("POST", "/nimbus/v1/functions/slow/tasks/"+id+"/stop", nil, "", &st); code != 200 {
		t.Fatalf("stop: %d %s", code, body)
	}
	start := time.Now()
	got := e.waitTask("slow", id, final)
	if got.Status != nimbus.TaskStopped || time.Since(start) > 10*time.Second {
		t.Fatalf("task = %+v after %s, want Stopped at once", got, time.Since(start))
	}
	// Stopping a finished task is a conflict.
	if code, _, body := e.do("POST", "/nimbus/v1/functions/slow/tasks/"+id+"/stop", nil, "", nil); code != 409 || !strings.Contains(body, "already finished") {
		t.Fatalf("stop again: %d %s", code, body)
	}
	// An enqueued task never runs: keep the function from running anything.
	zero := int32(0)
	if _, err := e.lc.PutFunctionConcurrency(t.Context(), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("slow"), ReservedConcurrentExecutions: &zero}); err != nil {
		t.Fatal(err)
	}
	id2 := e.submit("slow", `{}`)
	if code, _, body := e.do("POST", "/nimbus/v1/functions/slow/tasks/"+id2+"/stop", nil, "", &st); code != 200 || st.Status != nimbus.TaskStopped {
		t.Fatalf("stop enqueued: %d %s", code, body)
	}
	if _, err := e.lc.DeleteFunctionConcurrency(t.Context(), &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("slow")}); err != nil {
		t.Fatal(err)
	}
	id3 := e.submit("slow", `{}`)
	e.waitTask("slow", id3, final)
	if got := e.task("slow", id2); got.Status != nimbus.TaskStopped || got.Attempts != 0 {
		t.Fatalf("stopped enqueued task = %+v, want Stopped without attempts", got)
	}
}

func TestBadInput(t *testing.T) {
	e := start(t, func(c *node.Config) { c.AsyncMaxPayload = 1000 })
	e.deploy("f")
	ev := map[string]string{"X-Amz-Invocation-Type": "Event"}
	big := fmt.Sprintf(`{"x":%q}`, strings.Repeat("a", 1000))
	cases := []struct {
		name, method, path, body string
		header                   map[string]string
		code                     int
		want                     string
	}{
		{"unknown function", "POST", "/2015-03-31/functions/nope/invocations", `{}`, ev, 404, "Function not found"},
		{"payload too large", "POST", "/2015-03-31/functions/f/invocations", big, ev, 413, "smaller than 1000 bytes"},
		{"not json", "POST", "/2015-03-31/functions/f/invocations", `{`, ev, 400, "json"},
		{"malformed task id", "POST", "/2015-03-31/functions/f/invocations", `{}`,
			map[string]string{"X-Amz-Invocation-Type": "Event", "X-Nimbus-Task-Id": "a/b c"}, 400, "Invalid task id"},
		{"get malformed task id", "GET", "/nimbus/v1/functions/f/tasks/a%20b", "", nil, 400, "Invalid task id"},
		{"unknown task", "GET", "/nimbus/v1/functions/f/tasks/nope", "", nil, 404, "not found"},
		{"stop unknown task", "POST", "/nimbus/v1/functions/f/tasks/nope/stop", "", nil, 404, "not found"},
		{"bad status filter", "GET", "/nimbus/v1/functions/f/tasks?status=Done", "", nil, 400, "status must be"},
		{"bad limit", "GET", "/nimbus/v1/functions/f/tasks?limit=0x", "", nil, 400, "limit must be"},
		{"limit out of range", "GET", "/nimbus/v1/functions/f/tasks?limit=5000", "", nil, 400, "limit must be"},
		{"bad since", "GET", "/nimbus/v1/functions/f/tasks?since=yesterday", "", nil, 400, "RFC 3339"},
		{"bad function name", "GET", "/nimbus/v1/functions/a%20b/tasks", "", nil, 400, ""},
		{"bad dlq marker", "GET", "/nimbus/v1/functions/f/dead-letters?marker=x", "", nil, 400, "marker"},
		{"redrive unknown function", "POST", "/nimbus/v1/functions/nope/dead-letters/redrive", "", nil, 404, ""},
		{"redrive bad body", "POST", "/nimbus/v1/functions/f/dead-letters/redrive", `{"seqs":"x"}`, nil, 400, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := e.do(c.method, c.path, c.header, c.body, nil)
			if code != c.code || !strings.Contains(body, c.want) {
				t.Fatalf("%s %s = %d %s, want %d containing %q", c.method, c.path, code, body, c.code, c.want)
			}
		})
	}
}

// starts counts the runs of a request on this node: its invocation
// records that name the node (each attempt leaves one, within the records'
// 50 ms flush).
func (e *env) starts(fn, id string) int {
	e.t.Helper()
	var n int
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, _, body := e.do("GET", "/nimbus/v1/functions/"+fn+"/invocations?limit=1000", nil, "", nil)
		var page struct {
			Invocations []struct{ RequestId, Node string }
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			e.t.Fatalf("invocations of %s: %v: %s", fn, err, body)
		}
		n = 0
		seen := false
		for _, r := range page.Invocations {
			if r.RequestId == id {
				seen = true
				if r.Node == e.n.ID() {
					n++
				}
			}
		}
		if seen || time.Now().After(deadline) {
			return n
		}
	}
}

func TestLongInvocationIsNotRedelivered(t *testing.T) {
	e := start(t, func(c *node.Config) { c.AsyncAckWait = 3 * time.Second })
	e.deploy("long")
	id := e.submit("long", `{"sleep_ms":7000}`)
	got := e.waitTask("long", id, final)
	if got.Status != nimbus.TaskSucceeded || got.Attempts != 1 {
		t.Fatalf("task = %+v", got)
	}
	if n := e.starts("long", id); n != 1 {
		t.Fatalf("the event started %d times, want once (heartbeats keep it in progress)", n)
	}
}

func TestFunctionDeletedWhileEventsWait(t *testing.T) {
	e := start(t, nil)
	e.deploy("gone")
	zero := int32(0)
	if _, err := e.lc.PutFunctionConcurrency(t.Context(), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("gone"), ReservedConcurrentExecutions: &zero}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		ids = append(ids, e.submit("gone", `{}`))
	}
	if _, err := e.lc.DeleteFunction(t.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String("gone")}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		got := e.waitTask("gone", id, final)
		if got.Status != nimbus.TaskFailed || !strings.Contains(got.Error, "deleted") {
			t.Fatalf("task = %+v, want Failed because the function was deleted", got)
		}
	}
}

func TestFairnessAcrossFunctions(t *testing.T) {
	e := start(t, func(c *node.Config) { c.AsyncConcurrency = 2 })
	e.deploy("busy")
	e.deploy("quiet")
	const backlog = 300
	var wg sync.WaitGroup
	for i := range backlog {
		wg.Go(func() {
			h := map[string]string{"X-Amz-Invocation-Type": "Event", "X-Nimbus-Task-Id": fmt.Sprintf("b%d", i)}
			if code, _, body := e.do("POST", "/2015-03-31/functions/busy/invocations", h, `{"sleep_ms":20}`, nil); code != 202 {
				t.Errorf("submit: %d %s", code, body)
			}
		})
	}
	wg.Wait()
	id := e.submit("quiet", `{}`)
	e.waitTask("quiet", id, final)
	var list api.TaskList
	e.do("GET", "/nimbus/v1/functions/busy/tasks?status=Succeeded&limit=1000", nil, "", &list)
	if done := len(list.Tasks); done > backlog/2 {
		t.Fatalf("quiet's one event waited until %d of busy's %d had run", done, backlog)
	}
}

// TestTwoNodesShareTheWork: events submitted to one node run on both once
// that node has more than it can run at once (any node may claim any
// function's next event), and each runs once.
func TestTwoNodesShareTheWork(t *testing.T) {
	prefix := nodetest.SharedNATSPrefix(t)
	shared := func(c *node.Config) {
		c.NATSURL, c.NATSPrefix = nodetest.SharedNATS, prefix
		c.AsyncConcurrency = 2
	}
	a := start(t, shared)
	b := start(t, shared)
	a.deploy("shared")
	var ids []string
	for range 40 {
		ids = append(ids, a.submit("shared", `{"sleep_ms":50}`))
	}
	for _, id := range ids {
		got := b.waitTask("shared", id, final) // b's index sees a's records
		if got.Status != nimbus.TaskSucceeded {
			t.Fatalf("task = %+v", got)
		}
	}
	ranOnA, ranOnB := 0, 0
	for _, id := range ids {
		ranOnA += a.starts("shared", id)
		ranOnB += b.starts("shared", id)
	}
	for _, id := range ids {
		if na, nb := a.starts("shared", id), b.starts("shared", id); na+nb != 1 {
			t.Logf("%s: %d on a, %d on b; task %+v", id, na, nb, a.task("shared", id))
		}
	}
	if ranOnA+ranOnB != len(ids) || ranOnA == 0 || ranOnB == 0 {
		t.Fatalf("runs on a = %d, on b = %d; want %d in all, shared by both", ranOnA, ranOnB, len(ids))
	}
}

func (e *env) eventConfig(name string, in *lambda.PutFunctionEventInvokeConfigInput) {
	e.t.Helper()
	in.FunctionName = aws.String(name)
	if _, err := e.lc.PutFunctionEventInvokeConfig(e.t.Context(), in); err != nil {
		e.t.Fatalf("PutFunctionEventInvokeConfig: %v", err)
	}
}

func (e *env) deployPy(name, src string) {
	e.t.Helper()
	_, err := e.lc.CreateFunction(e.t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.RuntimePython311, Role: aws.String("r"),
		Handler: aws.String("app.handler"), Code: &types.FunctionCode{ZipFile: nodetest.Zip(e.t, map[string]string{"app.py": src})},
	})
	if err != nil {
		e.t.Fatalf("CreateFunction %s: %v", name, err)
	}
}

func TestDestinations(t *testing.T) {
	e := start(t, func(c *node.Config) { c.DestinationBackoff = 10 * time.Millisecond })
	e.deploy("work")
	// The failure destination is a function that answers with the record's
	// condition and invoke count.
	e.deployPy("sink", "def handler(e, c):\n    rc = e['requestContext']\n    return [rc['condition'], rc['approximateInvokeCount'], e['requestPayload'], e['responseContext']['functionError'], e['responsePayload']['errorMessage']]\n")
	hooks := make(chan *http.Request, 10)
	bodies := make(chan []byte, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := destination.Verify("s3cret", r.Header, b, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		hooks <- r
		bodies <- b
	}))
	defer hook.Close()
	e.eventConfig("work", &lambda.PutFunctionEventInvokeConfigInput{
		MaximumRetryAttempts: aws.Int32(1),
		DestinationConfig: &types.DestinationConfig{
			OnSuccess: &types.OnSuccess{Destination: aws.String(hook.URL + "/done")},
			OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:lambda:us-east-1:000000000000:function:sink")},
		},
	})
	// The secret is a Nimbus extension the SDK cannot send.
	secret := `{"MaximumRetryAttempts":1,"DestinationConfig":{"OnSuccess":{"Destination":"` + hook.URL + `/done"},"OnFailure":{"Destination":"sink"}},"NimbusDestinationSecret":"s3cret"}`
	if code, _, body := e.do("PUT", "/2019-09-25/functions/work/event-invoke-config", nil, secret, nil); code != 200 {
		t.Fatalf("put config: %d %s", code, body)
	}

	ok := e.submit("work", `{"echo":"fine"}`)
	got := e.waitTask("work", ok, final)
	if got.Status != nimbus.TaskSucceeded || got.DestinationStatus != "Delivered" {
		t.Fatalf("task = %+v, want Succeeded and Delivered", got)
	}
	var rec struct {
		Version        string `json:"version"`
		RequestContext struct {
			RequestID, Condition   string
			ApproximateInvokeCount int
		} `json:"requestContext"`
		RequestPayload  map[string]any `json:"requestPayload"`
		ResponsePayload map[string]any `json:"responsePayload"`
	}
	select {
	case b := <-bodies:
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook delivery")
	}
	if rec.Version != "1.0" || rec.RequestContext.RequestID != ok || rec.RequestContext.Condition != "Success" ||
		rec.RequestPayload["echo"] != "fine" || rec.ResponsePayload["echo"] != "fine" {
		t.Fatalf("success record = %+v", rec)
	}

	bad := e.submit("work", `{"error":"boom"}`)
	got = e.waitTask("work", bad, final)
	if got.Status != nimbus.TaskFailed || got.Attempts != 2 || got.DestinationStatus != "Delivered" {
		t.Fatalf("task = %+v, want Failed after 2 attempts and Delivered", got)
	}
	var sinkTasks api.TaskList
	deadline := time.Now().Add(30 * time.Second)
	for len(sinkTasks.Tasks) == 0 || !final(sinkTasks.Tasks[0]) {
		if time.Now().After(deadline) {
			t.Fatalf("the failure destination never ran: %+v", sinkTasks)
		}
		time.Sleep(50 * time.Millisecond)
		e.do("GET", "/nimbus/v1/functions/sink/tasks", nil, "", &sinkTasks)
	}
	if r := sinkTasks.Tasks[0].Result; r != `["RetriesExhausted", 2, {"error": "boom"}, "Unhandled", "boom"]` {
		t.Fatalf("failure record as the sink saw it = %s", r)
	}
}

func TestDestinationDownIsRecorded(t *testing.T) {
	e := start(t, func(c *node.Config) { c.DestinationBackoff = 10 * time.Millisecond })
	e.deploy("work")
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL
	down.Close()
	e.eventConfig("work", &lambda.PutFunctionEventInvokeConfigInput{
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(url)}},
	})
	id := e.submit("work", `{}`)
	got := e.waitTask("work", id, final)
	if got.Status != nimbus.TaskSucceeded || !strings.HasPrefix(got.DestinationStatus, "Failed") || got.Destination != url {
		t.Fatalf("task = %+v, want Succeeded with a failed delivery to %s", got, url)
	}
}

func TestEventOlderThanItsAgeExpires(t *testing.T) {
	// The first retry would come after the event's maximum age (60 s).
	e := start(t, func(c *node.Config) { c.AsyncRetryBase = 4 * time.Minute })
	e.deploy("old")
	e.eventConfig("old", &lambda.PutFunctionEventInvokeConfigInput{MaximumEventAgeInSeconds: aws.Int32(60), MaximumRetryAttempts: aws.Int32(8)})
	id := e.submit("old", `{"error":"boom"}`)
	got := e.waitTask("old", id, final)
	if got.Status != nimbus.TaskExpired || got.Attempts != 1 {
		t.Fatalf("task = %+v, want Expired after one attempt", got)
	}
	var dl api.DeadLetterList
	e.do("GET", "/nimbus/v1/functions/old/dead-letters", nil, "", &dl)
	if len(dl.DeadLetters) != 1 || dl.DeadLetters[0].Condition != "EventAgeExceeded" {
		t.Fatalf("dead letters = %+v", dl)
	}
}

func TestRateLimit(t *testing.T) {
	e := start(t, nil)
	e.deploy("paced")
	if code, _, body := e.do("PUT", "/2019-09-25/functions/paced/event-invoke-config", nil, `{"NimbusMaxEventsPerSecond":5}`, nil); code != 200 {
		t.Fatalf("put config: %d %s", code, body)
	}
	var ids []string
	for range 15 {
		ids = append(ids, e.submit("paced", `{}`))
	}
	var first, last time.Time
	for _, id := range ids {
		got := e.waitTask("paced", id, final)
		if first.IsZero() || got.Started.Before(first) {
			first = got.Started
		}
		if got.Started.After(last) {
			last = got.Started
		}
	}
	// A burst of 5, then 5 per second: the 15th starts >= 2 s after the first.
	if span := last.Sub(first); span < 1900*time.Millisecond {
		t.Fatalf("15 events started within %s; a limit of 5/s needs at least 2 s", span)
	}
}

// TestDeadLetterTarget: an event that fails for good goes to the function's
// DeadLetterConfig target as itself, with why it failed in headers, as
// Lambda sends it to a dead-letter queue.
func TestDeadLetterTarget(t *testing.T) {
	e := start(t, nil)
	type delivery struct {
		header http.Header
		body   []byte
	}
	got := make(chan delivery, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{r.Header.Clone(), b}
	}))
	defer hook.Close()
	e.deploy("doomed")
	if _, err := e.lc.UpdateFunctionConfiguration(t.Context(), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("doomed"), DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(hook.URL + "/dlq")},
	}); err != nil {
		t.Fatalf("set the dead-letter target: %v", err)
	}
	e.eventConfig("doomed", &lambda.PutFunctionEventInvokeConfigInput{MaximumRetryAttempts: aws.Int32(0)})
	id := e.submit("doomed", `{"error":"boom"}`)
	task := e.waitTask("doomed", id, final)
	if task.Status != nimbus.TaskFailed || task.DestinationStatus != "Delivered" {
		t.Errorf("task = %+v, want Failed, its dead letter delivered", task)
	}
	select {
	case d := <-got:
		if string(d.body) != `{"error":"boom"}` {
			t.Errorf("dead-letter body = %s, want the event itself", d.body)
		}
		if d.header.Get("X-Nimbus-Request-Id") != id || d.header.Get("X-Nimbus-Error-Code") != async.CondRetriesExhausted ||
			!strings.Contains(d.header.Get("X-Nimbus-Error-Message"), "boom") {
			t.Errorf("dead-letter headers = %v", d.header)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the dead-letter target got nothing")
	}
}
