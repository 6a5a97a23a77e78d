package api_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"
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
