package runtimeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	nextPath = "/2018-06-01/runtime/invocation/next"
	initPath = "/2018-06-01/runtime/init/error"
)

func responsePath(id string) string { return "/2018-06-01/runtime/invocation/" + id + "/response" }
func errorPath(id string) string    { return "/2018-06-01/runtime/invocation/" + id + "/error" }

func newServer(t *testing.T) *Server {
	t.Helper()
	s, err := Listen(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// runtime is a raw HTTP client playing the function's runtime.
type runtime struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newRuntime(t *testing.T, s *Server) *runtime {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &runtime{t: t, base: "http://" + s.Addr(), hc: &http.Client{Transport: tr}}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request and reads the whole answer; it fails the test on a
// transport error.
func (rt *runtime) do(method, path string, body io.Reader, header map[string]string) reply {
	rt.t.Helper()
	r, err := rt.try(rt.t.Context(), method, path, body, header)
	if err != nil {
		rt.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (rt *runtime) try(ctx context.Context, method, path string, body io.Reader, header map[string]string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, rt.base+path, body)
	if err != nil {
		return reply{}, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := rt.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{resp.StatusCode, resp.Header, b}, nil
}

// next polls /invocation/next and returns the invocation's request id.
func (rt *runtime) next() reply {
	rt.t.Helper()
	r := rt.do(http.MethodGet, nextPath, nil, nil)
	if r.status != http.StatusOK {
		rt.t.Fatalf("GET next: status %d, want 200 (%s)", r.status, r.body)
	}
	return r
}

func (rt *runtime) post(path, body string, header map[string]string) reply {
	rt.t.Helper()
	return rt.do(http.MethodPost, path, strings.NewReader(body), header)
}

// wantFault checks that r is a Lambda protocol fault.
func wantFault(t *testing.T, r reply, status int, errType string) {
	t.Helper()
	var doc struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("fault body %q: %v", r.body, err)
	}
	if r.status != status || doc.Type != errType {
		t.Errorf("got %d %s, want %d %s (%s)", r.status, doc.Type, status, errType, r.body)
	}
	if doc.Message == "" {
		t.Errorf("fault %s has no errorMessage", doc.Type)
	}
}

type outcome struct {
	res Result
	err error
}

// invokeAsync runs Invoke in the background.
func invokeAsync(ctx context.Context, s *Server, inv Invocation) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		res, err := s.Invoke(ctx, inv)
		ch <- outcome{res, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(5 * time.Second):
		t.Fatal("Invoke did not return")
		return outcome{}
	}
}

func TestNextHeaders(t *testing.T) {
	deadline := time.Now().Add(3 * time.Second).Truncate(time.Millisecond)
	tests := []struct {
		name string
		inv  Invocation
		want map[string]string // header -> value; "" means absent
	}{
		{
			name: "all set",
			inv: Invocation{RequestID: "req-1", FunctionARN: "arn:aws:lambda:us-east-1:000000000000:function:f",
				TraceID: "Root=1-abc", ClientContext: `{"custom":{"a":"b"}}`, CognitoIdentity: `{"cognitoIdentityId":"x"}`,
				Deadline: deadline, Payload: []byte(`{"k":"v"}`)},
			want: map[string]string{
				"Lambda-Runtime-Aws-Request-Id": "req-1", "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:000000000000:function:f",
				"Lambda-Runtime-Deadline-Ms": strconv.FormatInt(deadline.UnixMilli(), 10), "Lambda-Runtime-Trace-Id": "Root=1-abc",
				"Lambda-Runtime-Client-Context": `{"custom":{"a":"b"}}`, "Lambda-Runtime-Cognito-Identity": `{"cognitoIdentityId":"x"}`,
				"Content-Type": "application/json",
			},
		},
		{
			name: "optional unset",
			inv:  Invocation{RequestID: "req-2", FunctionARN: "arn", Deadline: deadline, Payload: []byte(`[]`)},
			want: map[string]string{
				"Lambda-Runtime-Aws-Request-Id": "req-2", "Lambda-Runtime-Deadline-Ms": strconv.FormatInt(deadline.UnixMilli(), 10),
				"Lambda-Runtime-Trace-Id": "", "Lambda-Runtime-Client-Context": "", "Lambda-Runtime-Cognito-Identity": "",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			rt := newRuntime(t, s)
			done := invokeAsync(t.Context(), s, tt.inv)
			r := rt.next()
			for k, want := range tt.want {
				got, ok := r.header[k]
				if want == "" && ok {
					t.Errorf("header %s = %q, want absent", k, got)
				} else if want != "" && r.header.Get(k) != want {
					t.Errorf("header %s = %q, want %q", k, r.header.Get(k), want)
				}
			}
			if !bytes.Equal(r.body, tt.inv.Payload) {
				t.Errorf("body = %q, want %q", r.body, tt.inv.Payload)
			}
			ack := rt.post(responsePath(tt.inv.RequestID), `"ok"`, nil)
			if ack.status != http.StatusAccepted || string(ack.body) != "{\"status\":\"OK\"}\n" {
				t.Errorf("response ack = %d %q, want 202 {\"status\":\"OK\"}", ack.status, ack.body)
			}
			o := wait(t, done)
			if o.err != nil || string(o.res.Payload) != `"ok"` || o.res.Err != nil {
				t.Errorf("Invoke = %q, %v, %v; want \"ok\"", o.res.Payload, o.res.Err, o.err)
			}
		})
	}
}

func TestZeroDeadline(t *testing.T) {
	s := newServer(t)
	rt := newRuntime(t, s)
	done := invokeAsync(t.Context(), s, Invocation{RequestID: "r"})
	r := rt.next()
	ms, err := strconv.ParseInt(r.header.Get("Lambda-Runtime-Deadline-Ms"), 10, 64)
	if err != nil {
		t.Fatalf("deadline header %q: %v", r.header.Get("Lambda-Runtime-Deadline-Ms"), err)
	}
	if got := time.UnixMilli(ms); got.Before(time.Now().Add(14*time.Minute)) || got.After(time.Now().Add(16*time.Minute)) {
		t.Errorf("deadline = %v, want about 15 minutes from now", got)
	}
	rt.post(responsePath("r"), "", nil)
	if o := wait(t, done); o.err != nil || len(o.res.Payload) != 0 {
		t.Errorf("Invoke = %q, %v; want empty payload", o.res.Payload, o.err)
	}
}

func TestAnswers(t *testing.T) {
	tests := []struct {
		name    string
		path    func(id string) string
		body    string
		header  map[string]string
		payload string                // want Result.Payload
		fnErr   *nimbus.FunctionError // want Result.Err
	}{
		{name: "response", path: responsePath, body: `{"hello":"world"}`, payload: `{"hello":"world"}`},
		{name: "empty response", path: responsePath, body: ``, payload: ``},
		{
			name: "python style error", path: errorPath,
			body:  `{"errorMessage":"boom","errorType":"ValueError","stackTrace":["  File \"x.py\", line 1, in h\n"]}`,
			fnErr: &nimbus.FunctionError{Type: "ValueError", Message: "boom", StackTrace: []string{"  File \"x.py\", line 1, in h\n"}},
		},
		{
			name: "aws-lambda-go frames", path: errorPath,
			body:  `{"errorMessage":"bad","errorType":"string","stackTrace":[{"path":"main.go","line":12,"label":"handle"}]}`,
			fnErr: &nimbus.FunctionError{Type: "string", Message: "bad", StackTrace: []string{"main.go:12 handle"}},
		},
		{
			name: "type from header", path: errorPath, body: `{"errorMessage":"m"}`,
			header: map[string]string{"Lambda-Runtime-Function-Error-Type": "Custom.Type"},
			fnErr:  &nimbus.FunctionError{Type: "Custom.Type", Message: "m"},
		},
		{
			name: "body type wins over header", path: errorPath, body: `{"errorMessage":"m","errorType":"Body"}`,
			header: map[string]string{"Lambda-Runtime-Function-Error-Type": "Header"},
			fnErr:  &nimbus.FunctionError{Type: "Body", Message: "m"},
		},
		{
			name: "non-JSON body", path: errorPath, body: "segfault at 0x0",
			header: map[string]string{"Lambda-Runtime-Function-Error-Type": "Runtime.Crash"},
			fnErr:  &nimbus.FunctionError{Type: "Runtime.Crash", Message: "segfault at 0x0"},
		},
		{
			name: "no type anywhere", path: errorPath, body: `oops`,
			fnErr: &nimbus.FunctionError{Type: "Unhandled", Message: "oops"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			rt := newRuntime(t, s)
			done := invokeAsync(t.Context(), s, Invocation{RequestID: "id-1", Payload: []byte("{}")})
			rt.next()
			if r := rt.post(tt.path("id-1"), tt.body, tt.header); r.status != http.StatusAccepted {
				t.Fatalf("answer status = %d, want 202 (%s)", r.status, r.body)
			}
			o := wait(t, done)
			if o.err != nil {
				t.Fatalf("Invoke: %v", o.err)
			}
			if got := string(o.res.Payload); got != tt.payload {
				t.Errorf("payload = %q, want %q", got, tt.payload)
			}
			if !equalFnErr(o.res.Err, tt.fnErr) {
				t.Errorf("function error = %+v, want %+v", o.res.Err, tt.fnErr)
			}
		})
	}
}

func equalFnErr(a, b *nimbus.FunctionError) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Type == b.Type && a.Message == b.Message && slices.Equal(a.StackTrace, b.StackTrace) && a.Unhandled == b.Unhandled
}

func TestProtocolFaults(t *testing.T) {
	tests := []struct {
		name string
		// inFlight: whether an invocation "id-1" has been delivered before
		// the faulty request.
		inFlight bool
		method   string
		path     string
		status   int
		errType  string
	}{
		{"unknown request id", true, http.MethodPost, responsePath("other"), 400, "InvalidRequestID"},
		{"unknown request id on error", true, http.MethodPost, errorPath("other"), 400, "InvalidRequestID"},
		{"response while idle", false, http.MethodPost, responsePath("id-1"), 400, "InvalidStateTransition"},
		{"error while idle", false, http.MethodPost, errorPath("x"), 400, "InvalidStateTransition"},
		{"GET response", true, http.MethodGet, responsePath("id-1"), 405, "MethodNotAllowed"},
		{"POST next", false, http.MethodPost, nextPath, 405, "MethodNotAllowed"},
		{"GET init error", false, http.MethodGet, initPath, 405, "MethodNotAllowed"},
		{"unknown path", false, http.MethodGet, "/2018-06-01/runtime/nope", 404, "NotFound"},
		{"other version", false, http.MethodGet, "/2020-01-01/runtime/invocation/next", 404, "NotFound"},
		{"empty request id", true, http.MethodPost, "/2018-06-01/runtime/invocation//response", 404, "NotFound"},
		{"unknown action", true, http.MethodPost, "/2018-06-01/runtime/invocation/id-1/done", 404, "NotFound"},
		{"root", false, http.MethodGet, "/", 404, "NotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			rt := newRuntime(t, s)
			var done <-chan outcome
			if tt.inFlight {
				done = invokeAsync(t.Context(), s, Invocation{RequestID: "id-1"})
				rt.next()
			}
			r := rt.do(tt.method, tt.path, strings.NewReader(`{"x":1}`), nil)
			wantFault(t, r, tt.status, tt.errType)
			if tt.method == http.MethodGet && tt.status == 405 && r.header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", r.header.Get("Allow"))
			}
			if !tt.inFlight {
				return
			}
			// The fault did not disturb the invocation in flight.
			if r := rt.post(responsePath("id-1"), `1`, nil); r.status != http.StatusAccepted {
				t.Fatalf("answer after fault: status %d (%s)", r.status, r.body)
			}
			if o := wait(t, done); o.err != nil || string(o.res.Payload) != "1" {
				t.Errorf("Invoke = %q, %v; want 1", o.res.Payload, o.err)
			}
		})
	}
}

func TestAnswerTwice(t *testing.T) {
	tests := []struct {
		name          string
		first, second func(string) string
	}{
		{"response then response", responsePath, responsePath},
		{"response then error", responsePath, errorPath},
		{"error then response", errorPath, responsePath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			rt := newRuntime(t, s)
			done := invokeAsync(t.Context(), s, Invocation{RequestID: "id-1"})
			rt.next()
			if r := rt.post(tt.first("id-1"), `{"errorMessage":"first","errorType":"E"}`, nil); r.status != http.StatusAccepted {
				t.Fatalf("first answer: %d (%s)", r.status, r.body)
			}
			wantFault(t, rt.post(tt.second("id-1"), `"second"`, nil), 400, "InvalidStateTransition")
			o := wait(t, done)
			if o.err != nil {
				t.Fatalf("Invoke: %v", o.err)
			}
			// The first answer stands.
			if o.res.Err != nil {
				if o.res.Err.Message != "first" {
					t.Errorf("error message = %q, want first", o.res.Err.Message)
				}
			} else if !strings.Contains(string(o.res.Payload), "first") {
				t.Errorf("payload = %q, want the first answer", o.res.Payload)
			}
			// Answering after Invoke returned is still a repeated answer.
			wantFault(t, rt.post(tt.second("id-1"), `"third"`, nil), 400, "InvalidStateTransition")
		})
	}
}

func TestAnswerBeforeDelivery(t *testing.T) {
	s := newServer(t)
	rt := newRuntime(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	done := invokeAsync(ctx, s, Invocation{RequestID: "id-1"})
	waitInFlight(t, s) // in flight, not yet polled
	wantFault(t, rt.post(responsePath("id-1"), `1`, nil), 400, "InvalidStateTransition")
	cancel()
	if o := wait(t, done); !errors.Is(o.err, context.Canceled) {
		t.Errorf("Invoke error = %v, want context.Canceled", o.err)
	}
}

func TestInvokeConflict(t *testing.T) {
	s := newServer(t)
	rt := newRuntime(t, s)
	done := invokeAsync(t.Context(), s, Invocation{RequestID: "id-1"})
	rt.next()
	_, err := s.Invoke(t.Context(), Invocation{RequestID: "id-2"})
	if !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("second Invoke error = %v, want ErrConflict", err)
	}
	rt.post(responsePath("id-1"), `1`, nil)
	if o := wait(t, done); o.err != nil {
		t.Fatalf("first Invoke: %v", o.err)
	}
	// Once the first is done, the next invocation goes through.
	done = invokeAsync(t.Context(), s, Invocation{RequestID: "id-3"})
	if got := rt.next().header.Get("Lambda-Runtime-Aws-Request-Id"); got != "id-3" {
		t.Errorf("request id = %q, want id-3", got)
	}
	rt.post(responsePath("id-3"), `3`, nil)
	if o := wait(t, done); o.err != nil || string(o.res.Payload) != "3" {
		t.Errorf("third Invoke = %q, %v; want 3", o.res.Payload, o.err)
	}
}

func TestInvokeContextEnds(t *testing.T) {
	tests := []struct {
		name string
		poll bool // the runtime takes the invocation but never answers
	}{
		{"runtime never polls", false},
		{"runtime never answers", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			rt := newRuntime(t, s)
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			done := invokeAsync(ctx, s, Invocation{RequestID: "slow"})
			if tt.poll {
				rt.next()
			}
			if o := wait(t, done); !errors.Is(o.err, context.DeadlineExceeded) {
				t.Fatalf("Invoke error = %v, want DeadlineExceeded", o.err)
			}
			if tt.poll {
				// A late answer is refused.
				wantFault(t, rt.post(responsePath("slow"), `1`, nil), 400, "InvalidStateTransition")
			}
			// The server takes a new invocation afterwards.
			done = invokeAsync(t.Context(), s, Invocation{RequestID: "next"})
			if got := rt.next().header.Get("Lambda-Runtime-Aws-Request-Id"); got != "next" {
				t.Fatalf("request id = %q, want next", got)
			}
			rt.post(responsePath("next"), `2`, nil)
			if o := wait(t, done); o.err != nil || string(o.res.Payload) != "2" {
				t.Errorf("Invoke = %q, %v; want 2", o.res.Payload, o.err)
			}
		})
	}
}

func TestCloseWhileLongPolling(t *testing.T) {
	s := newServer(t)
	rt := newRuntime(t, s)
	polled := make(chan error, 1)
	go func() {
		r, err := rt.try(context.Background(), http.MethodGet, nextPath, nil, nil)
		if err == nil {
			err = errors.New("got an answer: " + strconv.Itoa(r.status))
		}
		polled <- err
	}()
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("Ready not closed after /next")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-polled:
		if err == nil || strings.Contains(err.Error(), "got an answer") {
			t.Errorf("long poll ended with %v, want a connection error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll not ended by Close")
	}
	if _, err := s.Invoke(t.Context(), Invocation{RequestID: "late"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseUnblocksInvoke(t *testing.T) {
	tests := []struct {
		name string
		poll bool
	}{
		{"waiting for a poll", false},
		{"waiting for the answer", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			rt := newRuntime(t, s)
			done := invokeAsync(t.Context(), s, Invocation{RequestID: "id"})
			if tt.poll {
				rt.next()
			} else {
				waitInFlight(t, s)
			}
			_ = s.Close()
			if o := wait(t, done); !errors.Is(o.err, ErrClosed) {
				t.Errorf("Invoke error = %v, want ErrClosed", o.err)
			}
		})
	}
}

func waitInFlight(t *testing.T, s *Server) {
	t.Helper()
	for range 5000 {
		s.mu.Lock()
		inFlight := s.cur != nil
		s.mu.Unlock()
		if inFlight {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no invocation in flight")
}

// chunked hides a reader's length so that the request is sent chunked.
type chunked struct{ io.Reader }

func TestResponseTooLarge(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		chunked bool
		tooBig  bool
	}{
		{"at limit", 6291456, false, false},
		{"at limit chunked", MaxResponse, true, false},
		{"over limit", MaxResponse + 1, false, true},
		{"over limit chunked", MaxResponse + 1, true, true},
		{"far over limit chunked", 3 * MaxResponse, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			rt := newRuntime(t, s)
			done := invokeAsync(t.Context(), s, Invocation{RequestID: "big"})
			rt.next()
			var body io.Reader = bytes.NewReader(bytes.Repeat([]byte("x"), tt.size))
			if tt.chunked {
				body = chunked{body}
			}
			r := rt.do(http.MethodPost, responsePath("big"), body, nil)
			o := wait(t, done)
			if !tt.tooBig {
				if r.status != http.StatusAccepted || o.err != nil || len(o.res.Payload) != tt.size {
					t.Errorf("got %d, %d bytes, %v; want 202 and %d bytes", r.status, len(o.res.Payload), o.err, tt.size)
				}
				return
			}
			wantFault(t, r, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge")
			const wantMsg = "Response payload size exceeded maximum allowed payload size (6291456 bytes)."
			if !errors.Is(o.err, nimbus.ErrTooLarge) || o.err.Error() != wantMsg {
				t.Errorf("Invoke error = %v, want ErrTooLarge %q", o.err, wantMsg)
			}
			// The refused answer counts: a second one is a repeated answer.
			wantFault(t, rt.post(errorPath("big"), `{}`, nil), 400, "InvalidStateTransition")
		})
	}
}

func TestInitError(t *testing.T) {
	s := newServer(t)
	rt := newRuntime(t, s)
	done := invokeAsync(t.Context(), s, Invocation{RequestID: "id"})
	waitInFlight(t, s)
	select {
	case <-s.InitFailed():
		t.Fatal("InitFailed closed before /init/error")
	default:
	}
	r := rt.post(initPath, `{"errorMessage":"Unable to import module 'app': No module named 'app'","errorType":"Runtime.ImportModuleError","stackTrace":[]}`,
		map[string]string{"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"})
	if r.status != http.StatusAccepted {
		t.Fatalf("init error status = %d, want 202 (%s)", r.status, r.body)
	}
	select {
	case <-s.InitFailed():
	case <-time.After(5 * time.Second):
		t.Fatal("InitFailed not closed")
	}
	want := &nimbus.FunctionError{Type: "Runtime.ImportModuleError", Message: "Unable to import module 'app': No module named 'app'",
		StackTrace: []string{}, Unhandled: true}
	if got := s.InitErr(); !equalFnErr(got, want) {
		t.Errorf("InitErr = %+v, want %+v", got, want)
	}
	// The waiting Invoke returns the init error.
	o := wait(t, done)
	var fe *nimbus.FunctionError
	if !errors.As(o.err, &fe) || fe.Type != "Runtime.ImportModuleError" {
		t.Errorf("Invoke error = %v, want the init error", o.err)
	}
	// Reporting twice is refused.
	wantFault(t, rt.post(initPath, `{"errorMessage":"again","errorType":"X"}`, nil), 400, "InvalidStateTransition")
	if got := s.InitErr().Message; !strings.Contains(got, "Unable to import") {
		t.Errorf("InitErr message = %q, want the first report", got)
	}
}

func TestInitErrorAfterReady(t *testing.T) {
	s := newServer(t)
	rt := newRuntime(t, s)
	select {
	case <-s.Ready():
		t.Fatal("Ready closed before /next")
	default:
	}
	done := invokeAsync(t.Context(), s, Invocation{RequestID: "id"})
	rt.next()
	select {
	case <-s.Ready():
	default:
		t.Fatal("Ready not closed after /next")
	}
	wantFault(t, rt.post(initPath, `{"errorMessage":"late","errorType":"X"}`, nil), 400, "InvalidStateTransition")
	if s.InitErr() != nil {
		t.Errorf("InitErr = %v, want nil", s.InitErr())
	}
	rt.post(responsePath("id"), `1`, nil)
	wait(t, done)
}

func TestManyInvocationsOneConnection(t *testing.T) {
	s := newServer(t)
	rt := newRuntime(t, s)
	for i := range 50 {
		id := "req-" + strconv.Itoa(i)
		done := invokeAsync(t.Context(), s, Invocation{RequestID: id, Payload: []byte(strconv.Itoa(i))})
		r := rt.next()
		if got := r.header.Get("Lambda-Runtime-Aws-Request-Id"); got != id {
			t.Fatalf("request id = %q, want %q", got, id)
		}
		rt.post(responsePath(id), string(r.body)+"!", nil)
		if o := wait(t, done); o.err != nil || string(o.res.Payload) != strconv.Itoa(i)+"!" {
			t.Fatalf("Invoke %d = %q, %v", i, o.res.Payload, o.err)
		}
	}
}

func FuzzParseError(f *testing.F) {
	f.Add("", []byte(`{"errorMessage":"m","errorType":"T","stackTrace":["a","b"]}`))
	f.Add("H", []byte(`{"stackTrace":[{"path":"p","line":1,"label":"l"}]}`))
	f.Add("", []byte(`{"stackTrace":"one\ntwo"}`))
	f.Add("", []byte(`{"stackTrace":{"x":1}}`))
	f.Add("", []byte(`not json`))
	f.Add("", []byte(`null`))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		fe := parseError(header, body)
		if fe == nil || fe.Type == "" {
			t.Fatalf("parseError(%q, %q) = %+v, want a typed error", header, body, fe)
		}
	})
}

// TestPolling checks that Polling is closed exactly while the runtime
// waits in /next.
func TestPolling(t *testing.T) {
	s, err := Listen(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	isClosed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	before := s.Polling()
	if isClosed(before) {
		t.Fatal("Polling closed before any /next")
	}
	next := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + s.Addr() + "/2018-06-01/runtime/invocation/next")
		if err == nil {
			resp.Body.Close()
		}
		next <- err
	}()
	select {
	case <-before:
	case <-time.After(10 * time.Second):
		t.Fatal("Polling not closed while /next waits")
	}
	if !isClosed(s.Polling()) {
		t.Error("Polling() not closed at once while /next waits")
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { _, _ = s.Invoke(ctx, Invocation{RequestID: "r1", Payload: []byte("{}")}) }()
	if err := <-next; err != nil {
		t.Fatal(err)
	}
	cancel()
	if isClosed(s.Polling()) {
		t.Error("Polling() closed after /next got its invocation")
	}
}
