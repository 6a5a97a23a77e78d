package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// urlGoBootstrap compiles the aws-lambda-go function URL test function once.
var urlGoBootstrap = sync.OnceValues(func() ([]byte, error) { return buildStatic("../trigger/funcurl/testdata/urlfn") })

const pyURL = `import base64, json
def handler(event, context):
    p = event["rawPath"]
    if p == "/plain":
        return {"plain": True, "q": event.get("queryStringParameters")}
    if p == "/string":
        return "just a string"
    if p == "/fail":
        raise ValueError("boom")
    if p == "/bad":
        return {"statusCode": "nope"}
    if p == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if p == "/big":
        return {"statusCode": 200, "body": "x" * (7 << 20)}
    return {"statusCode": 201, "headers": {"content-type": "application/json", "x-fn": "py"},
            "cookies": ["s=1; Path=/", "t=2"], "body": json.dumps(event)}
`

const httpURLServer = `import base64, http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n) if n else b""
        if self.headers.get("X-Quiet"):
            body = b"%d bytes" % len(body)
        if self.path.startswith("/big"):
            out, status = b"y" * (7 << 20), 200
        else:
            status = 418 if self.path.startswith("/teapot") else 200
            out = json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers),
                              "body": base64.b64encode(body).decode()}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Http-Fn", "yes")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

// patientNode lets requests wait a minute for an instance: on a loaded
// machine a cold start can pass the default 10 s queue timeout.
func patientNode(c *node.Config) { c.QueueTimeout = time.Minute }

// urlEvent is the part of the format 2.0 event the tests look at.
type urlEvent struct {
	Version               string
	RouteKey              string
	RawPath               string
	RawQueryString        string
	Cookies               []string
	Headers               map[string]string
	QueryStringParameters map[string]string
	Body                  string
	IsBase64Encoded       bool
	RequestContext        struct {
		AccountID string
		APIID     string
		RequestID string
		Stage     string
		TimeEpoch int64
		HTTP      struct{ Method, Path, Protocol, SourceIP, UserAgent string }
	}
}

type urlReply struct {
	status int
	header http.Header
	body   []byte
}

func (r urlReply) message() string {
	var m struct{ Message string }
	_ = json.Unmarshal(r.body, &m)
	return m.Message
}

func urlCall(t *testing.T, method, url string, body []byte, header map[string]string) urlReply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, url, err)
	}
	return urlReply{status: resp.StatusCode, header: resp.Header, body: b}
}

func createURL(t *testing.T, c *lambda.Client, name string, auth types.FunctionUrlAuthType, cors *types.Cors) *lambda.CreateFunctionUrlConfigOutput {
	t.Helper()
	out, err := c.CreateFunctionUrlConfig(t.Context(), &lambda.CreateFunctionUrlConfigInput{
		FunctionName: aws.String(name), AuthType: auth, Cors: cors,
	})
	if err != nil {
		t.Fatalf("CreateFunctionUrlConfig %s: %v", name, err)
	}
	return out
}

func wantStatus(t *testing.T, r urlReply, status int, msg string) {
	t.Helper()
	if r.status != status || !strings.Contains(r.message(), msg) {
		t.Errorf("answer %d %s, want %d with a message containing %q", r.status, r.body, status, msg)
	}
}

func TestFunctionURLRuntimeAPI(t *testing.T) {
	node := nodetest.NodeRuntime(t)
	n := nodetest.Start(t, patientNode)
	c := client(n)
	base := nodetest.Endpoint(n) + "/fn/"
	goBin, err := urlGoBootstrap()
	if err != nil {
		t.Fatalf("build Go function: %v", err)
	}
	py := nodetest.Zip(t, map[string]string{"app.py": pyURL})
	for _, f := range []fixture{
		{name: "url-py", runtime: "python3.11", handler: "app.handler", zip: py, timeout: 30, memory: 256},
		{name: "url-key", runtime: "python3.11", handler: "app.handler", zip: py},
		{name: "url-cors", runtime: "python3.11", handler: "app.handler", zip: py},
		{name: "no-url", runtime: "python3.11", handler: "app.handler", zip: py},
		{name: "url-cold", runtime: "python3.11", handler: "app.handler", zip: py},
		{name: "url-node", runtime: node, handler: "index.handler", zip: nodetest.Zip(t, map[string]string{
			"index.mjs": "export const handler = async (e) => ({statusCode: 200, headers: {'content-type': 'text/plain'}, body: 'node saw ' + e.requestContext.http.method + ' ' + e.rawPath});",
		})},
		{name: "url-go", runtime: "provided.al2023", zip: nodetest.Zip(t, map[string][]byte{"bootstrap": goBin}, "bootstrap")},
	} {
		deploy(t, c, f)
	}
	for _, name := range []string{"url-py", "url-node", "url-go", "url-cold"} {
		createURL(t, c, name, types.FunctionUrlAuthTypeNone, nil)
	}

	t.Run("python GET with query and cookies", func(t *testing.T) {
		r := urlCall(t, "GET", base+"url-py/items/42?a=1&b=x%20y&a=2", nil, map[string]string{
			"Cookie": "c1=v1; c2=v2", "X-Custom": "hello", "User-Agent": "url-test"})
		if r.status != 201 || r.header.Get("X-Fn") != "py" || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("answer %d %v %s", r.status, r.header, r.body)
		}
		if got := r.header.Values("Set-Cookie"); len(got) != 2 || got[0] != "s=1; Path=/" || got[1] != "t=2" {
			t.Errorf("Set-Cookie = %q", got)
		}
		var ev urlEvent
		if err := json.Unmarshal(r.body, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Version != "2.0" || ev.RouteKey != "$default" || ev.RawPath != "/items/42" || ev.RawQueryString != "a=1&b=x%20y&a=2" ||
			ev.QueryStringParameters["a"] != "1,2" || ev.QueryStringParameters["b"] != "x y" ||
			strings.Join(ev.Cookies, "|") != "c1=v1|c2=v2" || ev.Headers["x-custom"] != "hello" || ev.Headers["cookie"] != "" ||
			ev.Body != "" || ev.IsBase64Encoded {
			t.Errorf("event = %+v", ev)
		}
		rc := ev.RequestContext
		if rc.HTTP.Method != "GET" || rc.HTTP.Path != "/items/42" || rc.HTTP.SourceIP != "127.0.0.1" || rc.HTTP.UserAgent != "url-test" ||
			rc.HTTP.Protocol != "HTTP/1.1" || rc.Stage != "$default" || rc.APIID != "url-py" || rc.TimeEpoch == 0 ||
			rc.RequestID == "" || rc.RequestID != r.header.Get("X-Amzn-RequestId") {
			t.Errorf("requestContext = %+v (X-Amzn-RequestId %s)", rc, r.header.Get("X-Amzn-RequestId"))
		}
	})
	t.Run("python POST bodies", func(t *testing.T) {
		r := urlCall(t, "POST", base+"url-py", []byte(`{"n":1}`), map[string]string{"Content-Type": "application/json"})
		var ev urlEvent
		if err := json.Unmarshal(r.body, &ev); err != nil || ev.Body != `{"n":1}` || ev.IsBase64Encoded || ev.RawPath != "/" {
			t.Errorf("JSON body: %d %s (%v)", r.status, r.body, err)
		}
		bin := make([]byte, 256)
		for i := range bin {
			bin[i] = byte(i)
		}
		r = urlCall(t, "PUT", base+"url-py/upload", bin, map[string]string{"Content-Type": "application/octet-stream"})
		ev = urlEvent{}
		if err := json.Unmarshal(r.body, &ev); err != nil || !ev.IsBase64Encoded {
			t.Fatalf("binary body: %d %s (%v)", r.status, r.body, err)
		}
		if got, _ := base64.StdEncoding.DecodeString(ev.Body); !bytes.Equal(got, bin) {
			t.Errorf("binary body arrived as %q", got)
		}
	})
	t.Run("plain values", func(t *testing.T) {
		r := urlCall(t, "GET", base+"url-py/plain?k=v", nil, nil)
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" || string(r.body) != `{"plain": true, "q": {"k": "v"}}` {
			t.Errorf("object without statusCode: %d %v %s", r.status, r.header, r.body)
		}
		r = urlCall(t, "GET", base+"url-py/string", nil, nil)
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" || string(r.body) != `"just a string"` {
			t.Errorf("string: %d %v %s", r.status, r.header, r.body)
		}
	})
	t.Run("binary response", func(t *testing.T) {
		r := urlCall(t, "GET", base+"url-py/binary", nil, nil)
		if r.status != 200 || r.header.Get("Content-Type") != "application/octet-stream" || len(r.body) != 256 || r.body[255] != 255 {
			t.Errorf("binary response: %d %v %q", r.status, r.header, r.body)
		}
	})
	t.Run("function error", func(t *testing.T) {
		wantStatus(t, urlCall(t, "GET", base+"url-py/fail", nil, nil), 502, "Internal Server Error")
	})
	t.Run("invalid response", func(t *testing.T) {
		r := urlCall(t, "GET", base+"url-py/bad", nil, nil)
		wantStatus(t, r, 502, "Internal Server Error")
		logs := urlCall(t, "GET", nodetest.Endpoint(n)+"/nimbus/v1/functions/url-py/logs", nil, nil)
		if !strings.Contains(string(logs.body), "statusCode must be an integer") {
			t.Errorf("the function's log does not say why:\n%s", logs.body)
		}
	})
	t.Run("response too large", func(t *testing.T) {
		wantStatus(t, urlCall(t, "GET", base+"url-py/big", nil, nil), 502, "6291456 bytes")
	})
	t.Run("request too large", func(t *testing.T) {
		wantStatus(t, urlCall(t, "POST", base+"url-py", make([]byte, 6<<20+1), map[string]string{"Content-Type": "text/plain"}), 413, "at most 6291456 bytes")
		// 5 MB of binary is 6.7 MB of base64 in the event.
		wantStatus(t, urlCall(t, "POST", base+"url-py", make([]byte, 5<<20), map[string]string{"Content-Type": "image/png"}), 413, "base64")
	})
	t.Run("node", func(t *testing.T) {
		r := urlCall(t, "DELETE", base+"url-node/thing", nil, nil)
		if r.status != 200 || string(r.body) != "node saw DELETE /thing" || r.header.Get("Content-Type") != "text/plain" {
			t.Errorf("node: %d %v %s", r.status, r.header, r.body)
		}
	})
	t.Run("go aws-lambda-go", func(t *testing.T) {
		r := urlCall(t, "GET", base+"url-go/hello?x=1", nil, map[string]string{"Cookie": "k=v"})
		var ev urlEvent
		if err := json.Unmarshal(r.body, &ev); err != nil || r.status != 200 || r.header.Get("X-Runtime") != "go" ||
			r.header.Get("Set-Cookie") != "go=1; Path=/" {
			t.Fatalf("go: %d %v %s (%v)", r.status, r.header, r.body, err)
		}
		if ev.RawPath != "/hello" || ev.QueryStringParameters["x"] != "1" || len(ev.Cookies) != 1 || ev.RequestContext.HTTP.Method != "GET" {
			t.Errorf("aws-lambda-go decoded %+v", ev)
		}
		wantStatus(t, urlCall(t, "GET", base+"url-go/error", nil, nil), 502, "Internal Server Error")
	})
	t.Run("auth key", func(t *testing.T) {
		createURL(t, c, "url-key", types.FunctionUrlAuthType("NIMBUS_KEY"), nil)
		key := nimbusKey(t, nodetest.Endpoint(n), "url-key")
		wantStatus(t, urlCall(t, "GET", base+"url-key", nil, nil), 403, "Forbidden")
		wantStatus(t, urlCall(t, "GET", base+"url-key", nil, map[string]string{"X-Nimbus-Key": key + "x"}), 403, "Forbidden")
		if r := urlCall(t, "GET", base+"url-key/?key="+key, nil, nil); r.status != 403 {
			t.Errorf("a key in the query string was accepted: %d", r.status)
		}
		r := urlCall(t, "GET", base+"url-key", nil, map[string]string{"X-Nimbus-Key": key})
		var ev urlEvent
		if err := json.Unmarshal(r.body, &ev); err != nil || r.status != 201 {
			t.Fatalf("with the key: %d %s", r.status, r.body)
		}
		if _, ok := ev.Headers["x-nimbus-key"]; ok {
			t.Error("the function saw the key")
		}
	})
	t.Run("cors", func(t *testing.T) {
		createURL(t, c, "url-cors", types.FunctionUrlAuthTypeNone, &types.Cors{
			AllowOrigins: []string{"https://app.example"}, AllowMethods: []string{"GET", "POST"},
			AllowHeaders: []string{"content-type"}, ExposeHeaders: []string{"x-fn"}, MaxAge: aws.Int32(600),
			AllowCredentials: aws.Bool(true),
		})
		r := urlCall(t, "OPTIONS", base+"url-cors/x", nil, map[string]string{"Origin": "https://app.example",
			"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
		want := map[string]string{"Access-Control-Allow-Origin": "https://app.example", "Access-Control-Allow-Methods": "GET, POST",
			"Access-Control-Allow-Headers": "content-type", "Access-Control-Max-Age": "600", "Access-Control-Allow-Credentials": "true", "X-Fn": ""}
		for k, v := range want {
			if got := r.header.Get(k); got != v {
				t.Errorf("preflight %s = %q, want %q", k, got, v)
			}
		}
		if r.status != 200 || len(r.body) != 0 {
			t.Errorf("preflight answer %d %q", r.status, r.body)
		}
		r = urlCall(t, "GET", base+"url-cors/x", nil, map[string]string{"Origin": "https://app.example"})
		if r.status != 201 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || r.header.Get("Access-Control-Expose-Headers") != "x-fn" {
			t.Errorf("actual request: %d %v", r.status, r.header)
		}
		r = urlCall(t, "GET", base+"url-cors/x", nil, map[string]string{"Origin": "https://evil.example"})
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("another origin was allowed: %v", r.header)
		}
	})
	t.Run("not found", func(t *testing.T) {
		wantStatus(t, urlCall(t, "GET", base+"missing/x", nil, nil), 404, "Function not found: missing")
		wantStatus(t, urlCall(t, "GET", base+"no-url", nil, nil), 404, "has no function URL")
		wantStatus(t, urlCall(t, "POST", base+"bad.name", nil, nil), 404, "is not a function name")
	})
	t.Run("throttled", func(t *testing.T) {
		// A function never run (the engine lets a warm instance serve
		// even at reserved concurrency 0).
		if _, err := c.PutFunctionConcurrency(t.Context(), &lambda.PutFunctionConcurrencyInput{
			FunctionName: aws.String("url-cold"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
			t.Fatal(err)
		}
		r := urlCall(t, "GET", base+"url-cold", nil, nil)
		wantStatus(t, r, 429, "Too Many Requests")
		if r.header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
	})
	t.Run("counts", func(t *testing.T) {
		// url-go answered once and failed once; url-cold was throttled.
		for name, want := range map[string][2]int64{"url-go": {1, 1}, "url-cold": {0, 1}} {
			var list api.TriggerList
			r := urlCall(t, "GET", nodetest.Endpoint(n)+"/nimbus/v1/functions/"+name+"/triggers", nil, nil)
			if err := json.Unmarshal(r.body, &list); err != nil || len(list.Triggers) != 1 {
				t.Fatalf("triggers of %s: %d %s", name, r.status, r.body)
			}
			st := list.Triggers[0].Status
			if st.Delivered != want[0] || st.Failed != want[1] || (want[0] > 0 && st.LastEvent.IsZero()) {
				t.Errorf("%s's http trigger counts %+v, want %d delivered and %d failed", name, st, want[0], want[1])
			}
		}
	})
}

// nimbusKey reads the key of a NIMBUS_KEY URL (Nimbus's extension field).
func nimbusKey(t *testing.T, endpoint, name string) string {
	t.Helper()
	r := urlCall(t, "GET", endpoint+"/2021-10-31/functions/"+name+"/url", nil, nil)
	var out struct{ AuthType, NimbusKey string }
	if err := json.Unmarshal(r.body, &out); err != nil || out.AuthType != "NIMBUS_KEY" || len(out.NimbusKey) < 16 {
		t.Fatalf("GetFunctionUrlConfig %s: %d %s", name, r.status, r.body)
	}
	return out.NimbusKey
}

func TestFunctionURLHTTPFunction(t *testing.T) {
	n := nodetest.Start(t, patientNode)
	c := client(n)
	base := nodetest.Endpoint(n) + "/fn/"
	deploy(t, c, fixture{name: "web", runtime: "http", timeout: 30, zip: nodetest.Zip(t, map[string][]byte{
		"bootstrap": []byte("#!/bin/sh\nexec /usr/bin/python3 server.py\n"),
		"server.py": []byte(httpURLServer),
	}, "bootstrap")})
	createURL(t, c, "web", types.FunctionUrlAuthType("NIMBUS_KEY"), &types.Cors{AllowOrigins: []string{"*"}})
	key := nimbusKey(t, nodetest.Endpoint(n), "web")
	auth := map[string]string{"X-Nimbus-Key": key}

	t.Run("raw request", func(t *testing.T) {
		body := []byte{0, 1, 2, 'x', 0xff}
		r := urlCall(t, "POST", base+"web/some/path?q=1&q=2", body, map[string]string{
			"X-Nimbus-Key": key, "X-Custom": "c", "Content-Type": "application/octet-stream", "Origin": "https://any.example"})
		var got struct {
			Method, Path, Body string
			Headers            map[string]string
		}
		if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
			t.Fatalf("answer %d %v %s", r.status, r.header, r.body)
		}
		raw, _ := base64.StdEncoding.DecodeString(got.Body)
		if got.Method != "POST" || got.Path != "/some/path?q=1&q=2" || !bytes.Equal(raw, body) ||
			got.Headers["X-Custom"] != "c" || got.Headers["X-Forwarded-For"] != "127.0.0.1" || got.Headers["X-Nimbus-Key"] != "" {
			t.Errorf("the function saw %+v", got)
		}
		if r.header.Get("X-Http-Fn") != "yes" || r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("X-Amzn-RequestId") == "" {
			t.Errorf("answer headers %v", r.header)
		}
	})
	t.Run("status relayed", func(t *testing.T) {
		if r := urlCall(t, "GET", base+"web/teapot", nil, auth); r.status != 418 || !strings.Contains(string(r.body), `"path": "/teapot"`) {
			t.Errorf("teapot: %d %s", r.status, r.body)
		}
		if r := urlCall(t, "GET", base+"web", nil, auth); r.status != 200 || !strings.Contains(string(r.body), `"path": "/"`) {
			t.Errorf("root: %d %s", r.status, r.body)
		}
	})
	t.Run("limits and auth", func(t *testing.T) {
		wantStatus(t, urlCall(t, "GET", base+"web", nil, nil), 403, "Forbidden")
		if r := urlCall(t, "GET", base+"web/big", nil, auth); r.status != 502 || !strings.Contains(r.message(), "6291456 bytes") {
			logs := urlCall(t, "GET", nodetest.Endpoint(n)+"/nimbus/v1/functions/web/logs", nil, nil)
			t.Errorf("answer %d %s, want 502 about 6291456 bytes; the function's log:\n%s", r.status, r.body, logs.body)
		}
		wantStatus(t, urlCall(t, "POST", base+"web", make([]byte, 6<<20+1), auth), 413, "6 MB")
		// 5 MB is fine for an HTTP function: nothing is base64-encoded
		// (the test server echoes it in base64: 6.7 MB, over the answer's
		// limit, so it is sent to a path that does not echo it).
		if r := urlCall(t, "POST", base+"web/teapot?quiet", make([]byte, 5<<20), map[string]string{"X-Nimbus-Key": key, "X-Quiet": "1"}); r.status != 418 {
			t.Errorf("5 MB body: %d %s", r.status, r.message())
		}
	})
}

// wantAPIError checks an SDK error's Lambda error code and message.
func wantAPIError(t *testing.T, err error, code, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Errorf("error %v, want %s", err, code)
		return
	}
	if ae.ErrorCode() != code || !strings.Contains(ae.ErrorMessage(), msg) {
		t.Errorf("error %s: %s, want %s containing %q", ae.ErrorCode(), ae.ErrorMessage(), code, msg)
	}
}

func TestFunctionURLConfig(t *testing.T) {
	n := nodetest.Start(t, patientNode)
	c := client(n)
	ep := nodetest.Endpoint(n)
	deploy(t, c, fixture{name: "cfg", runtime: "python3.11", handler: "app.handler", zip: nodetest.Zip(t, map[string]string{"app.py": pyURL})})
	deploy(t, c, fixture{name: "cfg-web", runtime: "http", zip: nodetest.Zip(t, map[string][]byte{
		"bootstrap": []byte("#!/bin/sh\nexec /usr/bin/python3 server.py\n"), "server.py": []byte(httpURLServer)}, "bootstrap")})
	ctx := t.Context()
	name := aws.String("cfg")

	t.Run("bad create", func(t *testing.T) {
		_, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("nope"), AuthType: types.FunctionUrlAuthTypeNone})
		wantAPIError(t, err, "ResourceNotFoundException", "Function not found")
		_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: name, AuthType: "BOGUS"})
		wantAPIError(t, err, "ValidationException", "[NONE, AWS_IAM]")
		_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: name, AuthType: types.FunctionUrlAuthTypeNone,
			Cors: &types.Cors{AllowMethods: []string{"FETCH"}}})
		wantAPIError(t, err, "InvalidParameterValueException", "cors.allowMethods[0]")
		_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: name, AuthType: types.FunctionUrlAuthTypeNone,
			Cors: &types.Cors{MaxAge: aws.Int32(90000)}})
		wantAPIError(t, err, "InvalidParameterValueException", "cors.maxAge")
		_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: name, AuthType: types.FunctionUrlAuthTypeNone,
			InvokeMode: types.InvokeModeResponseStream})
		wantAPIError(t, err, "InvalidParameterValueException", "RESPONSE_STREAM is not supported")
		_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: name, AuthType: types.FunctionUrlAuthTypeNone,
			InvokeMode: "FAST"})
		wantAPIError(t, err, "ValidationException", "[BUFFERED, RESPONSE_STREAM]")
		_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: name, AuthType: types.FunctionUrlAuthTypeNone,
			Qualifier: aws.String("prod")})
		wantAPIError(t, err, "ResourceNotFoundException", "function:cfg:prod")
		url := ep + "/2021-10-31/functions/cfg/url"
		for _, tt := range []struct{ body, typ, msg string }{
			{``, "InvalidRequestContentException", "empty"},
			{`{}`, "ValidationException", "authType"},
			{`{"AuthType":"NONE","NimbusKey":"0123456789abcdef"}`, "InvalidParameterValueException", "NimbusKey applies only"},
			{`{"AuthType":"NIMBUS_KEY","NimbusKey":"short"}`, "InvalidParameterValueException", "16 to 128"},
			{`{"AuthType":"NONE","Cors":{"AllowOrigins":["https://a.example/path"]}}`, "InvalidParameterValueException", "is not an origin"},
		} {
			status, typ, msg := rawCall(t, "POST", url, tt.body)
			if status != 400 || typ != tt.typ || !strings.Contains(msg, tt.msg) {
				t.Errorf("POST %s: %d %s %s, want 400 %s containing %q", tt.body, status, typ, msg, tt.typ, tt.msg)
			}
		}
		_, err = c.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: name})
		wantAPIError(t, err, "ResourceNotFoundException", "does not exist")
	})
	t.Run("lifecycle", func(t *testing.T) {
		created, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: name, AuthType: types.FunctionUrlAuthTypeNone,
			Cors: &types.Cors{AllowOrigins: []string{"https://a.example"}, MaxAge: aws.Int32(60)}})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(created.FunctionUrl) != ep+"/fn/cfg/" || aws.ToString(created.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:cfg" ||
			created.AuthType != types.FunctionUrlAuthTypeNone || created.InvokeMode != types.InvokeModeBuffered ||
			aws.ToString(created.CreationTime) == "" || created.Cors == nil || aws.ToInt32(created.Cors.MaxAge) != 60 {
			t.Errorf("created %+v", created)
		}
		_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: name, AuthType: types.FunctionUrlAuthTypeNone})
		wantAPIError(t, err, "ResourceConflictException", "FunctionUrlConfig exists")
		if r := urlCall(t, "GET", ep+"/fn/cfg/x", nil, nil); r.status != 201 {
			t.Errorf("URL answered %d %s", r.status, r.body)
		}

		upd, err := c.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: name, AuthType: "NIMBUS_KEY",
			Cors: &types.Cors{AllowOrigins: []string{"*"}, AllowMethods: []string{"GET"}}})
		if err != nil {
			t.Fatal(err)
		}
		if upd.AuthType != "NIMBUS_KEY" || aws.ToString(upd.CreationTime) != aws.ToString(created.CreationTime) ||
			aws.ToString(upd.LastModifiedTime) == "" || upd.Cors.AllowMethods[0] != "GET" || aws.ToInt32(upd.Cors.MaxAge) != 0 {
			t.Errorf("updated %+v", upd)
		}
		wantStatus(t, urlCall(t, "GET", ep+"/fn/cfg/x", nil, nil), 403, "Forbidden")
		key := nimbusKey(t, ep, "cfg")
		if r := urlCall(t, "GET", ep+"/fn/cfg/x", nil, map[string]string{"X-Nimbus-Key": key}); r.status != 201 {
			t.Errorf("with the key: %d %s", r.status, r.body)
		}
		// An update that does not touch the auth type keeps the key.
		if _, err := c.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: name, InvokeMode: types.InvokeModeBuffered}); err != nil {
			t.Fatal(err)
		}
		if again := nimbusKey(t, ep, "cfg"); again != key {
			t.Error("the key changed on an unrelated update")
		}
		_, err = c.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: name, InvokeMode: types.InvokeModeResponseStream})
		wantAPIError(t, err, "InvalidParameterValueException", "RESPONSE_STREAM")

		got, err := c.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("arn:aws:lambda:us-east-1:000000000000:function:cfg")})
		if err != nil || got.AuthType != "NIMBUS_KEY" || aws.ToString(got.FunctionUrl) != ep+"/fn/cfg/" {
			t.Errorf("get %+v %v", got, err)
		}
		list, err := c.ListFunctionUrlConfigs(ctx, &lambda.ListFunctionUrlConfigsInput{FunctionName: name, MaxItems: aws.Int32(10)})
		if err != nil || len(list.FunctionUrlConfigs) != 1 || aws.ToString(list.FunctionUrlConfigs[0].FunctionUrl) != ep+"/fn/cfg/" {
			t.Errorf("list %+v %v", list, err)
		}
		_, err = c.ListFunctionUrlConfigs(ctx, &lambda.ListFunctionUrlConfigsInput{FunctionName: name, MaxItems: aws.Int32(51)})
		wantAPIError(t, err, "ValidationException", "maxItems")

		if _, err := c.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: name, AuthType: types.FunctionUrlAuthTypeNone,
			Cors: &types.Cors{}}); err != nil {
			t.Fatal(err)
		}
		got, err = c.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: name})
		if err != nil || got.AuthType != types.FunctionUrlAuthTypeNone || got.Cors != nil {
			t.Errorf("after clearing auth and CORS: %+v %v", got, err)
		}

		if _, err := c.DeleteFunctionUrlConfig(ctx, &lambda.DeleteFunctionUrlConfigInput{FunctionName: name}); err != nil {
			t.Fatal(err)
		}
		_, err = c.DeleteFunctionUrlConfig(ctx, &lambda.DeleteFunctionUrlConfigInput{FunctionName: name})
		wantAPIError(t, err, "ResourceNotFoundException", "does not exist")
		_, err = c.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: name, AuthType: types.FunctionUrlAuthTypeNone})
		wantAPIError(t, err, "ResourceNotFoundException", "does not exist")
		wantStatus(t, urlCall(t, "GET", ep+"/fn/cfg/x", nil, nil), 404, "has no function URL")
		list, err = c.ListFunctionUrlConfigs(ctx, &lambda.ListFunctionUrlConfigsInput{FunctionName: name})
		if err != nil || len(list.FunctionUrlConfigs) != 0 {
			t.Errorf("list after delete %+v %v", list, err)
		}
	})
	t.Run("http function streams", func(t *testing.T) {
		out, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("cfg-web"),
			AuthType: types.FunctionUrlAuthTypeNone, InvokeMode: types.InvokeModeResponseStream})
		if err != nil || out.InvokeMode != types.InvokeModeResponseStream {
			t.Fatalf("create %+v %v", out, err)
		}
		if r := urlCall(t, "GET", ep+"/fn/cfg-web/teapot", nil, nil); r.status != 418 {
			t.Errorf("URL answered %d %s", r.status, r.body)
		}
		if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("cfg-web")}); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, urlCall(t, "GET", ep+"/fn/cfg-web/teapot", nil, nil), 404, "Function not found")
	})
}
