package runtimes

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/runtimeapi"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

func TestPythonInvoke(t *testing.T) {
	py := runtimeOf(t, KindPython)
	tests := []invokeCase{
		{
			name:    "echo",
			files:   map[string]string{"app.py": "def handler(event, context):\n    return {'got': event}\n"},
			handler: "app.handler", event: `{"a": [1, "x"]}`, want: `{"got": {"a": [1, "x"]}}`,
		},
		{
			name:    "nested module path",
			files:   map[string]string{"pkg/sub/mod.py": "def run(event, context):\n    return 'nested'\n"},
			handler: "pkg/sub/mod.run", event: `{}`, want: `"nested"`,
		},
		{
			name:    "dotted module path",
			files:   map[string]string{"pkg/mod.py": "def run(event, context):\n    return 7\n"},
			handler: "pkg.mod.run", event: `{}`, want: `7`,
		},
		{
			name:    "none result",
			files:   map[string]string{"app.py": "def handler(event, context):\n    pass\n"},
			handler: "app.handler", event: `{}`, want: `null`,
		},
		{
			name:    "decimal result",
			files:   map[string]string{"app.py": "import decimal\ndef handler(event, context):\n    return [decimal.Decimal('1.5'), decimal.Decimal('2')]\n"},
			handler: "app.handler", event: `{}`, want: `[1.5, 2]`,
		},
		{
			name:    "empty event",
			files:   map[string]string{"app.py": "def handler(event, context):\n    return event\n"},
			handler: "app.handler", event: ``, want: `{}`,
		},
		{
			name:    "exception",
			files:   map[string]string{"app.py": "def handler(event, context):\n    raise ValueError('boom')\n"},
			handler: "app.handler", event: `{}`, wantErr: &errorCase{typ: "ValueError", message: "boom"},
		},
		{
			name: "custom exception",
			files: map[string]string{"app.py": "class PaymentDeclined(Exception):\n    pass\n" +
				"def handler(event, context):\n    raise PaymentDeclined('card 42')\n"},
			handler: "app.handler", event: `{}`, wantErr: &errorCase{typ: "PaymentDeclined", message: "card 42"},
		},
		{
			name:    "not serialisable",
			files:   map[string]string{"app.py": "def handler(event, context):\n    return {1, 2}\n"},
			handler: "app.handler", event: `{}`,
			wantErr: &errorCase{typ: "Runtime.MarshalError", message: "Unable to marshal response: ", prefix: true},
		},
		{
			name:    "bad event JSON",
			files:   map[string]string{"app.py": "def handler(event, context):\n    return 1\n"},
			handler: "app.handler", event: `{not json`,
			wantErr: &errorCase{typ: "Runtime.UnmarshalError", message: "Unable to unmarshal input: ", prefix: true},
		},
	}
	runInvokeCases(t, py, tests)
}

func TestPythonStackTrace(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": "def inner():\n    raise KeyError('k')\n\ndef handler(event, context):\n    inner()\n"})
	in := start(t, runtimeOf(t, KindPython), code, "app.handler", nil)
	res := in.invoke(t, runtimeapi.Invocation{Payload: []byte(`{}`)})
	checkError(t, res.Err, errorCase{typ: "KeyError", message: "'k'"})
	st := res.Err.StackTrace
	if len(st) != 2 {
		t.Fatalf("stackTrace = %q, want the 2 frames of app.py", st)
	}
	for i, want := range []string{"in handler", "in inner"} {
		if !strings.Contains(st[i], "app.py") || !strings.Contains(st[i], want) {
			t.Errorf("stackTrace[%d] = %q, want a frame of app.py %s", i, st[i], want)
		}
	}
	// The runtime stays up for the next invocation.
	res = in.invoke(t, runtimeapi.Invocation{Payload: []byte(`{}`)})
	if res.Err == nil || res.Err.Type != "KeyError" {
		t.Errorf("second invocation error = %+v, want KeyError", res.Err)
	}
}

func TestPythonContext(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": `import os
def handler(event, context):
    cc = context.client_context
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "custom": cc.custom if cc else None,
        "installation_id": cc.client.installation_id if cc and cc.client else None,
        "identity_id": context.identity.cognito_identity_id if context.identity else None,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "user_var": os.environ.get("GREETING"),
        "runtime_dir": os.environ.get("LAMBDA_RUNTIME_DIR"),
    }
`})
	in := start(t, runtimeOf(t, KindPython), code, "app.handler", map[string]string{"GREETING": "hi"})
	res := in.invoke(t, runtimeapi.Invocation{
		RequestID: "8f5e-ctx", FunctionARN: "arn:aws:lambda:eu-west-1:000000000000:function:fn",
		TraceID:         "Root=1-abc",
		ClientContext:   `{"client":{"installation_id":"inst-1"},"custom":{"k":"v"},"env":{}}`,
		CognitoIdentity: `{"cognitoIdentityId":"id-7","cognitoIdentityPoolId":"pool-1"}`,
		Payload:         []byte(`{}`),
	})
	if res.Err != nil {
		t.Fatalf("function error: %+v", res.Err)
	}
	var got map[string]any
	if err := json.Unmarshal(res.Payload, &got); err != nil {
		t.Fatalf("payload %s: %v", res.Payload, err)
	}
	want := map[string]any{
		"aws_request_id": "8f5e-ctx", "function_name": "fn", "function_version": "$LATEST",
		"invoked_function_arn": "arn:aws:lambda:eu-west-1:000000000000:function:fn",
		"memory_limit_in_mb":   "256", "log_group_name": "/aws/lambda/fn",
		"installation_id": "inst-1", "identity_id": "id-7", "trace": "Root=1-abc", "user_var": "hi",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
	if c, _ := got["custom"].(map[string]any); c["k"] != "v" {
		t.Errorf("client_context.custom = %v, want {k: v}", got["custom"])
	}
	if s, _ := got["log_stream_name"].(string); !strings.Contains(s, "[$LATEST]") {
		t.Errorf("log_stream_name = %q, want a Lambda-style stream name", s)
	}
	if rd, _ := got["runtime_dir"].(string); rd != in.in.RuntimeDir {
		t.Errorf("LAMBDA_RUNTIME_DIR = %q, want the bootstrap's directory %s", rd, in.in.RuntimeDir)
	}
	// The deadline is 30 s away.
	if r, _ := got["remaining"].(float64); r <= 20000 || r > 30000 {
		t.Errorf("remaining time = %v ms, want within (20000, 30000]", got["remaining"])
	}
}

func TestPythonWarmAndOutput(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": `print("init-once")
count = 0
def handler(event, context):
    global count
    count += 1
    print("hello from invocation", count)
    return count
`})
	checkWarmReuse(t, runtimeOf(t, KindPython), code, "app.handler")
}

func TestPythonInitErrors(t *testing.T) {
	py := runtimeOf(t, KindPython)
	tests := []initErrorCase{
		{
			name: "module not found", handler: "nosuch.handler",
			want: errorCase{typ: "Runtime.ImportModuleError", message: "Unable to import module 'nosuch': No module named 'nosuch'"},
		},
		{
			name: "dependency not found", handler: "app.handler",
			files: map[string]string{"app.py": "import nosuchdep\ndef handler(e, c):\n    pass\n"},
			want:  errorCase{typ: "Runtime.ImportModuleError", message: "Unable to import module 'app': No module named 'nosuchdep'"},
		},
		{
			name: "handler not found", handler: "app.missing",
			files: map[string]string{"app.py": "def handler(e, c):\n    pass\n"},
			want:  errorCase{typ: "Runtime.HandlerNotFound", message: "Handler 'missing' missing on module 'app'"},
		},
		{
			name: "syntax error", handler: "app.handler",
			files: map[string]string{"app.py": "def handler(e, c:\n    pass\n"},
			want:  errorCase{typ: "Runtime.UserCodeSyntaxError", message: "Syntax error in module 'app': ", prefix: true},
		},
		{
			name: "malformed handler", handler: "app",
			files: map[string]string{"app.py": "def handler(e, c):\n    pass\n"},
			want:  errorCase{typ: "Runtime.MalformedHandlerName", message: "Bad handler 'app': not enough values to unpack (expected 2, got 1)"},
		},
		{
			name: "empty handler", handler: "",
			want: errorCase{typ: "Runtime.MalformedHandlerName", message: "Bad handler '': ", prefix: true},
		},
		{
			name: "built-in module", handler: "sys.exit",
			want: errorCase{typ: "Runtime.BuiltInModuleConflict", message: "Cannot use built-in module sys as a handler module"},
		},
		{
			name: "exception at import", handler: "app.handler",
			files: map[string]string{"app.py": "raise RuntimeError('no config')\n"},
			want:  errorCase{typ: "RuntimeError", message: "no config"},
		},
		{
			name: "bootstrap module name is the user's", handler: "bootstrap.handler",
			files: map[string]string{"other.py": ""},
			want:  errorCase{typ: "Runtime.ImportModuleError", message: "Unable to import module 'bootstrap': No module named 'bootstrap'"},
		},
	}
	runInitErrorCases(t, py, tests)
}

func TestPythonOversizedResponse(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": "def handler(event, context):\n    return 'x' * event['size']\n"})
	checkOversized(t, start(t, runtimeOf(t, KindPython), code, "app.handler", nil))
}

func TestPythonPayloads(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": `def handler(event, context):
    if "s" in event:
        return {"s": event["s"], "len": len(event["s"]), "id": context.aws_request_id}
    return event
`})
	in := start(t, runtimeOf(t, KindPython), code, "app.handler", nil)
	big := `{"data": "` + strings.Repeat("x", 5<<20) + `"}` // json.dumps's own spacing
	tests := []struct {
		name      string
		requestID string
		event     string
		want      map[string]any // decoded response, or nil for an exact echo of event
	}{
		{name: "5 MB both ways", event: big},
		{name: "unicode", event: `{"s": "héllo 世界 🎉"}`,
			want: map[string]any{"s": "héllo 世界 🎉", "len": 10.0, "id": "req-unicode"}},
		{name: "escaped unicode", event: `{"s": "\u00e9\ud83c\udf89"}`,
			want: map[string]any{"s": "é🎉", "len": 2.0, "id": "req-escaped"}},
		{name: "request id to escape in the path", requestID: "req é?#%1 x", event: `{"s": ""}`,
			want: map[string]any{"s": "", "len": 0.0, "id": "req é?#%1 x"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.requestID
			if id == "" {
				id = "req-" + strings.Fields(tt.name)[0]
			}
			res := in.invoke(t, runtimeapi.Invocation{RequestID: id, Payload: []byte(tt.event)})
			if res.Err != nil {
				t.Fatalf("invocation %d: function error: %+v", i, res.Err)
			}
			if tt.want == nil {
				if string(res.Payload) != tt.event {
					t.Errorf("payload of %d bytes differs from the event of %d bytes", len(res.Payload), len(tt.event))
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(res.Payload, &got); err != nil {
				t.Fatalf("payload %s: %v", res.Payload, err)
			}
			for k, w := range tt.want {
				if got[k] != w {
					t.Errorf("%s = %v, want %v", k, got[k], w)
				}
			}
		})
	}
}

func TestPythonImportsLittle(t *testing.T) {
	py := runtimeOf(t, KindPython)
	code := writeFiles(t, map[string]string{"app.py": "import sys\ndef handler(event, context):\n    return sorted(sys.modules)\n"})
	fn := &nimbus.Function{Name: "fn", Handler: "app.handler"}
	// What the bare interpreter imports with an instance's environment (site
	// and its .pth files may import some of the modules below).
	cmd := exec.Command(py.Interp, "-c", `import sys; print("\n".join(sys.modules))`)
	cmd.Env, cmd.Dir = Env(fn, py, "127.0.0.1:1", sandbox.Paths{TaskRoot: code}, ""), code
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -c: %v", py.Interp, err)
	}
	bare := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		bare[m] = true
	}
	in := start(t, py, code, "app.handler", nil)
	var loaded []string
	if err := json.Unmarshal([]byte(in.invokeJSON(t, `{}`)), &loaded); err != nil {
		t.Fatal(err)
	}
	// Heavy modules the runtime itself must not import.
	heavy := map[string]bool{"http": true, "http.client": true, "email": true, "ssl": true, "urllib": true,
		"decimal": true, "datetime": true, "traceback": true, "socket": true, "selectors": true, "importlib": true,
		"logging": true}
	for _, m := range loaded {
		if heavy[m] && !bare[m] {
			t.Errorf("the runtime imported %s", m)
		}
	}
	if !slices.Contains(loaded, "json") {
		t.Errorf("modules = %q, want json among them (is the handler's list real?)", loaded)
	}
}

func TestPythonUserSocketTimeout(t *testing.T) {
	// A user's socket.setdefaulttimeout must not time out the /next long poll.
	code := writeFiles(t, map[string]string{"app.py": "import socket\nsocket.setdefaulttimeout(0.05)\n" +
		"def handler(event, context):\n    return socket.getdefaulttimeout()\n"})
	in := start(t, runtimeOf(t, KindPython), code, "app.handler", nil)
	select {
	case <-in.srv.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("runtime never called /next")
	}
	time.Sleep(300 * time.Millisecond) // six default timeouts
	if got := in.invokeJSON(t, `{}`); got != "0.05" {
		t.Errorf("payload = %s, want 0.05", got)
	}
}

func TestPythonErrorTypeHeader(t *testing.T) {
	// The error type also goes out as a header: one a header cannot carry
	// must not break the request.
	code := writeFiles(t, map[string]string{"app.py": "def handler(event, context):\n" +
		"    raise type(event['name'], (Exception,), {})('m')\n"})
	in := start(t, runtimeOf(t, KindPython), code, "app.handler", nil)
	for _, name := range []string{"Fehlerß", "Bad\r\nX-Injected: 1", "Tab\tDel\x7f"} {
		ev, _ := json.Marshal(map[string]string{"name": name})
		res := in.invoke(t, runtimeapi.Invocation{Payload: ev})
		checkError(t, res.Err, errorCase{typ: name, message: "m"})
	}
}

// fakeAPI is a scripted Runtime API server that writes raw HTTP/1.x, to test
// the bootstrap's own HTTP client with framings internal/runtimeapi never
// uses. It hands out its payloads in order and then drops each
// /invocation/next, as a closing server does.
type fakeAPI struct {
	framing   string   // how responses are written: see respond
	first     string   // when set, written raw as the answer of the first /next
	dropFirst bool     // close the connection after first
	payloads  []string // the events to hand out
	ln        net.Listener
	wg        sync.WaitGroup

	mu       sync.Mutex
	conns    []net.Conn
	next     int      // payloads handed out
	posts    []string // "path body" of each POST
	problems []string // malformed requests
}

// listenFake starts serving f, whose script (framing, first, dropFirst,
// payloads) the caller has set.
func listenFake(t *testing.T, f *fakeAPI) *fakeAPI {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeAPI) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			f.serve(c)
		}()
	}
}

func (f *fakeAPI) problem(format string, args ...any) {
	f.mu.Lock()
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

// serve answers the requests of one connection until it should close.
func (f *fakeAPI) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			f.problem("%s %s: body: %v", req.Method, req.URL, err)
			return
		}
		if req.Host != f.ln.Addr().String() || req.ProtoMajor != 1 || req.ProtoMinor != 1 {
			f.problem("%s %s: Host %q, %s", req.Method, req.URL, req.Host, req.Proto)
		}
		path := req.URL.Path
		switch {
		case req.Method == http.MethodGet && path == "/2018-06-01/runtime/invocation/next":
			f.mu.Lock()
			i := f.next
			f.next++
			f.mu.Unlock()
			switch {
			case i == 0 && f.first != "":
				if _, err := io.WriteString(c, f.first); err != nil || f.dropFirst {
					return
				}
				continue // the runtime should give up on its own
			case i >= len(f.payloads):
				return // dropped: the server is closing
			}
			hdr := []string{"lambda-runtime-aws-request-id: fake-" + strconv.Itoa(i),
				"LAMBDA-RUNTIME-DEADLINE-MS: " + strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10),
				"Content-Type: application/json"}
			if !f.respond(c, "200 OK", hdr, []byte(f.payloads[i])) {
				return
			}
		case req.Method == http.MethodPost:
			if req.ContentLength != int64(len(body)) {
				f.problem("POST %s: Content-Length %d, body %d bytes", path, req.ContentLength, len(body))
			}
			f.mu.Lock()
			f.posts = append(f.posts, path+" "+string(body))
			f.mu.Unlock()
			if !f.respond(c, "202 Accepted", []string{"Content-Type: application/json"}, []byte(`{"status":"OK"}`)) {
				return
			}
			if f.framing == "idle close" { // close the kept-alive connection while idle
				return
			}
		default:
			f.problem("unexpected %s %s", req.Method, path)
			return
		}
	}
}

// respond writes a response framed as f.framing and reports whether the
// connection stays open.
func (f *fakeAPI) respond(c net.Conn, status string, hdr []string, body []byte) bool {
	var b strings.Builder
	proto, eol := "HTTP/1.1 ", "\r\n"
	switch f.framing {
	case "http/1.0":
		proto = "HTTP/1.0 "
	case "bare LF":
		eol = "\n"
	case "100 continue":
		b.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	}
	b.WriteString(proto + status + eol)
	for _, h := range hdr {
		b.WriteString(h + eol)
	}
	switch f.framing {
	case "http/1.0": // no length: the body ends with the connection
		b.WriteString(eol)
	case "chunked", "chunked large":
		b.WriteString("Transfer-Encoding: chunked" + eol + eol)
		for i, n := 0, 0; i < len(body); i += n {
			n = min(len(body)-i, max(len(body)/3, 1)+1)
			fmt.Fprintf(&b, "%x", n)
			if i == 0 {
				b.WriteString(";ext=1")
			}
			b.WriteString(eol)
			b.Write(body[i : i+n])
			b.WriteString(eol)
		}
		b.WriteString("0" + eol + "X-Trailer: t" + eol + eol)
		body = nil
	case "connection close":
		b.WriteString("Connection: close" + eol)
		fallthrough
	default:
		fmt.Fprintf(&b, "Content-Length: %d%s%s", len(body), eol, eol)
	}
	b.Write(body)
	out := []byte(b.String())
	if f.framing == "byte at a time" {
		for i := range out {
			if _, err := c.Write(out[i : i+1]); err != nil {
				return false
			}
		}
		return true
	}
	if _, err := c.Write(out); err != nil {
		return false
	}
	return f.framing != "http/1.0" && f.framing != "connection close"
}

// proc is the bootstrap run against a fakeAPI.
type proc struct {
	out  testenv.Buffer
	done chan struct{}
	err  error
}

func runAgainst(t *testing.T, f *fakeAPI, code string) *proc {
	t.Helper()
	py := runtimeOf(t, KindPython)
	bootDir := filepath.Join(t.TempDir(), "runtimes")
	if err := Install(bootDir); err != nil {
		t.Fatalf("Install: %v", err)
	}
	host := sandbox.Paths{TaskRoot: code, RuntimeDir: Dir(py, bootDir)}
	path, args, err := Command(py, code, host.RuntimeDir, host)
	if err != nil {
		t.Fatalf("Command: %v", err)
	}
	fn := &nimbus.Function{Name: "fn", Handler: "app.handler"}
	p := &proc{done: make(chan struct{})}
	cmd := &exec.Cmd{Path: path, Args: args, Env: Env(fn, py, f.ln.Addr().String(), host, ""), Dir: code,
		Stdout: &p.out, Stderr: &p.out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("runtime still running; output:\n%s", p.out.String())
	}
	return p
}

func TestPythonHTTPFraming(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": "def handler(event, context):\n" +
		"    return {'id': context.aws_request_id, 'got': event, 'left': context.get_remaining_time_in_millis() > 0}\n"})
	small := []string{`{"n": 1, "s": "héllo"}`, `[2, "two"]`, `"three"`}
	large := `{"data": "` + strings.Repeat("0123456789", 200_000) + `"}`
	tests := []struct {
		framing  string
		payloads []string
	}{
		{"content-length", small},
		{"chunked", small},
		{"chunked large", []string{large, large}},
		{"byte at a time", small},
		{"connection close", small},
		{"http/1.0", small},
		{"100 continue", small},
		{"bare LF", small},
		{"idle close", small},
	}
	for _, tt := range tests {
		t.Run(tt.framing, func(t *testing.T) {
			f := listenFake(t, &fakeAPI{framing: tt.framing, payloads: tt.payloads})
			p := runAgainst(t, f, code)
			// Every invocation answered, then a quiet exit on the dropped /next.
			if p.err != nil || strings.Contains(p.out.String(), "Traceback") {
				t.Errorf("runtime exit = %v, want status 0; output:\n%s", p.err, p.out.String())
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, pr := range f.problems {
				t.Errorf("bad request: %s", pr)
			}
			if len(f.posts) != len(tt.payloads) {
				t.Fatalf("got %d POSTs, want %d; output:\n%s", len(f.posts), len(tt.payloads), p.out.String())
			}
			for i, post := range f.posts {
				path, body, _ := strings.Cut(post, " ")
				id := "fake-" + strconv.Itoa(i)
				if want := "/2018-06-01/runtime/invocation/" + id + "/response"; path != want {
					t.Errorf("POST %d path = %s, want %s", i, path, want)
				}
				var got struct {
					ID   string
					Got  json.RawMessage
					Left bool
				}
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("POST %d body: %v", i, err)
				}
				if got.ID != id || !got.Left || !jsonEqual(t, got.Got, tt.payloads[i]) {
					t.Errorf("POST %d = id %q, left %v, event of %d bytes; want id %s, time left and the event sent",
						i, got.ID, got.Left, len(got.Got), id)
				}
			}
		})
	}
}

func jsonEqual(t *testing.T, a json.RawMessage, b string) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestPythonHTTPBadResponses(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": "def handler(event, context):\n    return event\n"})
	tests := []struct {
		name    string
		first   string // the answer of the first /next
		wantOK  bool   // the server then drops the connection: want a quiet exit (status 0)
		wantOut string // in the output, when not quiet
	}{
		{name: "garbage", first: "HELLO\r\n\r\n", wantOut: "bad status line"},
		{name: "bad status code", first: "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", wantOut: "bad status line"},
		{name: "header line without colon", first: "HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n", wantOut: "bad header line"},
		{name: "bad chunk size", first: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", wantOut: "bad chunk size"},
		{name: "chunk size 0x", first: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n", wantOut: "bad chunk size"},
		{name: "chunk without its line end", first: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", wantOut: "chunk not followed"},
		{name: "gzip chunked", first: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", wantOut: "unsupported transfer encoding"},
		{name: "bad content length", first: "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", wantOut: "bad Content-Length"},
		{name: "negative content length", first: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantOut: "bad Content-Length"},
		{name: "conflicting content lengths", first: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 3\r\n\r\n{}", wantOut: "bad Content-Length"},
		{name: "status 500", first: "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops", wantOut: "status 500: b'oops'"},
		{name: "head too long", first: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 1<<20+10), wantOut: "response head over"},
		{name: "truncated body", first: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\"", wantOK: true},
		{name: "truncated head", first: "HTTP/1.1 200 OK\r\nContent-Len", wantOK: true},
		{name: "truncated chunk", first: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{}", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := listenFake(t, &fakeAPI{framing: "content-length", first: tt.first, dropFirst: tt.wantOK, payloads: []string{`{}`}})
			p := runAgainst(t, f, code)
			out := p.out.String()
			if tt.wantOK {
				if p.err != nil || out != "" {
					t.Errorf("runtime exit = %v, output %q; want a quiet exit with status 0", p.err, out)
				}
			} else if p.err == nil || !strings.Contains(out, tt.wantOut) {
				t.Errorf("runtime exit = %v, output:\n%s\nwant a failure saying %q", p.err, out, tt.wantOut)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.posts) != 0 {
				t.Errorf("POSTs = %q, want none", f.posts)
			}
		})
	}
}
