package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/seal"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// newMemServer is an API server over an in-memory store, for fuzzing.
func newMemServer(tb testing.TB, dir string) http.Handler {
	tb.Helper()
	lim := codepkg.DefaultLimits()
	lim.MaxZipped = 1 << 20
	reg, _ := memRegistry(tb, dir, lim, "python3.11", "provided.al2023")
	return api.New(api.Config{Registry: reg, Invoker: echoInvoker{}, MaxCodeBody: 2 << 20})
}

// memRegistry opens a registry over an in-memory store, with its code
// cache in dir, offering runtimes; it returns the functions bucket too.
func memRegistry(tb testing.TB, dir string, lim codepkg.Limits, runtimes ...string) (*registry.Registry, store.KV) {
	tb.Helper()
	st := mem.New()
	kv, _ := st.KV(tb.Context(), "functions")
	versions, _ := st.KV(tb.Context(), "versions")
	cache, err := codepkg.NewCache(dir, st.Blobs(), lim, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cache.Close(context.Background()) })
	return openRegistry(tb, registry.Config{KV: kv, Versions: versions, Blobs: st.Blobs(), Code: cache, Runtimes: runtimes, Limits: lim}), kv
}

// openRegistry opens a registry and closes it when the test ends.
func openRegistry(tb testing.TB, cfg registry.Config) *registry.Registry {
	tb.Helper()
	if cfg.Key == nil {
		key, err := seal.Parse(seal.Generate())
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Key = key
	}
	reg, err := registry.Open(tb.Context(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := reg.Close(ctx); err != nil {
			tb.Error(err)
		}
	})
	return reg
}

// echoInvoker answers every invoke with its payload.
type echoInvoker struct{}

func (echoInvoker) Invoke(_ context.Context, _ *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error) {
	return nimbus.Result{Payload: req.Payload}, nil
}

func (echoInvoker) Warm(string) int { return 0 }

// FuzzFunctionRequests sends arbitrary bodies to the API's parsers: every
// answer is a success or a Lambda-shaped client error, never a 5xx or a
// crash.
func FuzzFunctionRequests(f *testing.F) {
	zip := base64.StdEncoding.EncodeToString(pyZip(f))
	f.Add("POST", "/2015-03-31/functions", `{"FunctionName":"f","Runtime":"python3.11","Handler":"app.handler","Code":{"ZipFile":"`+zip+`"}}`)
	f.Add("POST", "/2015-03-31/functions", `{"FunctionName":"f","MemorySize":"x"}`)
	f.Add("PUT", "/2015-03-31/functions/f/configuration", `{"MemorySize":256,"Environment":{"Variables":{"A1":"b"}}}`)
	f.Add("PUT", "/2015-03-31/functions/f/code", `{"ZipFile":"`+zip+`","RevisionId":"x"}`)
	f.Add("PUT", "/2017-10-31/functions/f/concurrency", `{"ReservedConcurrentExecutions":-1}`)
	f.Add("GET", "/2015-03-31/functions/?MaxItems=0&Marker=%00", ``)
	f.Add("POST", "/2015-03-31/functions/f/invocations", `{"a":1}`)
	f.Add("PUT", "/2015-03-31/functions/f/configuration", `{"EphemeralStorage":{"Size":1024},"TracingConfig":{"Mode":"Active"},`+
		`"LoggingConfig":{"LogFormat":"JSON","ApplicationLogLevel":"DEBUG"},"DeadLetterConfig":{"TargetArn":"nats:x"},"VpcConfig":{"SubnetIds":[]}}`)
	f.Add("GET", "/2019-09-30/functions/f/provisioned-concurrency?List=ALL&MaxItems=5", ``)
	f.Add("PUT", "/2019-09-30/functions/f/provisioned-concurrency?Qualifier=$LATEST", `{"ProvisionedConcurrentExecutions":2}`)
	f.Add("POST", "/2017-03-31/tags/arn:aws:lambda:us-east-1:000000000000:function:f", `{"Tags":{"team":"a","aws:x":""}}`)
	f.Add("DELETE", "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af?tagKeys=team", ``)
	f.Add("POST", "/2015-03-31/functions/f/policy", `{"StatementId":"s","Action":"lambda:InvokeFunction","Principal":"s3.amazonaws.com","SourceArn":"arn:aws:s3:::b"}`)
	f.Add("PUT", "/2024-08-31/functions/f/recursion-config", `{"RecursiveLoop":"Allow"}`)
	f.Add("PUT", "/2021-07-20/functions/f/runtime-management-config", `{"UpdateRuntimeOn":"Manual","RuntimeVersionArn":"x"}`)
	h := newMemServer(f, f.TempDir())
	f.Fuzz(func(t *testing.T, method, path, body string) {
		switch method {
		case "GET", "PUT", "POST", "DELETE":
		default:
			return
		}
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") {
			return
		}
		req, err := http.NewRequest(method, "http://nimbus"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: status %d: %s", method, path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var eb map[string]any
			if json.Unmarshal(rec.Body.Bytes(), &eb) != nil || eb["message"] == nil || rec.Header().Get("X-Amzn-ErrorType") == "" {
				t.Fatalf("%s %s: error %d is not Lambda-shaped: %s", method, path, rec.Code, rec.Body)
			}
		}
	})
}
