package api_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

// BenchmarkInvokeHandler is the API's own cost per invoke: a request through
// the handler to an invoker that answers at once.
func BenchmarkInvokeHandler(b *testing.B) {
	h := newMemServer(b, b.TempDir())
	body := `{"FunctionName":"f","Runtime":"python3.11","Handler":"app.handler","Code":{"ZipFile":"` +
		base64.StdEncoding.EncodeToString(pyZip(b)) + `"}}`
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/2015-03-31/functions", bytes.NewBufferString(body)))
	if rec.Code != http.StatusCreated {
		b.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	payload := []byte(`{"hello":"world"}`)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/2015-03-31/functions/f/invocations", bytes.NewReader(payload)))
		if rec.Code != http.StatusOK {
			b.Fatalf("invoke: %d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkURLHandler is the API's own cost per function URL request to an
// HTTP function: the route, the URL's trigger and its config, the headers
// both ways, to an invoker that answers at once.
func BenchmarkURLHandler(b *testing.B) {
	h := newURLServer(b, fakeInvoker{res: nimbus.Result{HTTP: &nimbus.HTTPResponse{Status: 200,
		Header: http.Header{"Content-Type": {"text/plain"}, "Date": {"Mon, 07 Dec 2026 01:00:00 GMT"}}, Body: []byte("hello")}}})
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/fn/web/x?a=1", nil)
		r.Header.Set("User-Agent", "bench")
		r.Header.Set("Accept", "*/*")
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK || rec.Body.String() != "hello" {
			b.Fatalf("URL: %d %s", rec.Code, rec.Body)
		}
	}
}
