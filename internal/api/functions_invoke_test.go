package api_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// goBootstrap compiles the engine's aws-lambda-go test function once.
var goBootstrap = sync.OnceValues(func() ([]byte, error) { return buildStatic("../engine/testdata/behave") })

// buildStatic compiles the Go program in dir (relative to this package)
// as a static binary (CGO_ENABLED=0: it runs in any instance's root) and
// returns it.
func buildStatic(dir string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "nimbus-gofn-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bootstrap")
	cmd := exec.Command("go", "build", "-o", bin, dir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, errors.New(string(out))
	}
	return os.ReadFile(bin)
}

type fixture struct {
	name, runtime, handler string
	zip                    []byte
	memory, timeout        int32
}

func deploy(t *testing.T, c *lambda.Client, f fixture) {
	t.Helper()
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(f.name), Runtime: types.Runtime(f.runtime), Role: aws.String("r"),
		Code: &types.FunctionCode{ZipFile: f.zip},
	}
	if f.handler != "" {
		in.Handler = aws.String(f.handler)
	}
	if f.memory != 0 {
		in.MemorySize = aws.Int32(f.memory)
	}
	if f.timeout != 0 {
		in.Timeout = aws.Int32(f.timeout)
	}
	if _, err := c.CreateFunction(t.Context(), in); err != nil {
		t.Fatalf("CreateFunction %s: %v", f.name, err)
	}
}

func invoke(t *testing.T, c *lambda.Client, name, payload string) *lambda.InvokeOutput {
	t.Helper()
	out, err := c.Invoke(t.Context(), &lambda.InvokeInput{
		FunctionName: aws.String(name), Payload: []byte(payload), LogType: types.LogTypeTail,
	})
	if err != nil {
		t.Fatalf("Invoke %s: %v", name, err)
	}
	return out
}

type fnError struct {
	ErrorType    string   `json:"errorType"`
	ErrorMessage string   `json:"errorMessage"`
	StackTrace   []string `json:"stackTrace"`
}

func wantFunctionError(t *testing.T, out *lambda.InvokeOutput, wantType, wantMsg string) fnError {
	t.Helper()
	var fe fnError
	if aws.ToString(out.FunctionError) != "Unhandled" {
		t.Errorf("X-Amz-Function-Error = %q, want Unhandled (payload %s)", aws.ToString(out.FunctionError), out.Payload)
	}
	if err := json.Unmarshal(out.Payload, &fe); err != nil {
		t.Fatalf("error payload %q: %v", out.Payload, err)
	}
	if fe.ErrorType != wantType || !strings.Contains(fe.ErrorMessage, wantMsg) {
		t.Errorf("error = %+v, want type %s, message containing %q", fe, wantType, wantMsg)
	}
	return fe
}

func tail(out *lambda.InvokeOutput) string {
	b, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	return string(b)
}

const pyFunctions = `import os, time
def echo(event, context):
    print("hello from python")
    return {"event": event, "request_id": context.aws_request_id, "name": context.function_name,
            "memory": context.memory_limit_in_mb, "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 30000,
            "uid": os.getuid(), "task_root": os.environ["LAMBDA_TASK_ROOT"]}
def fail(event, context):
    raise ValueError("bad value")
def sleep(event, context):
    time.sleep(event.get("s", 1))
    return "slept"
def hog(event, context):
    chunks = []
    for i in range(event["mb"]):
        chunks.append(bytearray(1 << 20))
    return len(chunks)
def write_code(event, context):
    open(os.environ["LAMBDA_TASK_ROOT"] + "/x", "w").write("x")
    return "wrote"
`

func TestInvokeRuntimes(t *testing.T) {
	node := nodetest.NodeRuntime(t)
	n := nodetest.Start(t, nil)
	c := client(n)
	py := nodetest.Zip(t, map[string]string{"app.py": pyFunctions})
	goBin, err := goBootstrap()
	if err != nil {
		t.Fatalf("build Go function: %v", err)
	}
	fixtures := []fixture{
		{name: "py-echo", runtime: "python3.11", handler: "app.echo", zip: py, timeout: 30},
		{name: "py-fail", runtime: "python3.11", handler: "app.fail", zip: py},
		{name: "py-missing", runtime: "python3.11", handler: "nomodule.handler", zip: py},
		{name: "node-cjs", runtime: node, handler: "index.handler", zip: nodetest.Zip(t, map[string]string{
			"index.js": "exports.handler = async (event, context) => { console.log('hi from node'); return {cjs: event.n * 2, id: context.awsRequestId}; };",
		})},
		{name: "node-esm", runtime: node, handler: "index.handler", zip: nodetest.Zip(t, map[string]string{
			"index.mjs": "export const handler = async (event) => ({esm: event.n + 1});",
		})},
		{name: "node-callback", runtime: node, handler: "cb.handler", zip: nodetest.Zip(t, map[string]string{
			"cb.js": "exports.handler = (event, context, callback) => { callback(null, {cb: true}); };",
		})},
		{name: "node-throw", runtime: node, handler: "t.handler", zip: nodetest.Zip(t, map[string]string{
			"t.js": "exports.handler = async () => { throw new TypeError('nope'); };",
		})},
		{name: "go-fn", runtime: "provided.al2023", zip: nodetest.Zip(t, map[string][]byte{"bootstrap": goBin}, "bootstrap")},
		{name: "http-fn", runtime: "http", zip: nodetest.Zip(t, map[string][]byte{
			"bootstrap": []byte("#!/bin/sh\nexec /usr/bin/python3 server.py\n"),
			"server.py": []byte(httpServer),
		}, "bootstrap")},
	}
	for _, f := range fixtures {
		deploy(t, c, f)
	}

	t.Run("python", func(t *testing.T) {
		out := invoke(t, c, "py-echo", `{"name":"Ada"}`)
		var got struct {
			Event     map[string]string
			RequestID string `json:"request_id"`
			Name      string
			Memory    any
			Remaining bool `json:"remaining_ok"`
			UID       int
			TaskRoot  string `json:"task_root"`
		}
		if err := json.Unmarshal(out.Payload, &got); err != nil || out.FunctionError != nil {
			t.Fatalf("payload %s (%v, error %v)\nlog:\n%s", out.Payload, err, aws.ToString(out.FunctionError), tail(out))
		}
		if got.Event["name"] != "Ada" || got.Name != "py-echo" || got.RequestID == "" || !got.Remaining {
			t.Errorf("python saw %+v", got)
		}
		if os.Geteuid() == 0 && got.UID == 0 {
			t.Error("the function ran as root")
		}
		logs := tail(out)
		if !strings.Contains(logs, "hello from python") || !strings.Contains(logs, "REPORT RequestId: "+got.RequestID) {
			t.Errorf("log tail:\n%s", logs)
		}
	})
	t.Run("python error", func(t *testing.T) {
		fe := wantFunctionError(t, invoke(t, c, "py-fail", `{}`), "ValueError", "bad value")
		if len(fe.StackTrace) == 0 {
			t.Error("no stackTrace")
		}
	})
	t.Run("python init error", func(t *testing.T) {
		for range 3 {
			wantFunctionError(t, invoke(t, c, "py-missing", `{}`), "Runtime.ImportModuleError", "nomodule")
		}
	})
	t.Run("node", func(t *testing.T) {
		out := invoke(t, c, "node-cjs", `{"n":21}`)
		if !strings.Contains(string(out.Payload), `"cjs":42`) || !strings.Contains(tail(out), "hi from node") {
			t.Errorf("node-cjs = %s\n%s", out.Payload, tail(out))
		}
		if out := invoke(t, c, "node-esm", `{"n":1}`); string(out.Payload) != `{"esm":2}` {
			t.Errorf("node-esm = %s", out.Payload)
		}
		if out := invoke(t, c, "node-callback", `{}`); string(out.Payload) != `{"cb":true}` {
			t.Errorf("node-callback = %s", out.Payload)
		}
		wantFunctionError(t, invoke(t, c, "node-throw", `{}`), "TypeError", "nope")
	})
	t.Run("go aws-lambda-go", func(t *testing.T) {
		out := invoke(t, c, "go-fn", `{"echo":"gopher"}`)
		if !strings.Contains(string(out.Payload), `"echo":"gopher"`) {
			t.Errorf("go-fn = %s", out.Payload)
		}
		wantFunctionError(t, invoke(t, c, "go-fn", `{"error":"go boom"}`), "errorString", "go boom")
	})
	t.Run("http function", func(t *testing.T) {
		out := invoke(t, c, "http-fn", `{"q":1}`)
		if string(out.Payload) != `{"method": "POST", "body": {"q": 1}}` {
			t.Errorf("http-fn = %s", out.Payload)
		}
	})
}

const httpServer = `import http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = json.dumps({"method": "POST", "body": json.loads(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

func TestInvokeLimitsAndFaults(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	py := nodetest.Zip(t, map[string]string{"app.py": pyFunctions})
	deploy(t, c, fixture{name: "sleepy", runtime: "python3.11", handler: "app.sleep", zip: py, timeout: 1})
	deploy(t, c, fixture{name: "hog", runtime: "python3.11", handler: "app.hog", zip: py, memory: 128, timeout: 30})
	deploy(t, c, fixture{name: "writer", runtime: "python3.11", handler: "app.write_code", zip: py})
	deploy(t, c, fixture{name: "echo", runtime: "python3.11", handler: "app.echo", zip: py, timeout: 10})

	t.Run("timeout", func(t *testing.T) {
		wantFunctionError(t, invoke(t, c, "sleepy", `{"s":5}`), "Sandbox.Timedout", "Task timed out after 1.00 seconds")
		if out := invoke(t, c, "sleepy", `{"s":0}`); string(out.Payload) != `"slept"` {
			t.Errorf("after a timeout: %s", out.Payload)
		}
	})
	t.Run("out of memory", func(t *testing.T) {
		wantFunctionError(t, invoke(t, c, "hog", `{"mb":400}`), "Runtime.OutOfMemory", "out of memory")
		if out := invoke(t, c, "hog", `{"mb":10}`); string(out.Payload) != "10" {
			t.Errorf("after an OOM kill: %s %s", out.Payload, aws.ToString(out.FunctionError))
		}
	})
	t.Run("code is read-only", func(t *testing.T) {
		out := invoke(t, c, "writer", `{}`)
		if out.FunctionError == nil {
			t.Errorf("a function wrote into its code directory: %s", out.Payload)
		}
	})
	t.Run("dry run", func(t *testing.T) {
		out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("echo"), InvocationType: types.InvocationTypeDryRun})
		if err != nil || out.StatusCode != http.StatusNoContent {
			t.Errorf("DryRun = %v, %v; want 204", out, err)
		}
	})
	t.Run("payload too large", func(t *testing.T) {
		big := `{"x":"` + strings.Repeat("a", 6<<20) + `"}`
		_, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(big)})
		var rtl *types.RequestTooLargeException
		if !errors.As(err, &rtl) {
			t.Errorf("7 MB payload: err = %v, want RequestTooLargeException", err)
		}
	})
	t.Run("payload not JSON", func(t *testing.T) {
		_, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte("{nope")})
		var irc *types.InvalidRequestContentException
		if !errors.As(err, &irc) {
			t.Errorf("bad payload: err = %v, want InvalidRequestContentException", err)
		}
	})
	t.Run("throttled", func(t *testing.T) {
		if _, err := c.PutFunctionConcurrency(t.Context(), &lambda.PutFunctionConcurrencyInput{
			FunctionName: aws.String("echo"), ReservedConcurrentExecutions: aws.Int32(0),
		}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("echo")}, func(o *lambda.Options) {
			o.RetryMaxAttempts = 1
		})
		var tmr *types.TooManyRequestsException
		if !errors.As(err, &tmr) || tmr.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
			t.Errorf("reserved 0: err = %v, want TooManyRequestsException for the reserved concurrency", err)
		}
		_, _ = c.DeleteFunctionConcurrency(t.Context(), &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("echo")})
	})
	t.Run("bootstrap not executable", func(t *testing.T) {
		deploy(t, c, fixture{name: "noexec", runtime: "provided.al2023", zip: nodetest.Zip(t, map[string]string{"bootstrap": "#!/bin/sh\n"})})
		wantFunctionError(t, invoke(t, c, "noexec", `{}`), "Runtime.InvalidEntrypoint", "bootstrap")
	})
	t.Run("fork bomb", func(t *testing.T) {
		bomb := "#!/bin/sh\nbomb() { bomb | bomb & }\nbomb\nsleep 30\n"
		deploy(t, c, fixture{name: "bomb", runtime: "provided.al2023", timeout: 2,
			zip: nodetest.Zip(t, map[string][]byte{"bootstrap": []byte(bomb)}, "bootstrap")})
		out := invoke(t, c, "bomb", `{}`)
		if out.FunctionError == nil {
			t.Fatalf("fork bomb answered %s", out.Payload)
		}
		// Nimbus and its other functions are unharmed.
		if out := invoke(t, c, "echo", `{"after":"bomb"}`); out.FunctionError != nil {
			t.Errorf("after the fork bomb: %s", out.Payload)
		}
	})
	t.Run("delete while running", func(t *testing.T) {
		deploy(t, c, fixture{name: "doomed", runtime: "python3.11", handler: "app.sleep", zip: py, timeout: 10})
		done := make(chan *lambda.InvokeOutput, 1)
		go func() {
			out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("doomed"), Payload: []byte(`{"s":1}`)})
			if err != nil {
				t.Errorf("invoke during delete: %v", err)
			}
			done <- out
		}()
		time.Sleep(300 * time.Millisecond)
		if _, err := c.DeleteFunction(t.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String("doomed")}); err != nil {
			t.Fatal(err)
		}
		if out := <-done; out != nil && string(out.Payload) != `"slept"` {
			t.Errorf("in-flight invoke of a deleted function = %s", out.Payload)
		}
		_, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("doomed")})
		var nfe *types.ResourceNotFoundException
		if !errors.As(err, &nfe) {
			t.Errorf("invoke after delete: %v, want ResourceNotFoundException", err)
		}
	})
}

const slowHTTPServer = `import http.server, os, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(0.5)
        out = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

// TestHTTPFunctionConcurrency: one instance of an HTTP function takes
// NimbusHttpConcurrency requests at once (a Runtime-API instance takes one:
// the engine's TestScaleOut).
func TestHTTPFunctionConcurrency(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	deploy(t, c, fixture{name: "web", runtime: "http", timeout: 10, zip: nodetest.Zip(t, map[string][]byte{
		"bootstrap": []byte("#!/bin/sh\nexec /usr/bin/python3 server.py\n"),
		"server.py": []byte(slowHTTPServer),
	}, "bootstrap")})
	url := nodetest.Endpoint(n) + "/2015-03-31/functions/web/configuration"
	if status, typ, msg := rawCall(t, http.MethodPut, url, `{"NimbusHttpConcurrency":4}`); status != 200 {
		t.Fatalf("set HTTP concurrency: %d %s %s", status, typ, msg)
	}
	invoke(t, c, "web", `{}`) // one warm instance
	pids := make(chan string, 4)
	for range 4 {
		go func() {
			out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("web"), Payload: []byte(`{}`)})
			if err != nil {
				t.Errorf("invoke: %v", err)
				pids <- ""
				return
			}
			pids <- string(out.Payload)
		}()
	}
	distinct := map[string]bool{}
	for range 4 {
		distinct[<-pids] = true
	}
	if len(distinct) != 1 {
		t.Errorf("4 concurrent requests ran in %d instances (%v), want 1 taking all 4", len(distinct), distinct)
	}
	if got := n.Engine().Stats("web").Instances; got != 1 {
		t.Errorf("instances = %d, want 1", got)
	}
}
