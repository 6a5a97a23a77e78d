package api_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// streamed is what a client read of an InvokeWithResponseStream answer.
type streamed struct {
	chunks   []string
	complete *types.InvokeWithResponseStreamCompleteEvent
	version  string
	ctype    string
}

// invokeStream calls InvokeWithResponseStream and reads the whole stream;
// each chunk is passed to onChunk (if set) as it arrives.
func invokeStream(t *testing.T, c *lambda.Client, in *lambda.InvokeWithResponseStreamInput, onChunk func(string)) (streamed, error) {
	t.Helper()
	out, err := c.InvokeWithResponseStream(t.Context(), in)
	if err != nil {
		return streamed{}, err
	}
	st := out.GetStream()
	defer st.Close()
	s := streamed{version: aws.ToString(out.ExecutedVersion), ctype: aws.ToString(out.ResponseStreamContentType)}
	for ev := range st.Events() {
		switch v := ev.(type) {
		case *types.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
			if s.complete != nil {
				t.Errorf("a PayloadChunk after InvokeComplete: %q", v.Value.Payload)
			}
			s.chunks = append(s.chunks, string(v.Value.Payload))
			if onChunk != nil {
				onChunk(string(v.Value.Payload))
			}
		case *types.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
			if s.complete != nil {
				t.Errorf("a second InvokeComplete")
			}
			s.complete = &v.Value
		default:
			t.Errorf("unexpected event %T", ev)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatalf("reading the event stream: %v", err)
	}
	if s.complete == nil {
		t.Fatalf("the stream ended without InvokeComplete (chunks %q)", s.chunks)
	}
	return s, nil
}

// TestInvokeStreamBuffered: a Runtime-API (Python) function's answer comes
// whole in one PayloadChunk, then InvokeComplete, with the log tail when
// asked; its error is InvokeComplete's ErrorCode and ErrorDetails.
func TestInvokeStreamBuffered(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	deploy(t, c, fixture{name: "py", runtime: "python3.11", handler: "app.echo", timeout: 30,
		zip: nodetest.Zip(t, map[string]string{"app.py": pyFunctions})})
	deploy(t, c, fixture{name: "pyfail", runtime: "python3.11", handler: "app.fail", timeout: 30,
		zip: nodetest.Zip(t, map[string]string{"app.py": pyFunctions})})

	s, err := invokeStream(t, c, &lambda.InvokeWithResponseStreamInput{
		FunctionName: aws.String("py"), Payload: []byte(`{"k":"v"}`), LogType: types.LogTypeTail}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.chunks) != 1 {
		t.Fatalf("chunks = %q, want the whole answer in one", s.chunks)
	}
	var got struct {
		Event map[string]string `json:"event"`
		Name  string            `json:"name"`
	}
	if err := json.Unmarshal([]byte(s.chunks[0]), &got); err != nil || got.Event["k"] != "v" || got.Name != "py" {
		t.Errorf("chunk %q (%v)", s.chunks[0], err)
	}
	if s.complete.ErrorCode != nil || s.complete.ErrorDetails != nil {
		t.Errorf("InvokeComplete of a success: %q %q", aws.ToString(s.complete.ErrorCode), aws.ToString(s.complete.ErrorDetails))
	}
	logs, _ := base64.StdEncoding.DecodeString(aws.ToString(s.complete.LogResult))
	if !strings.Contains(string(logs), "hello from python") || !strings.Contains(string(logs), "REPORT RequestId") {
		t.Errorf("LogResult = %q", logs)
	}
	if s.version != "$LATEST" || s.ctype != "application/vnd.amazon.eventstream" {
		t.Errorf("ExecutedVersion %q, Content-Type %q", s.version, s.ctype)
	}

	// A published version, by number and through an alias.
	if _, err := c.PublishVersion(t.Context(), &lambda.PublishVersionInput{FunctionName: aws.String("py")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(t.Context(), &lambda.CreateAliasInput{FunctionName: aws.String("py"), Name: aws.String("live"),
		FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"1", "live"} {
		s, err := invokeStream(t, c, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("py"), Qualifier: aws.String(q)}, nil)
		if err != nil || s.version != "1" || len(s.chunks) != 1 {
			t.Errorf("Qualifier %s: ExecutedVersion %q, chunks %q, %v", q, s.version, s.chunks, err)
		}
	}

	// No log asked: none given.
	s, err = invokeStream(t, c, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("py")}, nil)
	if err != nil || s.complete.LogResult != nil {
		t.Errorf("without LogType Tail: LogResult %q, %v", aws.ToString(s.complete.LogResult), err)
	}

	s, err = invokeStream(t, c, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("pyfail")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.chunks) != 0 || aws.ToString(s.complete.ErrorCode) != "ValueError" || aws.ToString(s.complete.ErrorDetails) != "bad value" {
		t.Errorf("a function error: chunks %q, InvokeComplete %q %q", s.chunks,
			aws.ToString(s.complete.ErrorCode), aws.ToString(s.complete.ErrorDetails))
	}
}

// TestInvokeStreamRefusals: what InvokeWithResponseStream refuses before it
// runs anything, with Lambda's errors; DryRun runs nothing and answers 204.
func TestInvokeStreamRefusals(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	createPy(t, c, "f", pyZip(t))
	cases := []struct {
		name, code string
		in         lambda.InvokeWithResponseStreamInput
	}{
		{"unknown function", "ResourceNotFoundException", lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("nope")}},
		{"no such version", "ResourceNotFoundException", lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"), Qualifier: aws.String("7")}},
		{"no such alias", "ResourceNotFoundException", lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"), Qualifier: aws.String("live")}},
		{"Event", "ValidationException", lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"), InvocationType: "Event"}},
		{"bad log type", "ValidationException", lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"), LogType: "All"}},
		{"bad payload", "InvalidRequestContentException", lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"), Payload: []byte("{")}},
	}
	for _, tc := range cases {
		_, err := c.InvokeWithResponseStream(t.Context(), &tc.in)
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	out, err := c.InvokeWithResponseStream(t.Context(), &lambda.InvokeWithResponseStreamInput{
		FunctionName: aws.String("f"), InvocationType: types.ResponseStreamingInvocationTypeDryRun})
	if err != nil || out.StatusCode != http.StatusNoContent {
		t.Fatalf("DryRun: %+v, %v", out, err)
	}
	for ev := range out.GetStream().Events() {
		t.Errorf("DryRun sent an event: %T", ev)
	}
	out.GetStream().Close()
}

// gateServer is an HTTP function: a POST of {"wait": true} writes
// "first\n", then waits (at most 20 s) for a POST of {"release": true} to
// the same instance, and writes "released\n" or "timed out\n".
const gateServer = `import http.server, json, os, threading
gate = threading.Event()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if req.get("release"):
            gate.set()
        if not req.get("wait"):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        def chunk(b):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
            self.wfile.flush()
        chunk(b"first\n")
        chunk(b"released\n" if gate.wait(20) else b"timed out\n")
        self.wfile.write(b"0\r\n\r\n")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

// TestInvokeStreamHTTPFunction: an HTTP function's body arrives as it is
// written. The function writes its last chunk only once a second request
// (sent after the client read the first chunk) releases it: had the answer
// been buffered, the client would have read nothing before the function
// gave up waiting and wrote "timed out".
func TestInvokeStreamHTTPFunction(t *testing.T) {
	n := nodetest.Start(t, patientNode)
	c := client(n)
	deploy(t, c, fixture{name: "gate", runtime: "http", timeout: 30, zip: nodetest.Zip(t, map[string][]byte{
		"bootstrap": []byte("#!/bin/sh\nexec /usr/bin/python3 server.py\n"),
		"server.py": []byte(gateServer),
	}, "bootstrap")})
	url := nodetest.Endpoint(n) + "/2015-03-31/functions/gate/configuration"
	if status, typ, msg := rawCall(t, http.MethodPut, url, `{"NimbusHttpConcurrency":2}`); status != 200 {
		t.Fatalf("set HTTP concurrency: %d %s %s", status, typ, msg)
	}
	waitActive(t, c, "gate")
	invoke(t, c, "gate", `{}`) // one warm instance, which takes both requests

	release := func(chunk string) {
		if chunk != "first\n" {
			return
		}
		out := invoke(t, c, "gate", `{"release":true}`)
		if string(out.Payload) != "ok" {
			t.Errorf("release: %q", out.Payload)
		}
	}
	s, err := invokeStream(t, c, &lambda.InvokeWithResponseStreamInput{
		FunctionName: aws.String("gate"), Payload: []byte(`{"wait":true}`)}, release)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.chunks, ""); got != "first\nreleased\n" {
		t.Errorf("streamed %q, want first then released (chunks %q)", got, s.chunks)
	}
	if len(s.chunks) < 2 {
		t.Errorf("chunks %q: want the body in the pieces the function wrote", s.chunks)
	}
	if s.complete.ErrorCode != nil {
		t.Errorf("InvokeComplete: %q %q", aws.ToString(s.complete.ErrorCode), aws.ToString(s.complete.ErrorDetails))
	}
}

// streamPython is a python3 whose botocore has InvokeWithResponseStream
// (botocore 1.29.54 and later): Debian's /usr/bin/python3 first, then the
// python3 on PATH.
func streamPython(t *testing.T) string {
	t.Helper()
	check := "import sys, boto3; boto3.client('lambda', region_name='us-east-1').invoke_with_response_stream; print(sys.executable)"
	var errs []error
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		out, err := exec.Command(py, "-c", check).Output()
		if err == nil {
			return strings.TrimSpace(string(out))
		}
		errs = append(errs, err)
	}
	// Not a service CI can install: Debian bookworm's python3-boto3
	// (1.26.27) predates the operation and PyPI is out of reach, so this
	// skips even under NIMBUS_REQUIRE_SERVICES=1; aws-sdk-go-v2's client
	// (the tests above) covers the operation everywhere.
	t.Skipf("no python3 with a boto3 that has invoke_with_response_stream (1.26.54 or later; Debian's is older): %v", errors.Join(errs...))
	return ""
}

// TestInvokeStreamBoto3: boto3's invoke_with_response_stream reads a
// buffered Python function's answer, a function error, a Node
// streamifyResponse function's chunks and an HTTP
// function's streamed chunks, releasing its last chunk once it read the
// first, as TestInvokeStreamHTTPFunction does (testdata/boto3_stream.py).
func TestInvokeStreamBoto3(t *testing.T) {
	py := streamPython(t)
	n := nodetest.Start(t, patientNode)
	c := client(n)
	deploy(t, c, fixture{name: "py", runtime: "python3.11", handler: "app.echo", timeout: 30,
		zip: nodetest.Zip(t, map[string]string{"app.py": pyFunctions})})
	deploy(t, c, fixture{name: "pyfail", runtime: "python3.11", handler: "app.fail", timeout: 30,
		zip: nodetest.Zip(t, map[string]string{"app.py": pyFunctions})})
	deploy(t, c, fixture{name: "web", runtime: "http", timeout: 30, zip: nodetest.Zip(t, map[string][]byte{
		"bootstrap": []byte("#!/bin/sh\nexec /usr/bin/python3 server.py\n"),
		"server.py": []byte(gateServer),
	}, "bootstrap")})
	deploy(t, c, fixture{name: "node-count", runtime: nodeRuntime(t), handler: "index.count", timeout: 30,
		zip: nodetest.Zip(t, map[string]string{"index.js": nodeStreamFunctions})})
	if status, typ, msg := rawCall(t, http.MethodPut, nodetest.Endpoint(n)+"/2015-03-31/functions/web/configuration", `{"NimbusHttpConcurrency":2}`); status != 200 {
		t.Fatalf("set HTTP concurrency: %d %s %s", status, typ, msg)
	}
	waitActive(t, c, "web")
	invoke(t, c, "web", `{}`) // one warm instance, which takes both requests
	script, _ := filepath.Abs("testdata/boto3_stream.py")
	cmd := exec.Command(py, script, nodetest.Endpoint(n))
	cmd.Env = []string{"HOME=" + t.TempDir(), "AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret", "PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s: %v\n%s", script, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var report map[string]struct {
		Chunks                            []string
		ErrorCode, ErrorDetails, LogTail  string
		ExecutedVersion, ContentType, Err string
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("report %q: %v", out, err)
	}
	py1 := report["buffered"]
	if len(py1.Chunks) != 1 || !strings.Contains(py1.Chunks[0], `"event": {"k": "v"}`) || py1.ErrorCode != "" ||
		!strings.Contains(py1.LogTail, "hello from python") || py1.ExecutedVersion != "$LATEST" ||
		py1.ContentType != "application/vnd.amazon.eventstream" {
		t.Errorf("buffered: %+v", py1)
	}
	if f := report["error"]; len(f.Chunks) != 0 || f.ErrorCode != "ValueError" || f.ErrorDetails != "bad value" {
		t.Errorf("error: %+v", f)
	}
	if h := report["http"]; strings.Join(h.Chunks, "") != "first\nreleased\n" || h.ErrorCode != "" {
		t.Errorf("http: %+v", h)
	}
	if nd := report["node"]; strings.Join(nd.Chunks, "") != "1\n2\n3\n" || nd.ErrorCode != "" {
		t.Errorf("node: %+v", nd)
	}
	if u := report["unknown"]; u.Err != "ResourceNotFoundException" {
		t.Errorf("unknown function: %+v", u)
	}
}

// nodeStreamFunctions are streaming Node handlers.
const nodeStreamFunctions = `const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
exports.count = awslambda.streamifyResponse(async (event, responseStream) => {
  for (let i = 1; i <= event.n; i++) {
    responseStream.write(i + '\n');
    await sleep(5);
  }
  console.log('counted to', event.n);
  responseStream.end();
});
exports.midFail = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('partial');
  await sleep(5);
  throw new TypeError('broke mid-stream');
});
exports.slow = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('started');
  await sleep(60000);
  responseStream.end('never');
});
`

// nodeRuntime is the id of a Node runtime on this host (nodejs20.x, ...).
func nodeRuntime(t *testing.T) string {
	t.Helper()
	for _, rt := range runtimes.Discover(slog.New(slog.DiscardHandler)) {
		if rt.Kind == runtimes.KindNode {
			return rt.ID
		}
	}
	testenv.Missing(t, "node (18 or later)", errors.New("no Node runtime found"))
	return ""
}

// TestInvokeStreamNode: a Node streamifyResponse handler's writes come as
// PayloadChunks (the order of their arrival against the handler's writes is
// the runtimes package's TestNodeStreamifyResponse), its log in
// InvokeComplete, an error after its first write as InvokeComplete's; a
// plain Invoke of it reads the stream whole.
func TestInvokeStreamNode(t *testing.T) {
	rt := nodeRuntime(t)
	n := nodetest.Start(t, nil)
	c := client(n)
	for _, h := range []string{"count", "midFail", "slow"} {
		timeout := int32(30)
		if h == "slow" {
			timeout = 1
		}
		deploy(t, c, fixture{name: "node-" + h, runtime: rt, handler: "index." + h, timeout: timeout,
			zip: nodetest.Zip(t, map[string]string{"index.js": nodeStreamFunctions})})
	}
	s, err := invokeStream(t, c, &lambda.InvokeWithResponseStreamInput{
		FunctionName: aws.String("node-count"), Payload: []byte(`{"n":5}`), LogType: types.LogTypeTail}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.chunks, ""); got != "1\n2\n3\n4\n5\n" || s.complete.ErrorCode != nil {
		t.Errorf("streamed %q (chunks %q), InvokeComplete %q", got, s.chunks, aws.ToString(s.complete.ErrorCode))
	}
	if logs, _ := base64.StdEncoding.DecodeString(aws.ToString(s.complete.LogResult)); !strings.Contains(string(logs), "counted to 5") {
		t.Errorf("LogResult = %q", logs)
	}
	if out := invoke(t, c, "node-count", `{"n":2}`); string(out.Payload) != "1\n2\n" || out.FunctionError != nil {
		t.Errorf("Invoke: %q %q", out.Payload, aws.ToString(out.FunctionError))
	}

	s, err = invokeStream(t, c, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("node-midFail")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.chunks, "") != "partial" || aws.ToString(s.complete.ErrorCode) != "TypeError" ||
		aws.ToString(s.complete.ErrorDetails) != "broke mid-stream" {
		t.Errorf("midFail: chunks %q, InvokeComplete %q %q", s.chunks,
			aws.ToString(s.complete.ErrorCode), aws.ToString(s.complete.ErrorDetails))
	}

	// A timeout after the first chunk: the stream ends with Lambda's
	// timeout error, and the instance is replaced.
	s, err = invokeStream(t, c, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("node-slow")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.chunks, "") != "started" || aws.ToString(s.complete.ErrorCode) != "Sandbox.Timedout" ||
		!strings.Contains(aws.ToString(s.complete.ErrorDetails), "Task timed out after 1.00 seconds") {
		t.Errorf("slow: chunks %q, InvokeComplete %q %q", s.chunks,
			aws.ToString(s.complete.ErrorCode), aws.ToString(s.complete.ErrorDetails))
	}
}
