package api_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// fcConvPy is a Python function written for Function Compute: its event is
// bytes, its context Function Compute's, its initializer runs once.
const fcConvPy = `import json
state = {"inits": 0}
def init(context):
    state["inits"] += 1
    state["init"] = context.function.name
    if context.function.memory == 999:
        raise ValueError("never")
def handler(event, context):
    if event == b"bytes":
        return b"\x00raw"
    if event == b"dict":
        return {"a": 1}
    return json.dumps({"type": type(event).__name__, "event": event.decode(), "init": state.get("init"), "inits": state["inits"],
        "requestId": context.request_id, "fn": [context.function.name, context.function.handler, context.function.memory, context.function.timeout,
        context.function.initializer], "region": context.region, "account": context.account_id, "qualifier": context.service.qualifier})
`

// fcConvNode is the same in Node, with a callback initializer.
const fcConvNode = `let init = null, inits = 0;
exports.init = (context, callback) => { inits++; init = context.function.name; callback(null, ''); };
exports.handler = async (event, context) => JSON.stringify({ buffer: Buffer.isBuffer(event), event: event.toString(), init, inits,
  requestId: context.requestId, fn: [context.function.name, context.function.handler, context.function.memory, context.function.timeout,
  context.function.initializer], region: context.region, account: context.accountId, qualifier: context.service.qualifier });
`

type fcConvOut struct {
	Type, Event, Init, RequestID, Region, Account, Qualifier string
	Buffer                                                   bool
	Inits                                                    int
	Fn                                                       []any
}

// TestFCConventions: Python and Node functions made in the Function
// Compute dialect get the payload as bytes/a Buffer, Function Compute's
// context and their initializer (once per instance); answers go back as
// they are; a function made with a Nimbus runtime ID keeps Lambda's
// conventions; bad lifecycle configs are refused.
func TestFCConventions(t *testing.T) {
	n := nodetest.Start(t, nil)
	fc := newFCAPI(t, n)
	c := client(n)
	b64 := func(files map[string]string) string { return base64.StdEncoding.EncodeToString(nodetest.Zip(t, files)) }
	node := strings.TrimSuffix(nodeRuntime(t), ".x")
	for _, f := range []struct{ name, runtime, files string }{
		{"convpy", "python3.11", `{"index.py":` + jsonString(fcConvPy) + `}`},
		{"convnode", node, `{"index.js":` + jsonString(fcConvNode) + `}`},
	} {
		var files map[string]string
		_ = json.Unmarshal([]byte(f.files), &files)
		var got struct {
			InstanceLifecycleConfig struct {
				Initializer struct {
					Handler string
					Timeout int
				}
			}
		}
		fc.json("POST", "/functions", `{"functionName":"`+f.name+`","runtime":"`+f.runtime+`","handler":"index.handler","memorySize":256,"timeout":7,
			"instanceLifecycleConfig":{"initializer":{"handler":"index.init","timeout":5}},"code":{"zipFile":"`+b64(files)+`"}}`, 200, &got)
		if got.InstanceLifecycleConfig.Initializer.Handler != "index.init" || got.InstanceLifecycleConfig.Initializer.Timeout != 5 {
			t.Errorf("%s: CreateFunction's instanceLifecycleConfig = %+v", f.name, got)
		}
		waitActive(t, c, f.name)
		for i := 1; i <= 2; i++ {
			var out fcConvOut
			fc.json("POST", "/functions/"+f.name+"/invocations", "hello", 200, &out)
			if out.Event != "hello" || (out.Type != "bytes" && !out.Buffer) || out.Init != f.name || out.Inits != 1 ||
				out.RequestID == "" || out.Region != "us-east-1" || out.Account != "000000000000" || out.Qualifier != "LATEST" ||
				len(out.Fn) != 5 || out.Fn[0] != f.name || out.Fn[1] != "index.handler" || out.Fn[2] != 256.0 || out.Fn[3] != 7.0 || out.Fn[4] != "index.init" {
				t.Errorf("%s: invocation %d saw %+v", f.name, i, out)
			}
		}
	}
	if out := fc.do("POST", "/functions/convpy/invocations", "bytes", 200); string(out) != "\x00raw" {
		t.Errorf("bytes answer = %q", out)
	}
	if out := fc.do("POST", "/functions/convpy/invocations", "dict", 200); string(out) != `{"a": 1}` {
		t.Errorf("dict answer = %q", out)
	}
	// A failing initializer fails the invocation, and is tried again.
	fc.do("PUT", "/functions/convpy", `{"memorySize":999}`, 400)
	fc.do("PUT", "/functions/convpy", `{"instanceLifecycleConfig":{"initializer":{"handler":"index.nothere"}}}`, 200)
	waitActive(t, c, "convpy")
	for range 2 {
		if out := fc.do("POST", "/functions/convpy/invocations", "x", 200); !strings.Contains(string(out), "nothere") {
			t.Errorf("invocation with a missing initializer = %s", out)
		}
	}

	fc.fails("POST", "/functions", `{"functionName":"x1","runtime":"python3.11","handler":"index.handler","code":{"zipFile":"`+b64(map[string]string{"index.py": ""})+`"},
		"instanceLifecycleConfig":{"preStop":{"handler":"index.stop","command":["x"]}}}`, 400, "InvalidArgument", "preStop.command")
	fc.fails("POST", "/functions", `{"functionName":"x1","runtime":"python3.11","handler":"index.handler","code":{"zipFile":"`+b64(map[string]string{"index.py": ""})+`"},
		"instanceLifecycleConfig":{"initializer":{"handler":"index.init","command":["x"]}}}`, 400, "InvalidArgument", "initializer.command")
	fc.fails("POST", "/functions", `{"functionName":"x1","runtime":"python3.11","handler":"index.handler","code":{"zipFile":"`+b64(map[string]string{"index.py": ""})+`"},
		"instanceLifecycleConfig":{"initializer":{"handler":"index.init","timeout":601}}}`, 400, "InvalidArgument", "timeout 601")
	// A logConfig that ships logs or metrics elsewhere is refused; one that
	// asks for nothing is taken.
	pyCode := `"runtime":"python3.11","handler":"index.handler","code":{"zipFile":"` + b64(map[string]string{"index.py": ""}) + `"}`
	fc.fails("POST", "/functions", `{"functionName":"x1",`+pyCode+`,"logConfig":{"project":"p","logstore":"l"}}`, 400, "InvalidArgument", "logConfig.project")
	fc.fails("POST", "/functions", `{"functionName":"x1",`+pyCode+`,"logConfig":{"enableRequestMetrics":true}}`, 400, "InvalidArgument", "enableRequestMetrics")
	fc.fails("POST", "/functions", `{"functionName":"x1",`+pyCode+`,"logConfig":{"logBeginRule":"DefaultRegex"}}`, 400, "InvalidArgument", "logBeginRule")
	fc.fails("POST", "/functions", `{"functionName":"x1",`+pyCode+`,"logConfig":"auto"}`, 400, "InvalidArgument", "logConfig")
	fc.do("POST", "/functions", `{"functionName":"nolog",`+pyCode+`,"logConfig":{"project":"","logstore":"","logBeginRule":"None"}}`, 200)
	fc.fails("PUT", "/functions/nolog", `{"logConfig":{"project":"p","logstore":"l"}}`, 400, "InvalidArgument", "logConfig.project")

	// Nimbus's own runtime ID: Lambda's conventions.
	fc.do("POST", "/functions", `{"functionName":"lambdalike","runtime":"`+node+`.x","handler":"index.handler","code":{"zipFile":"`+
		b64(map[string]string{"index.js": "exports.handler = async (event) => ({ got: event });\n"})+`"}}`, 200)
	waitActive(t, c, "lambdalike")
	if out := fc.do("POST", "/functions/lambdalike/invocations", `{"a":1}`, 200); string(out) != `{"got":{"a":1}}` {
		t.Errorf("a function with Nimbus's runtime ID = %s", out)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// fcCustomEcho is a custom runtime's server for Function Compute's
// conventions: it listens on FC_SERVER_PORT and answers each request with
// its method, path, body and x-fc-* headers.
const fcCustomEcho = `import http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = json.dumps({"method": self.command, "path": self.path, "body": body.decode(), "port": os.environ.get("PORT"),
            "fcPort": os.environ.get("FC_SERVER_PORT"), "fc": {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-fc-")}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_POST = do_GET = answer
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["FC_SERVER_PORT"])), H).serve_forever()
`

// TestFCCustomConventions: a custom function made in Function Compute's
// dialect gets an invocation as POST /invoke and an http trigger's request
// as it came, each with Function Compute's x-fc-* headers, on
// customRuntimeConfig.port when its instance has a network of its own.
func TestFCCustomConventions(t *testing.T) {
	n := nodetest.Start(t, nil)
	fc := newFCAPI(t, n)
	c := client(n)
	zip := base64.StdEncoding.EncodeToString(nodetest.Zip(t, map[string]string{"server.py": fcCustomEcho,
		"bootstrap": "#!/bin/sh\nexec /usr/bin/python3 server.py\n"}, "bootstrap"))
	fc.do("POST", "/functions", `{"functionName":"cust","runtime":"custom.debian12","handler":"index.handler","memorySize":256,"timeout":9,
		"customRuntimeConfig":{"port":9123},"code":{"zipFile":"`+zip+`"}}`, 200)
	waitActive(t, c, "cust")
	type echo struct {
		Method, Path, Body, Port, FCPort string
		FC                               map[string]string
	}
	var e echo
	fc.json("POST", "/functions/cust/invocations", "payload", 200, &e)
	if e.Method != "POST" || e.Path != "/invoke" || e.Body != "payload" || e.Port != e.FCPort || e.FCPort == "" ||
		e.FC["x-fc-request-id"] == "" || e.FC["x-fc-function-name"] != "cust" || e.FC["x-fc-function-handler"] != "index.handler" ||
		e.FC["x-fc-function-memory"] != "256" || e.FC["x-fc-function-timeout"] != "9" || e.FC["x-fc-region"] != "us-east-1" ||
		e.FC["x-fc-account-id"] != "000000000000" || e.FC["x-fc-qualifier"] != "LATEST" || e.FC["x-fc-instance-id"] == "" {
		t.Errorf("InvokeFunction of a custom function: %+v", e)
	}
	t.Logf("the custom runtime listened on %s (9123 when the instance has a network of its own)", e.FCPort)
	var h struct{ HTTPTrigger struct{ URLInternet string } }
	fc.json("POST", "/functions/cust/triggers", `{"triggerName":"web","triggerType":"http","triggerConfig":"{\"authType\":\"anonymous\",\"methods\":[\"GET\"]}"}`, 200, &h)
	res, err := http.Get(h.HTTPTrigger.URLInternet + "a/b?c=1")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	e = echo{}
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil || e.Method != "GET" || e.Path != "/a/b?c=1" || e.FC["x-fc-request-id"] == "" {
		t.Errorf("a request through the http trigger: %+v, %v", e, err)
	}
}

// TestFCInitializerTimeout: a Python or Node function's initializer runs
// within its own timeout, not the function's: one that takes 2 s runs
// whole under a 4 s initializer timeout although the function's is 1 s,
// and fails the invocation (InitializationError) under a 1 s one.
func TestFCInitializerTimeout(t *testing.T) {
	n := nodetest.Start(t, nil)
	fc := newFCAPI(t, n)
	c := client(n)
	node := strings.TrimSuffix(nodeRuntime(t), ".x")
	for _, f := range []struct{ name, runtime, file, code string }{
		{"slowpy", "python3.11", "index.py", "import time\nstate = {}\ndef init(context):\n    time.sleep(2)\n    state['left'] = context.get_remaining_time_in_millis()\ndef handler(event, context):\n    return 'ran after an init with %d ms left' % state['left']\n"},
		{"slownode", node, "index.js", "let left = -1;\nexports.init = async (context) => { await new Promise((r) => setTimeout(r, 2000)); left = context.getRemainingTimeInMillis(); };\nexports.handler = async () => `ran after an init with ${left} ms left`;\n"},
	} {
		zip := base64.StdEncoding.EncodeToString(nodetest.Zip(t, map[string]string{f.file: f.code}))
		for _, initTimeout := range []int{4, 1} {
			name := f.name + strconv.Itoa(initTimeout)
			fc.do("POST", "/functions", `{"functionName":"`+name+`","runtime":"`+f.runtime+`","handler":"index.handler","timeout":1,
				"instanceLifecycleConfig":{"initializer":{"handler":"index.init","timeout":`+strconv.Itoa(initTimeout)+`}},"code":{"zipFile":"`+zip+`"}}`, 200)
			waitActive(t, c, name)
			res := fcInvoke(t, fc, name, "x")
			var e struct{ ErrorMessage, ErrorType string }
			_ = json.Unmarshal([]byte(res.body), &e)
			switch {
			case initTimeout == 4 && (res.Header.Get("X-Fc-Error-Type") != "" || !strings.HasPrefix(res.body, "ran after an init with ")):
				t.Errorf("%s: a 2 s initializer under a 4 s timeout: %s %s", name, res.Header.Get("X-Fc-Error-Type"), res.body)
			case initTimeout == 4:
				var left int
				if _, err := fmt.Sscanf(strings.TrimPrefix(res.body, "ran after an init with "), "%d", &left); err != nil || left < 500 || left > 2100 {
					t.Errorf("%s: the initializer's context had %d ms left after 2 s of a 4 s timeout (%v)", name, left, err)
				}
			case e.ErrorType != "InitializationError" || !strings.Contains(e.ErrorMessage, "Initializer timed out after 1 seconds"):
				t.Errorf("%s: a 2 s initializer under a 1 s timeout: %s %s", name, res.Header.Get("X-Fc-Error-Type"), res.body)
			}
		}
	}
}
