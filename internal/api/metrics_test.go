package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/audit"
	auditmem "github.com/nimbus-serverless/nimbus/internal/audit/mem"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/metrics/metricstest"
)

// metricsHandler stands for the node's metrics.
var metricsHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	_, _ = io.WriteString(w, "# scrape\nnimbus_up 1\n")
})

// metricsServer is an API server with authentication on (the audit tests'
// keys), a failed-authentication limit of burst failures, and metrics.
func metricsServer(t *testing.T, log audit.Log, burst int) *httptest.Server {
	t.Helper()
	v := &auth.Verifier{Region: "us-east-1", Service: "lambda", MaxBody: 1 << 20, Secrets: func(id string) (string, auth.Principal, bool) {
		p, ok := auditKeys[id]
		return secretOf(id), p, ok
	}}
	srv := httptest.NewServer(api.New(api.Config{Verifier: v, Limiter: auth.NewLimiter(burst, time.Hour), Audit: log, Metrics: metricsHandler}))
	t.Cleanup(srv.Close)
	return srv
}

// lambdaError reads Lambda's error shape, {"Type": "User", "message": ...}
// with the error type in X-Amzn-ErrorType, and returns the type.
func lambdaError(t *testing.T, h http.Header, body string) string {
	t.Helper()
	var e struct {
		Type    string `json:"Type"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Message == "" || e.Type != "User" {
		t.Fatalf("not Lambda's error shape: %q", body)
	}
	typ, _, _ := strings.Cut(h.Get("X-Amzn-ErrorType"), ":")
	return typ
}

// TestMetricsAccess: GET /metrics is for admin keys, signed or with HTTP
// Basic credentials (id and secret); everyone else gets Lambda's 403.
// Refusals are in the audit trail (the Basic user as the key id, never
// the password), passing scrapes are not.
func TestMetricsAccess(t *testing.T) {
	log := auditmem.New()
	srv := metricsServer(t, log, 100)
	u := srv.URL + "/metrics"
	for _, tt := range []struct {
		name           string
		do             func() (int, http.Header, string)
		status         int
		errType        string
		recordedKeyID  string
		recordedStatus int
	}{
		{"unsigned", func() (int, http.Header, string) { return metricstest.Get(t, u, "", "") }, 403, "MissingAuthenticationTokenException", "", 403},
		{"signed by an admin", func() (int, http.Header, string) {
			return signedGet(t, srv, "AKROOT")
		}, 200, "", "", 0},
		{"signed by a developer", func() (int, http.Header, string) {
			return signedGet(t, srv, "AKDEV")
		}, 403, "AccessDeniedException", "AKDEV", 403},
		{"basic, an admin key", func() (int, http.Header, string) { return metricstest.Get(t, u, "AKROOT", secretOf("AKROOT")) }, 200, "", "", 0},
		{"basic, a developer key", func() (int, http.Header, string) { return metricstest.Get(t, u, "AKDEV", secretOf("AKDEV")) }, 403, "AccessDeniedException", "AKDEV", 403},
		{"basic, a wrong secret", func() (int, http.Header, string) { return metricstest.Get(t, u, "AKROOT", "guess") }, 403, "UnrecognizedClientException", "AKROOT", 403},
		{"basic, an unknown key", func() (int, http.Header, string) { return metricstest.Get(t, u, "AKNOBODY", "guess") }, 403, "UnrecognizedClientException", "AKNOBODY", 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, _, _ := log.List(context.Background(), audit.Filter{Limit: 1000})
			code, h, body := tt.do()
			if code != tt.status {
				t.Fatalf("status %d %s, want %d", code, body, tt.status)
			}
			if tt.errType == "" && body != "# scrape\nnimbus_up 1\n" {
				t.Errorf("body %q, want the metrics", body)
			}
			if tt.errType != "" {
				if got := lambdaError(t, h, body); got != tt.errType {
					t.Errorf("error type %s, want %s", got, tt.errType)
				}
				if strings.Contains(body, "guess") {
					t.Errorf("the answer shows the password: %s", body)
				}
			}
			evs, _, _ := log.List(context.Background(), audit.Filter{Limit: 1000})
			switch {
			case tt.recordedStatus == 0 && len(evs) != len(before):
				t.Errorf("a passing scrape was recorded: %+v", evs[0])
			case tt.recordedStatus != 0 && len(evs) != len(before)+1:
				t.Errorf("the refusal was not recorded")
			case tt.recordedStatus != 0:
				e := evs[0]
				if e.AccessKeyID != tt.recordedKeyID || e.Status != tt.recordedStatus || e.Route != "GET /metrics" || e.ErrorType != tt.errType {
					t.Errorf("recorded %+v, want key id %q, status %d, %s", e, tt.recordedKeyID, tt.recordedStatus, tt.errType)
				}
			}
		})
	}
}

// TestMetricsBasicFailuresAreLimited: wrong Basic secrets count against
// the address like bad signatures; past the burst even the right secret
// is refused for a while (429).
func TestMetricsBasicFailuresAreLimited(t *testing.T) {
	srv := metricsServer(t, nil, 3)
	u := srv.URL + "/metrics"
	for i := range 3 {
		if code, _, body := metricstest.Get(t, u, "AKROOT", "guess"); code != 403 {
			t.Fatalf("failure %d: %d %s, want 403", i+1, code, body)
		}
	}
	code, h, body := metricstest.Get(t, u, "AKROOT", secretOf("AKROOT"))
	if code != http.StatusTooManyRequests || lambdaError(t, h, body) != "TooManyRequestsException" {
		t.Errorf("after 3 failures: %d %s, want 429 TooManyRequestsException", code, body)
	}
}

// TestMetricsOpenOrAbsent: with authentication off /metrics is open; a
// server without metrics answers 404 UnknownOperationException.
func TestMetricsOpenOrAbsent(t *testing.T) {
	open := httptest.NewServer(api.New(api.Config{Metrics: metricsHandler}))
	defer open.Close()
	if code, _, body := metricstest.Get(t, open.URL+"/metrics", "", ""); code != 200 || !strings.Contains(body, "nimbus_up") {
		t.Errorf("open: %d %s, want the metrics", code, body)
	}
	none := httptest.NewServer(api.New(api.Config{}))
	defer none.Close()
	code, h, body := metricstest.Get(t, none.URL+"/metrics", "", "")
	if code != 404 || lambdaError(t, h, body) != "UnknownOperationException" {
		t.Errorf("no metrics: %d %s, want 404 UnknownOperationException", code, body)
	}
}

// signedGet sends GET /metrics signed by key id.
func signedGet(t *testing.T, srv *httptest.Server, id string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secretOf(id)}
	if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, emptySHA256, "lambda", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// emptySHA256 is the SHA-256 of an empty body, hex.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
