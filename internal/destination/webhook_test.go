package destination

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

const secret = "s3cr3t-s3cr3t"

func testRecord() *Record {
	return &Record{
		Timestamp: time.Date(2026, 3, 1, 12, 0, 0, 568e6, time.UTC),
		RequestContext: RequestContext{
			RequestID: "req-1", FunctionARN: "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST",
			Condition: ConditionRetriesExhausted, ApproximateInvokeCount: 3,
		},
		RequestPayload:  json.RawMessage(`{"order":42}`),
		ResponseContext: &ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"},
		ResponsePayload: json.RawMessage(`{"errorMessage":"boom","errorType":"Error"}`),
	}
}

// hook serves the handlers in turn (the last one from then on) and counts
// requests.
func hook(t *testing.T, handlers ...http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		handlers[min(i, len(handlers)-1)](w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code)+" from the test server")
	}
}

func newSender(srv *httptest.Server, attempts int) *Sender {
	return New(Config{HTTP: srv.Client(), Attempts: attempts, Backoff: time.Millisecond})
}

func TestWebhookSigned(t *testing.T) {
	got := make(chan error, 1)
	srv, _ := hook(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := Verify(secret, r.Header, body, time.Now(), 5*time.Minute)
		if err == nil && r.Header.Get(HeaderDelivery) != "req-1:RetriesExhausted" {
			err = errors.New("delivery id " + r.Header.Get(HeaderDelivery))
		}
		if err == nil && r.Header.Get("Content-Type") != "application/json" {
			err = errors.New("content type " + r.Header.Get("Content-Type"))
		}
		var rec Record
		if err == nil {
			err = json.Unmarshal(body, &rec)
		}
		if err == nil && (rec.Version != "1.0" || rec.RequestContext.ApproximateInvokeCount != 3 || string(rec.RequestPayload) != `{"order":42}`) {
			err = errors.New("record " + string(body))
		}
		got <- err
	})
	if err := newSender(srv, 3).Send(t.Context(), srv.URL+"/hook", secret, testRecord()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := <-got; err != nil {
		t.Errorf("receiver: %v", err)
	}
}

func TestWebhookUnsigned(t *testing.T) {
	var sig atomic.Value
	srv, _ := hook(t, func(w http.ResponseWriter, r *http.Request) { sig.Store(r.Header.Get(HeaderSignature)) })
	if err := newSender(srv, 1).Send(t.Context(), srv.URL, "", testRecord()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if s := sig.Load(); s != "" {
		t.Errorf("signature without a secret = %q, want none", s)
	}
}

func TestWebhookRetriesThenSucceeds(t *testing.T) {
	srv, n := hook(t, status(500), status(503), status(429), status(204))
	if err := newSender(srv, 5).Send(t.Context(), srv.URL, secret, testRecord()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := n.Load(); got != 4 {
		t.Errorf("attempts = %d, want 4", got)
	}
}

func TestWebhookGivesUp(t *testing.T) {
	srv, n := hook(t, status(502))
	err := newSender(srv, 3).Send(t.Context(), srv.URL, secret, testRecord())
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") || !strings.Contains(err.Error(), "502") {
		t.Errorf("Send to a failing hook: %v; want gave up after 3 attempts, 502", err)
	}
	if got := n.Load(); got != 3 {
		t.Errorf("attempts = %d, want 3", got)
	}
}

func TestWebhookDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String() + "/hook"
	l.Close() // nothing listens there now
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	s := New(Config{HTTP: &http.Client{Transport: tr}, Attempts: 4, Backoff: time.Millisecond})
	err = s.Send(t.Context(), url, secret, testRecord())
	if err == nil || !strings.Contains(err.Error(), "gave up after 4 attempts") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Send to a closed port: %v; want gave up after 4 attempts, connection refused", err)
	}
}

func TestWebhookNotRetried(t *testing.T) {
	for _, code := range []int{400, 401, 404, 410, 302} {
		srv, n := hook(t, func(w http.ResponseWriter, r *http.Request) {
			if code == 302 {
				w.Header().Set("Location", "/elsewhere")
			}
			status(code)(w, r)
		})
		s := New(Config{Attempts: 5, Backoff: time.Millisecond}) // the default client: no redirects
		err := s.Send(t.Context(), srv.URL, secret, testRecord())
		if err == nil || !strings.Contains(err.Error(), http.StatusText(code)) || !strings.Contains(err.Error(), "not retried") {
			t.Errorf("Send to a hook answering %d: %v; want the status, not retried", code, err)
		}
		if got := n.Load(); got != 1 {
			t.Errorf("%d: attempts = %d, want 1", code, got)
		}
		s.cfg.HTTP.CloseIdleConnections()
	}
}

func TestWebhookContextBounds(t *testing.T) {
	tried := make(chan struct{}, 1)
	srv, _ := hook(t, func(w http.ResponseWriter, r *http.Request) {
		status(503)(w, r)
		tried <- struct{}{}
	})
	ctx, cancel := context.WithCancelCause(t.Context())
	s := New(Config{HTTP: srv.Client(), Attempts: 100, Backoff: time.Hour})
	done := make(chan error, 1)
	go func() { done <- s.Send(ctx, srv.URL, secret, testRecord()) }()
	<-tried
	cancel(errors.New("node shutting down"))
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "stopped after 1 attempt ") || !strings.Contains(err.Error(), "node shutting down") {
		t.Errorf("Send with a cancelled context: %v; want stopped after 1 attempt with the cause", err)
	}
}

func TestWebhookRedactsCredentials(t *testing.T) {
	srv, _ := hook(t, status(400))
	url := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1)
	err := newSender(srv, 1).Send(t.Context(), url, secret, testRecord())
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v shows the URL's password", err)
	}
}

func TestBackoff(t *testing.T) {
	s := New(Config{Backoff: time.Second})
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 30: maxBackoff} {
		got := s.backoff(attempt, 0)
		if got < want/2 || got > want {
			t.Errorf("backoff(%d) = %s, want in [%s, %s]", attempt, got, want/2, want)
		}
	}
	if got := s.backoff(1, 10*time.Second); got != 10*time.Second {
		t.Errorf("backoff with Retry-After 10 s = %s", got)
	}
	if got := s.backoff(1, time.Hour); got != maxBackoff {
		t.Errorf("backoff with Retry-After 1 h = %s, want the cap %s", got, maxBackoff)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"x":1}`)
	now := time.Unix(1_700_000_000, 0)
	good := Sign(secret, now.Unix(), body)
	hdr := func(ts, sig string) http.Header {
		h := http.Header{}
		if ts != "" {
			h.Set(HeaderTimestamp, ts)
		}
		if sig != "" {
			h.Set(HeaderSignature, sig)
		}
		return h
	}
	const ts = "1700000000"
	tests := []struct {
		name   string
		header http.Header
		body   string
		at     time.Time
		want   string // "" = valid
	}{
		{"good", hdr(ts, good), `{"x":1}`, now, ""},
		{"rotated secrets", hdr(ts, "v1=00ff, "+good), `{"x":1}`, now, ""},
		{"within tolerance", hdr(ts, good), `{"x":1}`, now.Add(4 * time.Minute), ""},
		{"tampered body", hdr(ts, good), `{"x":2}`, now, "no v1 signature"},
		{"wrong secret", hdr(ts, Sign("other", now.Unix(), body)), `{"x":1}`, now, "no v1 signature"},
		{"timestamp changed", hdr("1700000001", good), `{"x":1}`, now, "no v1 signature"},
		{"stale", hdr(ts, good), `{"x":1}`, now.Add(10 * time.Minute), "tolerated"},
		{"no timestamp", hdr("", good), `{"x":1}`, now, "no X-Nimbus-Timestamp"},
		{"bad timestamp", hdr("yesterday", good), `{"x":1}`, now, "not Unix seconds"},
		{"no signature", hdr(ts, ""), `{"x":1}`, now, "no X-Nimbus-Signature"},
		{"other scheme", hdr(ts, strings.Replace(good, "v1=", "v0=", 1)), `{"x":1}`, now, "no v1 signature"},
	}
	for _, tt := range tests {
		err := Verify(secret, tt.header, []byte(tt.body), tt.at, 5*time.Minute)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Verify = %v, want nil", tt.name, err)
		case tt.want != "" && (!errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: Verify = %v, want ErrSignature mentioning %q", tt.name, err, tt.want)
		}
	}
}

func TestSendFunction(t *testing.T) {
	var gotName string
	var gotBody []byte
	s := New(Config{InvokeAsync: func(ctx context.Context, fn string, payload []byte) error {
		gotName, gotBody = fn, payload
		if fn == "gone" {
			return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: gone")
		}
		return nil
	}})
	dest := "arn:aws:lambda:us-east-1:123456789012:function:next"
	if err := s.Send(t.Context(), dest, "", testRecord()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	var rec Record
	if err := json.Unmarshal(gotBody, &rec); gotName != "next" || err != nil || rec.RequestContext.RequestID != "req-1" {
		t.Errorf("InvokeAsync(%q, %s), decode: %v", gotName, gotBody, err)
	}
	if err := s.Send(t.Context(), "gone", "", testRecord()); !errors.Is(err, nimbus.ErrNotFound) || !strings.Contains(err.Error(), "gone") {
		t.Errorf("Send to a deleted function: %v, want nimbus.ErrNotFound", err)
	}
	if err := New(Config{}).Send(t.Context(), "next", "", testRecord()); err == nil || !strings.Contains(err.Error(), "not available") {
		t.Errorf("Send without InvokeAsync: %v", err)
	}
	if err := s.Send(t.Context(), "arn:aws:sqs:us-east-1:1:q", "", testRecord()); !errors.Is(err, nimbus.ErrInvalid) {
		t.Errorf("Send to an invalid destination: %v, want nimbus.ErrInvalid", err)
	}
}
