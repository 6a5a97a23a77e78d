package runtimes

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/runtimeapi"
)

func TestPythonInvoke(t *testing.T) {
	py := runtimeOf(t, KindPython)
	tests := []struct {
		name    string
		files   map[string]string
		handler string
		event   string
		want    string     // response payload, when no error
		wantErr *errorCase // function error
	}{
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := start(t, py, writeFiles(t, tt.files), tt.handler, nil)
			res := in.invoke(t, runtimeapi.Invocation{Payload: []byte(tt.event)})
			if tt.wantErr != nil {
				checkError(t, res.Err, *tt.wantErr)
				return
			}
			if res.Err != nil {
				t.Fatalf("function error: %+v", res.Err)
			}
			if got := string(res.Payload); got != tt.want {
				t.Errorf("payload = %s, want %s", got, tt.want)
			}
		})
	}
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
	if rd, _ := got["runtime_dir"].(string); !strings.HasSuffix(rd, "/python") {
		t.Errorf("LAMBDA_RUNTIME_DIR = %q, want the bootstrap's directory", rd)
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
	in := start(t, runtimeOf(t, KindPython), code, "app.handler", nil)
	for i, want := range []string{"1", "2", "3"} {
		if got := in.invokeJSON(t, `{}`); got != want {
			t.Errorf("invocation %d = %s, want %s", i, got, want)
		}
	}
	in.waitOutput(t, "hello from invocation 3")
	if n := strings.Count(in.out.String(), "init-once"); n != 1 {
		t.Errorf("module imported %d times, want once", n)
	}
}

func TestPythonInitErrors(t *testing.T) {
	py := runtimeOf(t, KindPython)
	tests := []struct {
		name    string
		files   map[string]string
		handler string
		want    errorCase
	}{
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := start(t, py, writeFiles(t, tt.files), tt.handler, nil)
			fe := in.initError(t)
			checkError(t, fe, tt.want)
			if !fe.Unhandled {
				t.Errorf("init error Unhandled = false, want true")
			}
		})
	}
}

func TestPythonOversizedResponse(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": "def handler(event, context):\n    return 'x' * event['size']\n"})
	checkOversized(t, start(t, runtimeOf(t, KindPython), code, "app.handler", nil))
}
