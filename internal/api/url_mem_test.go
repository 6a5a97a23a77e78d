package api_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// fakeInvoker answers invokes with a fixed result.
type fakeInvoker struct {
	res nimbus.Result
	err error
}

func (f fakeInvoker) Invoke(context.Context, *nimbus.Function, nimbus.Invocation) (nimbus.Result, error) {
	return f.res, f.err
}

func (fakeInvoker) Warm(string) int { return 0 }

// newURLServer is an API server over an in-memory store with two functions
// that have public URLs: "py" (Runtime API) and "web" (runtime http).
func newURLServer(t testing.TB, inv api.Invoker) http.Handler {
	t.Helper()
	reg, _ := memRegistry(t, t.TempDir(), codepkg.DefaultLimits(), "python3.11", "http")
	h := api.New(api.Config{Registry: reg, Invoker: inv})
	zip := nodetest.Zip(t, map[string]string{"app.py": pyEcho, "bootstrap": "#!/bin/sh\n"})
	for name, rt := range map[string]string{"py": "python3.11", "web": "http"} {
		in := registry.FunctionInput{Name: name, Runtime: &rt}
		if rt == "python3.11" {
			handler := "app.handler"
			in.Handler = &handler
		}
		if _, err := reg.Create(t.Context(), in, zip); err != nil {
			t.Fatal(err)
		}
		if code, body := memCall(t, h, "POST", "/2021-10-31/functions/"+name+"/url", `{"AuthType":"NONE"}`); code != 201 {
			t.Fatalf("create URL of %s: %d %s", name, code, body)
		}
	}
	return h
}

func memCall(t testing.TB, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body)))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestFunctionURLFaults(t *testing.T) {
	tests := []struct {
		name, path string
		inv        fakeInvoker
		status     int
		body       string
	}{
		{"platform error", "/fn/py", fakeInvoker{err: errors.New("disk on fire")}, 500, "Internal Server Error (id "},
		{"throttled", "/fn/web", fakeInvoker{err: nimbus.Errorf(nimbus.ErrThrottled, "busy")}, 429, "Too Many Requests"},
		{"no answer from an HTTP function", "/fn/web/x", fakeInvoker{}, 502, `{"Message":"Internal Server Error"}`},
		{"HTTP function timed out", "/fn/web/x", fakeInvoker{res: nimbus.Result{Err: &nimbus.FunctionError{Type: "Sandbox.Timedout"}}}, 502, "Internal Server Error"},
		{"204 drops the body", "/fn/py", fakeInvoker{res: nimbus.Result{Payload: []byte(`{"statusCode":204,"body":"ignored"}`)}}, 204, ""},
		{"HTTP function answer", "/fn/web/x", fakeInvoker{res: nimbus.Result{HTTP: &nimbus.HTTPResponse{Status: 207,
			Header: http.Header{"Connection": {"close"}, "X-A": {"1"}}, Body: []byte("multi")}}}, 207, "multi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newURLServer(t, tt.inv)
			code, body := memCall(t, h, "GET", tt.path, "")
			if code != tt.status || !strings.Contains(body, tt.body) || (tt.body == "" && body != "") {
				t.Errorf("GET %s = %d %q, want %d %q", tt.path, code, body, tt.status, tt.body)
			}
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		h := newURLServer(t, fakeInvoker{res: nimbus.Result{Payload: []byte(`{"statusCode":200,"body":"abc"}`)}})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), "HEAD", "/fn/py", nil))
		if rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "3" {
			t.Errorf("HEAD = %d %v %q", rec.Code, rec.Header(), rec.Body)
		}
	})
}
