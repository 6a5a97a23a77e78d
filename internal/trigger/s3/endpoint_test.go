package s3_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	s3trigger "github.com/nimbus-serverless/nimbus/internal/trigger/s3"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

const putRecord = `{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-05-04T10:20:30Z",` +
	`"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b","arn":"arn:aws:s3:::b"},"object":{"key":"in/a.jpg","size":1}}}`

// newEndpoint serves the Nimbus API with a Receiver holding fn's triggers
// "open", "locked" (secret "0123456789") and "failing".
func newEndpoint(t *testing.T) (*httptest.Server, *triggertest.Sink) {
	t.Helper()
	recv, sink := s3trigger.NewReceiver(nil), &triggertest.Sink{}
	register := func(name, config string, sink trigger.Sink) {
		cfg, err := s3trigger.ParseConfig([]byte(config))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(recv.Register("fn", name, cfg, sink, trigger.Options{}))
	}
	register("open", `{"bucket":"b"}`, sink)
	register("locked", `{"bucket":"b","secret":"0123456789"}`, sink)
	register("failing", `{"bucket":"b"}`, &triggertest.Sink{Fail: func([]trigger.Message) error { return triggertest.ErrRefused }})
	// API authentication on, with no key at all: the S3 route must not
	// depend on it (object stores do not sign their notifications).
	noKeys := &auth.Verifier{Region: "us-east-1", Service: "lambda", Secrets: func(string) (string, auth.Principal, bool) { return "", auth.Principal{}, false }}
	srv := httptest.NewServer(api.New(api.Config{S3: recv, Verifier: noKeys}))
	t.Cleanup(srv.Close)
	return srv, sink
}

// errorTypes are the Lambda error types of the endpoint's statuses.
var errorTypes = map[int]string{
	400: "InvalidRequestContentException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
	413: "RequestTooLargeException", 500: "ServiceException",
}

func TestEndpoint(t *testing.T) {
	srv, sink := newEndpoint(t)
	good := `{"Records":[` + putRecord + `]}`
	tests := []struct {
		name, path, body string
		header           map[string]string
		status           int
		want             string // in the body
	}{
		{"delivered", "/fn/open", good, nil, 200, `{"records":1,"delivered":1}`},
		{"test event", "/fn/open", `{"Service":"Amazon S3","Event":"s3:TestEvent"}`, nil, 200, `"test":true`},
		{"unknown trigger", "/fn/nope", good, nil, 404, `No enabled object-storage trigger \"nope\" for function \"fn\"`},
		{"unknown function", "/other/open", good, nil, 404, `for function \"other\"`},
		{"malformed JSON", "/fn/open", `{"Records":[`, nil, 400, "S3 event notification: unexpected end of JSON input"},
		{"not a notification", "/fn/open", `{"hello":1}`, nil, 400, "no Records field"},
		{"empty body", "/fn/open", ``, nil, 400, "The request body is empty"},
		{"too large", "/fn/open", `{"Records":[],"pad":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, "smaller than 1048576 bytes"},
		{"no secret", "/fn/locked", good, nil, 403, "must carry the trigger's secret"},
		{"wrong secret", "/fn/locked?secret=nope", good, nil, 403, "must carry the trigger's secret"},
		{"secret in query", "/fn/locked?secret=0123456789", good, nil, 200, `"delivered":1`},
		{"bearer secret", "/fn/locked", good, map[string]string{"Authorization": "Bearer 0123456789"}, 200, `"delivered":1`},
		{"header secret", "/fn/locked", good, map[string]string{"X-Nimbus-Secret": "0123456789"}, 200, `"delivered":1`},
		{"delivery fails", "/fn/failing", good, nil, 500, "Internal error (id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", srv.URL+"/nimbus/v1/s3-events"+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !bytes.Contains(body, []byte(tt.want)) {
				t.Errorf("status %d body %s, want %d with %s", resp.StatusCode, body, tt.status, tt.want)
			}
			if resp.StatusCode != 200 && !json.Valid(body) {
				t.Errorf("error body %s is not JSON", body)
			}
			if want := errorTypes[resp.StatusCode]; resp.Header.Get("X-Amzn-ErrorType") != want {
				t.Errorf("X-Amzn-ErrorType = %q, want %q", resp.Header.Get("X-Amzn-ErrorType"), want)
			}
		})
	}
	if n := len(sink.Messages()); n != 4 {
		t.Errorf("%d messages delivered, want 4", n)
	}
}

func TestEndpointWithoutReceiver(t *testing.T) {
	srv := httptest.NewServer(api.New(api.Config{}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/nimbus/v1/s3-events/fn/tr", "application/json", strings.NewReader(`{"Records":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 404 || !strings.Contains(string(body), "not enabled on this node") {
		t.Errorf("status %d body %s, want 404", resp.StatusCode, body)
	}
}
