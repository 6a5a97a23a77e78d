package runtimes

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/runtimeapi"
)

func TestNodeInvoke(t *testing.T) {
	node := runtimeOf(t, KindNode)
	tests := []invokeCase{
		{
			name:    "CommonJS async",
			files:   map[string]string{"index.js": "exports.handler = async (event) => ({ got: event });\n"},
			handler: "index.handler", event: `{"a":[1,"x"]}`, want: `{"got":{"a":[1,"x"]}}`,
		},
		{
			name:    "CommonJS module.exports",
			files:   map[string]string{"app.cjs": "module.exports = { main: async () => 'cjs' };\n"},
			handler: "app.main", event: `{}`, want: `"cjs"`,
		},
		{
			name:    "ES module .mjs",
			files:   map[string]string{"index.mjs": "export const handler = async (event) => ({ esm: event.n + 1 });\n"},
			handler: "index.handler", event: `{"n":41}`, want: `{"esm":42}`,
		},
		{
			name: "type module .js",
			files: map[string]string{
				"package.json":  `{"type":"module"}`,
				"src/app.js":    "import { helper } from './helper.js';\nexport async function handler() { return helper(); }\n",
				"src/helper.js": "export const helper = () => 'from-esm';\n",
			},
			handler: "src/app.handler", event: `{}`, want: `"from-esm"`,
		},
		{
			name:    "nested handler path",
			files:   map[string]string{"index.js": "exports.api = { v1: { get: async () => 'deep' } };\n"},
			handler: "index.api.v1.get", event: `{}`, want: `"deep"`,
		},
		{
			name:    "callback",
			files:   map[string]string{"index.js": "exports.handler = (event, context, callback) => { setTimeout(() => callback(null, { cb: event.x }), 5); };\n"},
			handler: "index.handler", event: `{"x":"y"}`, want: `{"cb":"y"}`,
		},
		{
			name:    "callback error",
			files:   map[string]string{"index.js": "exports.handler = (event, context, callback) => callback(new RangeError('out of range'));\n"},
			handler: "index.handler", event: `{}`, wantErr: &errorCase{typ: "RangeError", message: "out of range"},
		},
		{
			name:    "context.succeed",
			files:   map[string]string{"index.js": "exports.handler = (event, context) => { context.succeed('done'); };\n"},
			handler: "index.handler", event: `{}`, want: `"done"`,
		},
		{
			name:    "context.fail",
			files:   map[string]string{"index.js": "exports.handler = (event, context) => { context.fail(new Error('nope')); };\n"},
			handler: "index.handler", event: `{}`, wantErr: &errorCase{typ: "Error", message: "nope"},
		},
		{
			name:    "context.done",
			files:   map[string]string{"index.js": "exports.handler = (event, context) => { context.done(null, 5); };\n"},
			handler: "index.handler", event: `{}`, want: `5`,
		},
		{
			name:    "synchronous without callback",
			files:   map[string]string{"index.js": "exports.handler = () => 'ignored, as on Lambda';\n"},
			handler: "index.handler", event: `{}`, want: `null`,
		},
		{
			name:    "undefined result",
			files:   map[string]string{"index.mjs": "export const handler = async () => {};\n"},
			handler: "index.handler", event: `{}`, want: `null`,
		},
		{
			name:    "thrown error",
			files:   map[string]string{"index.js": "exports.handler = async () => { throw new TypeError('bad input'); };\n"},
			handler: "index.handler", event: `{}`, wantErr: &errorCase{typ: "TypeError", message: "bad input"},
		},
		{
			name: "custom error class",
			files: map[string]string{"index.mjs": "class PaymentDeclined extends Error { constructor(m) { super(m); this.name = 'PaymentDeclined'; } }\n" +
				"export const handler = async () => { throw new PaymentDeclined('card 42'); };\n"},
			handler: "index.handler", event: `{}`, wantErr: &errorCase{typ: "PaymentDeclined", message: "card 42"},
		},
		{
			name:    "synchronous throw",
			files:   map[string]string{"index.js": "exports.handler = (e, c, cb) => { throw new Error('sync'); };\n"},
			handler: "index.handler", event: `{}`, wantErr: &errorCase{typ: "Error", message: "sync"},
		},
		{
			name:    "string error",
			files:   map[string]string{"index.js": "exports.handler = (e, c, cb) => cb('plain');\n"},
			handler: "index.handler", event: `{}`, wantErr: &errorCase{typ: "string", message: "plain"},
		},
		{
			name:    "not serialisable",
			files:   map[string]string{"index.js": "exports.handler = async () => { const o = {}; o.self = o; return o; };\n"},
			handler: "index.handler", event: `{}`,
			wantErr: &errorCase{typ: "Runtime.MarshalError", message: "Unable to stringify response body: ", prefix: true},
		},
	}
	runInvokeCases(t, node, tests)
}

func TestNodeStackTrace(t *testing.T) {
	code := writeFiles(t, map[string]string{"index.js": "function inner() { throw new Error('deep'); }\nexports.handler = async () => inner();\n"})
	in := start(t, runtimeOf(t, KindNode), code, "index.handler", nil)
	res := in.invoke(t, runtimeapi.Invocation{Payload: []byte(`{}`)})
	checkError(t, res.Err, errorCase{typ: "Error", message: "deep"})
	st := res.Err.StackTrace
	if len(st) < 2 || st[0] != "Error: deep" || !strings.Contains(st[1], "at inner") || !strings.Contains(st[1], "index.js") {
		t.Errorf("stackTrace = %q, want the error's stack lines", st)
	}
	// The runtime stays up for the next invocation.
	if res := in.invoke(t, runtimeapi.Invocation{Payload: []byte(`{}`)}); res.Err == nil {
		t.Error("second invocation succeeded, want the same error")
	}
}

// TestNodeCallbackWaitsForEmptyLoop checks Lambda's default: a callback's
// answer is sent once the handler's pending work is done.
func TestNodeCallbackWaitsForEmptyLoop(t *testing.T) {
	tests := []struct {
		name      string
		wait      bool
		wantWrote bool // the timer's file exists when the answer arrives
	}{
		{"waits", true, true},
		{"does not wait", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := writeFiles(t, map[string]string{"index.js": `const fs = require('fs');
exports.handler = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = event.wait;
  setTimeout(() => fs.writeFileSync(event.file, 'x'), 500);
  callback(null, 'answered');
};
`})
			in := start(t, runtimeOf(t, KindNode), code, "index.handler", nil)
			// The instance's /tmp, which the host reaches through TmpDir.
			marker := filepath.Join(in.sb.TmpDir(), "marker")
			ev, _ := json.Marshal(map[string]any{"wait": tt.wait, "file": "/tmp/marker"})
			if got := in.invokeJSON(t, string(ev)); got != `"answered"` {
				t.Fatalf("payload = %s, want \"answered\"", got)
			}
			_, err := os.Stat(marker)
			if wrote := err == nil; wrote != tt.wantWrote {
				t.Errorf("timer done before the answer = %v, want %v", wrote, tt.wantWrote)
			}
			// The instance serves the next invocation.
			ev, _ = json.Marshal(map[string]any{"wait": true, "file": "/tmp/marker2"})
			if got := in.invokeJSON(t, string(ev)); got != `"answered"` {
				t.Errorf("second payload = %s, want \"answered\"", got)
			}
		})
	}
}

func TestNodeContext(t *testing.T) {
	code := writeFiles(t, map[string]string{"index.mjs": `export const handler = async (event, context) => ({
  awsRequestId: context.awsRequestId,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  memoryLimitInMB: context.memoryLimitInMB,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  remaining: context.getRemainingTimeInMillis(),
  custom: context.clientContext && context.clientContext.custom,
  identityId: context.identity && context.identity.cognitoIdentityId,
  trace: process.env._X_AMZN_TRACE_ID,
  userVar: process.env.GREETING,
  runtimeDir: process.env.LAMBDA_RUNTIME_DIR,
});
`})
	in := start(t, runtimeOf(t, KindNode), code, "index.handler", map[string]string{"GREETING": "hi"})
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
		"awsRequestId": "8f5e-ctx", "functionName": "fn", "functionVersion": "$LATEST",
		"invokedFunctionArn": "arn:aws:lambda:eu-west-1:000000000000:function:fn",
		"memoryLimitInMB":    "256", "logGroupName": "/aws/lambda/fn",
		"identityId": "id-7", "trace": "Root=1-abc", "userVar": "hi",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
	if c, _ := got["custom"].(map[string]any); c["k"] != "v" {
		t.Errorf("clientContext.custom = %v, want {k: v}", got["custom"])
	}
	if s, _ := got["logStreamName"].(string); !strings.Contains(s, "[$LATEST]") {
		t.Errorf("logStreamName = %q, want a Lambda-style stream name", s)
	}
	if rd, _ := got["runtimeDir"].(string); rd != in.in.RuntimeDir {
		t.Errorf("LAMBDA_RUNTIME_DIR = %q, want the bootstrap's directory %s", rd, in.in.RuntimeDir)
	}
	if r, _ := got["remaining"].(float64); r <= 20000 || r > 30000 {
		t.Errorf("remaining time = %v ms, want within (20000, 30000]", got["remaining"])
	}
}

func TestNodeWarmAndOutput(t *testing.T) {
	code := writeFiles(t, map[string]string{"index.js": `console.log('init-once');
let count = 0;
exports.handler = async () => { count++; console.log('hello from invocation', count); return count; };
`})
	checkWarmReuse(t, runtimeOf(t, KindNode), code, "index.handler")
}

func TestNodeInitErrors(t *testing.T) {
	node := runtimeOf(t, KindNode)
	tests := []initErrorCase{
		{
			name: "module not found", handler: "nosuch.handler",
			want: errorCase{typ: "Runtime.ImportModuleError", message: "Error: Cannot find module 'nosuch'"},
		},
		{
			name: "dependency not found", handler: "index.handler",
			files: map[string]string{"index.js": "require('nosuchdep');\nexports.handler = async () => 1;\n"},
			want:  errorCase{typ: "Runtime.ImportModuleError", message: "Error: Cannot find module 'nosuchdep'", prefix: true},
		},
		{
			name: "handler not found", handler: "index.missing",
			files: map[string]string{"index.js": "exports.handler = async () => 1;\n"},
			want:  errorCase{typ: "Runtime.HandlerNotFound", message: "index.missing is undefined or not exported"},
		},
		{
			name: "handler not a function", handler: "index.value",
			files: map[string]string{"index.mjs": "export const value = 3;\n"},
			want:  errorCase{typ: "Runtime.HandlerNotFound", message: "index.value is not a function"},
		},
		{
			name: "malformed handler", handler: "index",
			files: map[string]string{"index.js": "exports.handler = async () => 1;\n"},
			want:  errorCase{typ: "Runtime.MalformedHandlerName", message: "Bad handler 'index'"},
		},
		{
			name: "syntax error CommonJS", handler: "index.handler",
			files: map[string]string{"index.js": "exports.handler = async () => {;\n"},
			want:  errorCase{typ: "Runtime.UserCodeSyntaxError", message: "SyntaxError: ", prefix: true},
		},
		{
			name: "syntax error ES module", handler: "index.handler",
			files: map[string]string{"index.mjs": "export const handler = ) => 1;\n"},
			want:  errorCase{typ: "Runtime.UserCodeSyntaxError", message: "SyntaxError: ", prefix: true},
		},
		{
			name: "throw at load", handler: "index.handler",
			files: map[string]string{"index.mjs": "throw new Error('no config');\n"},
			want:  errorCase{typ: "Error", message: "no config"},
		},
	}
	runInitErrorCases(t, node, tests)
}

func TestNodeUncaughtException(t *testing.T) {
	code := writeFiles(t, map[string]string{"index.js": "exports.handler = (e, c, cb) => { setTimeout(() => { throw new Error('escaped'); }, 1); };\n"})
	in := start(t, runtimeOf(t, KindNode), code, "index.handler", nil)
	res := in.invoke(t, runtimeapi.Invocation{Payload: []byte(`{}`)})
	checkError(t, res.Err, errorCase{typ: "Error", message: "escaped"})
	<-in.done
	if in.err == nil {
		t.Error("runtime exited 0 after an uncaught exception, want non-zero")
	}
}

func TestNodeOversizedResponse(t *testing.T) {
	code := writeFiles(t, map[string]string{"index.js": "exports.handler = async (event) => 'x'.repeat(event.size);\n"})
	checkOversized(t, start(t, runtimeOf(t, KindNode), code, "index.handler", nil))
}
