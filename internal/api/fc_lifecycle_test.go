package api_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// fcLifecycleServer is a custom runtime's server started by
// customRuntimeConfig's command (python3 server.py, no bootstrap): it
// counts POST /initialize, fails it when the function's memory is 512,
// answers GET /pre-stop with a log line, and /invoke with what it saw, or
// with x-fc-status 404 for the payload "fail".
const fcLifecycleServer = `import http.server, json, os, sys
state = {"inits": 0, "args": sys.argv[1:]}
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, status, out, headers={}):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/initialize":
            state["inits"] += 1
            if self.headers.get("x-fc-function-memory") == "512":
                return self.reply(500, b"no init")
            return self.reply(200, b"ok")
        if body == b"fail":
            return self.reply(404, b'{"oops":1}', {"x-fc-status": "404"})
        out = json.dumps({"inits": state["inits"], "args": state["args"], "cwd": os.getcwd(),
            "code": open("/code/server.py").read() == open("server.py").read() if os.path.exists("/code") else None,
            "codeWritable": os.access("/code", os.W_OK) if os.path.exists("/code") else None}).encode()
        self.reply(200, out)
    def do_GET(self):
        if self.path == "/pre-stop":
            print("pre-stop called with", self.headers.get("x-fc-function-name"), flush=True)
            return self.reply(200, b"bye")
        self.reply(404, b"")
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["FC_SERVER_PORT"])), H).serve_forever()
`

// TestFCCustomLifecycle: customRuntimeConfig's command and args start a
// custom function's server in its code's directory (also seen at /code,
// read-only); its initializer is POST /initialize, once, before its first
// invocation, and a failing one is InitializationError; its preStop is GET
// /pre-stop before the instance stops; an /invoke answer with x-fc-status
// 404 is HandledInvocationError.
func TestFCCustomLifecycle(t *testing.T) {
	n := nodetest.Start(t, nil)
	fc := newFCAPI(t, n)
	c := client(n)
	zip := base64.StdEncoding.EncodeToString(nodetest.Zip(t, map[string]string{"server.py": fcLifecycleServer}))
	create := func(name string, mem int) {
		fc.do("POST", "/functions", `{"functionName":"`+name+`","runtime":"custom.debian12","handler":"x","memorySize":`+jsonInt(mem)+`,"timeout":9,
			"customRuntimeConfig":{"command":["python3"],"args":["server.py","--flag"]},
			"instanceLifecycleConfig":{"initializer":{"handler":"x","timeout":4},"preStop":{"handler":"x","timeout":3}},
			"code":{"zipFile":"`+zip+`"}}`, 200)
		waitActive(t, c, name)
	}
	create("life", 256)
	var got struct {
		CustomRuntimeConfig     struct{ Command, Args []string }
		InstanceLifecycleConfig struct {
			Initializer, PreStop struct {
				Handler string
				Timeout int
			}
		}
	}
	fc.json("GET", "/functions/life", "", 200, &got)
	if strings.Join(got.CustomRuntimeConfig.Command, " ") != "python3" || strings.Join(got.CustomRuntimeConfig.Args, " ") != "server.py --flag" ||
		got.InstanceLifecycleConfig.Initializer.Timeout != 4 || got.InstanceLifecycleConfig.PreStop.Timeout != 3 {
		t.Errorf("GetFunction: %+v", got)
	}
	for i := 0; i < 2; i++ {
		var out struct {
			Inits              int
			Args               []string
			Cwd                string
			Code, CodeWritable *bool
		}
		fc.json("POST", "/functions/life/invocations", "hi", 200, &out)
		if out.Inits != 1 || strings.Join(out.Args, " ") != "--flag" || out.Cwd == "" {
			t.Errorf("invocation %d: %+v, want one initialization, the args, a working directory", i, out)
		}
		if out.Code != nil && (!*out.Code || *out.CodeWritable) {
			t.Errorf("invocation %d: /code holds the code %v, writable %v; want the code, read-only", i, *out.Code, *out.CodeWritable)
		} else if out.Code == nil {
			t.Logf("this node's sandbox has no root of its own: no /code (cwd %s)", out.Cwd)
		}
	}
	res := fcInvoke(t, fc, "life", "fail")
	if res.Header.Get("X-Fc-Error-Type") != "HandledInvocationError" || res.body != `{"oops":1}` {
		t.Errorf("x-fc-status 404: %s %q, want HandledInvocationError and the body", res.Header.Get("X-Fc-Error-Type"), res.body)
	}
	// An update drains the instance: GET /pre-stop first.
	fc.do("PUT", "/functions/life", `{"environmentVariables":{"CHANGED":"yes"}}`, 200)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var seen bool
		for _, r := range getLogs(t, n, "life", url.Values{"filter": {"pre-stop called"}}) {
			seen = seen || strings.Contains(r.Line, "pre-stop called with life")
		}
		if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no GET /pre-stop in the function's log after its instance was drained")
		}
		time.Sleep(100 * time.Millisecond)
	}

	create("badinit", 512)
	res = fcInvoke(t, fc, "badinit", "hi")
	var e struct{ ErrorMessage, ErrorType string }
	_ = json.Unmarshal([]byte(res.body), &e)
	if res.Header.Get("X-Fc-Error-Type") != "InitializationError" || !strings.Contains(e.ErrorMessage, "answered 500") {
		t.Errorf("a failing initializer: %s %s", res.Header.Get("X-Fc-Error-Type"), res.body)
	}

	for _, bad := range []struct{ body, msg string }{
		{`"runtime":"custom","customRuntimeConfig":{"args":["a"]}`, "args needs a command"},
		{`"runtime":"custom","customRuntimeConfig":{"command":[""]}`, "command[0] is empty"},
		{`"runtime":"python3.11","handler":"index.handler","customRuntimeConfig":{"command":["python3"]}`, "for the custom runtimes"},
		{`"runtime":"custom","instanceLifecycleConfig":{"preStop":{"handler":"x","timeout":601}}`, "preStop.timeout 601"},
	} {
		fc.fails("POST", "/functions", `{"functionName":"bad",`+bad.body+`,"code":{"zipFile":"`+zip+`"}}`, 400, "InvalidArgument", bad.msg)
	}
}

type fcInvokeResult struct {
	http.Header
	body string
}

// fcInvoke invokes name with payload and returns the answer's headers and
// body (status 200 checked).
func fcInvoke(t *testing.T, fc fcAPI, name, payload string) fcInvokeResult {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", fc.base+"/functions/"+name+"/invocations", strings.NewReader(payload))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("invoke %s: %d %s", name, res.StatusCode, b.String())
	}
	return fcInvokeResult{res.Header, b.String()}
}

func jsonInt(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestFCPreStopPythonNode: a Python or Node function with Function
// Compute's conventions runs its preStop handler, with Function Compute's
// context, when its instance is stopped (here: drained by an update); its
// line is in the function's log.
func TestFCPreStopPythonNode(t *testing.T) {
	n := nodetest.Start(t, nil)
	fc := newFCAPI(t, n)
	c := client(n)
	for _, tc := range []struct{ runtime, file, code string }{
		{"python3.11", "index.py", "def handler(event, context):\n    return 'ok'\n" +
			"def stop(context):\n    print('preStop ran for ' + context.function.name, flush=True)\n"},
		{"nodejs20", "index.js", "exports.handler = async () => 'ok';\n" +
			"exports.stop = async (context) => { console.log('preStop ran for ' + context.function.name); };\n"},
	} {
		t.Run(tc.runtime, func(t *testing.T) {
			rt := tc.runtime
			if _, err := exec.LookPath(map[string]string{"python3.11": "python3.11", "nodejs20": "node"}[rt]); err != nil {
				t.Skipf("no %s on this host", rt)
			}
			name := "stop-" + strings.ReplaceAll(rt, ".", "")
			zip := base64.StdEncoding.EncodeToString(nodetest.Zip(t, map[string]string{tc.file: tc.code}))
			fc.do("POST", "/functions", `{"functionName":"`+name+`","runtime":"`+rt+`","handler":"index.handler","timeout":9,
				"instanceLifecycleConfig":{"preStop":{"handler":"index.stop","timeout":5}},"code":{"zipFile":"`+zip+`"}}`, 200)
			waitActive(t, c, name)
			if out := fc.do("POST", "/functions/"+name+"/invocations", "hi", 200); string(out) != "ok" {
				t.Fatalf("invoke: %q", out)
			}
			fc.do("PUT", "/functions/"+name, `{"environmentVariables":{"CHANGED":"yes"}}`, 200) // drains the instance
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				var seen bool
				for _, r := range getLogs(t, n, name, url.Values{"filter": {"preStop ran"}}) {
					seen = seen || strings.Contains(r.Line, "preStop ran for "+name)
				}
				if seen {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no preStop line in the function's log after its instance was drained")
				}
			}
		})
	}
}
