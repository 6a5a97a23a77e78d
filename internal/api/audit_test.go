package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/audit"
	auditmem "github.com/nimbus-serverless/nimbus/internal/audit/mem"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// auditKeys are the keys of the audit tests: id -> principal (the secret
// is the id reversed).
var auditKeys = map[string]auth.Principal{
	"AKROOT": {Name: "root", AccessKeyID: "AKROOT", Role: auth.Admin, Functions: "*"},
	"AKDEV":  {Name: "dev", AccessKeyID: "AKDEV", Role: auth.Developer, Functions: "team-a-*"},
	"AKINV":  {Name: "inv", AccessKeyID: "AKINV", Role: auth.Invoker, Functions: "team-a-*"},
}

func secretOf(id string) string { return id + "-secret" }

// auditServer is an API server with authentication on, over an in-memory
// store, recording into log.
func auditServer(t *testing.T, log audit.Log, logger *slog.Logger) *httptest.Server {
	t.Helper()
	st := mem.New()
	kv, _ := st.KV(t.Context(), "functions")
	lim := codepkg.DefaultLimits()
	cache, err := codepkg.NewCache(t.TempDir(), st.Blobs(), lim, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close(context.Background()) })
	reg := openRegistry(t, registry.Config{KV: kv, Blobs: st.Blobs(), Code: cache, Runtimes: []string{"python3.11"}, Limits: lim})
	v := &auth.Verifier{Region: "us-east-1", Service: "lambda", MaxBody: 8 << 20, Secrets: func(id string) (string, auth.Principal, bool) {
		p, ok := auditKeys[id]
		return secretOf(id), p, ok
	}}
	srv := httptest.NewServer(api.New(api.Config{Registry: reg, Invoker: fakeInvoker{}, Verifier: v, Audit: log, Logger: logger}))
	t.Cleanup(srv.Close)
	return srv
}

// signedCall sends a request to base+path signed by key id (unsigned when
// id is "").
func signedCall(t *testing.T, base, id, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if id != "" {
		sum := sha256.Sum256([]byte(body))
		creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secretOf(id)}
		if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func auditCreateBody(t *testing.T, name, runtime string) string {
	b, _ := json.Marshal(map[string]any{
		"FunctionName": name, "Runtime": runtime, "Role": "arn:aws:iam::000000000000:role/x", "Handler": "app.handler",
		"Code": map[string]string{"ZipFile": base64.StdEncoding.EncodeToString(pyZip(t))},
	})
	return string(b)
}

// TestAuditRecordsChangesAndRefusals: changes are recorded with who, what,
// from where and how they ended, and so are refused attempts on any
// route; reads and invokes that pass are not.
func TestAuditRecordsChangesAndRefusals(t *testing.T) {
	log := auditmem.New()
	srv := auditServer(t, log, nil)
	const fns = "/2015-03-31/functions"
	steps := []struct {
		id, method, path, body string
		status                 int
		want                   *audit.Event // nil: not recorded
	}{
		{"AKROOT", "POST", fns, auditCreateBody(t, "team-a-x", "python3.11"), 201,
			&audit.Event{Key: "root", AccessKeyID: "AKROOT", Role: "admin", Action: "CreateFunction", Route: "POST " + fns, Function: "team-a-x", Status: 201}},
		{"AKROOT", "GET", fns + "/team-a-x", "", 200, nil},
		{"AKINV", "POST", fns + "/team-a-x/invocations", "{}", 200, nil},
		{"AKROOT", "POST", fns, auditCreateBody(t, "team-a-bad", "cobol"), 400,
			&audit.Event{Key: "root", AccessKeyID: "AKROOT", Role: "admin", Action: "CreateFunction", Route: "POST " + fns, Function: "team-a-bad", Status: 400, ErrorType: "InvalidParameterValueException"}},
		{"AKDEV", "POST", fns, auditCreateBody(t, "team-b-z", "python3.11"), 403,
			&audit.Event{Key: "dev", AccessKeyID: "AKDEV", Role: "developer", Action: "CreateFunction", Route: "POST " + fns, Function: "team-b-z", Status: 403, ErrorType: "AccessDeniedException"}},
		{"AKDEV", "PUT", "/2017-10-31/functions/team-b-y/concurrency", `{"ReservedConcurrentExecutions":1}`, 403,
			&audit.Event{Key: "dev", AccessKeyID: "AKDEV", Role: "developer", Action: "PutFunctionConcurrency", Route: "PUT /2017-10-31/functions/{name}/concurrency", Function: "team-b-y", Status: 403, ErrorType: "AccessDeniedException"}},
		{"AKINV", "GET", fns + "/team-a-x", "", 403,
			&audit.Event{Key: "inv", AccessKeyID: "AKINV", Role: "invoker", Action: "GET /2015-03-31/functions/{name}", Route: "GET /2015-03-31/functions/{name}", Function: "team-a-x", Status: 403, ErrorType: "AccessDeniedException"}},
		{"AKNOBODY", "DELETE", "/nimbus/v1/keys/root", "", 403,
			&audit.Event{AccessKeyID: "AKNOBODY", Action: "DeleteKey", Route: "DELETE /nimbus/v1/keys/{key}", Resource: "root", Status: 403, ErrorType: "UnrecognizedClientException"}},
		{"", "POST", "/2015-03-31/functions/team-a-x/invocations", "{}", 403,
			&audit.Event{Action: "POST /2015-03-31/functions/{name}/invocations", Route: "POST /2015-03-31/functions/{name}/invocations", Function: "team-a-x", Status: 403, ErrorType: "MissingAuthenticationTokenException"}},
		{"AKDEV", "DELETE", fns + "/team-a-x", "", 204,
			&audit.Event{Key: "dev", AccessKeyID: "AKDEV", Role: "developer", Action: "DeleteFunction", Route: "DELETE " + fns + "/{name}", Function: "team-a-x", Status: 204}},
	}
	var want []audit.Event
	for _, s := range steps {
		before := time.Now().UTC()
		if code, body := signedCall(t, srv.URL, s.id, s.method, s.path, s.body); code != s.status {
			t.Fatalf("%s %s by %q = %d %s, want %d", s.method, s.path, s.id, code, body, s.status)
		}
		evs, _, _ := log.List(t.Context(), audit.Filter{Limit: 1000})
		if s.want == nil {
			if len(evs) != len(want) {
				t.Errorf("%s %s by %s was recorded: %+v", s.method, s.path, s.id, evs[0])
			}
			continue
		}
		if len(evs) != len(want)+1 {
			t.Fatalf("%s %s by %q: %d events, want %d", s.method, s.path, s.id, len(evs), len(want)+1)
		}
		got := evs[0]
		if got.Time.Before(before.Add(-time.Second)) || got.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("%s %s: Time %v, want about %v", s.method, s.path, got.Time, before)
		}
		w := *s.want
		w.Time, w.Source = got.Time, "127.0.0.1"
		if got != w {
			t.Errorf("%s %s by %q recorded\n %+v, want\n %+v", s.method, s.path, s.id, got, w)
		}
		want = append(want, w)
	}
}

// TestAuditList: GET /nimbus/v1/audit filters, pages and refuses bad
// input; only admin keys may read it.
func TestAuditList(t *testing.T) {
	log := auditmem.New()
	srv := auditServer(t, log, nil)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 5 {
		e := audit.Event{Time: base.Add(time.Duration(i) * time.Hour), Key: []string{"a", "b"}[i%2], Action: "DeleteFunction", Function: "f" + string(rune('0'+i)), Status: 204}
		if err := log.Record(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	list := func(query string) ([]string, string) {
		t.Helper()
		code, body := signedCall(t, srv.URL, "AKROOT", "GET", "/nimbus/v1/audit"+query, "")
		if code != 200 {
			t.Fatalf("GET audit%s = %d %s", query, code, body)
		}
		var page struct {
			Events     []audit.Event
			NextMarker string
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil || page.Events == nil {
			t.Fatalf("GET audit%s: %v: %s", query, err, body)
		}
		var fns []string
		for _, e := range page.Events {
			fns = append(fns, e.Function)
		}
		return fns, page.NextMarker
	}
	check := func(query, want string) {
		t.Helper()
		if got, _ := list(query); strings.Join(got, ",") != want {
			t.Errorf("GET audit%s = %v, want %s", query, got, want)
		}
	}
	check("", "f4,f3,f2,f1,f0")
	check("?key=a", "f4,f2,f0")
	check("?function=f3", "f3")
	check("?function=arn:aws:lambda:us-east-1:000000000000:function:f3", "f3")
	check("?since=2026-03-01T14:00:00Z", "f4,f3,f2")
	check("?since=2026-03-01T14:00:00Z&until=2026-03-01T15:30:00%2B00:00", "f3,f2")
	check("?action=CreateFunction", "")
	got, next := list("?limit=2")
	got2, next2 := list("?limit=2&marker=" + next)
	got3, next3 := list("?limit=2&marker=" + next2)
	if all := strings.Join(append(append(got, got2...), got3...), ","); all != "f4,f3,f2,f1,f0" || next3 != "" {
		t.Errorf("pages of 2 = %s (last marker %q), want f4,f3,f2,f1,f0", all, next3)
	}
	for _, bad := range []struct{ query, typ, msg string }{
		{"?since=yesterday", "InvalidParameterValueException", "since must be a time in RFC 3339 form"},
		{"?until=2026-03-01", "InvalidParameterValueException", "until must be a time in RFC 3339 form"},
		{"?limit=0", "InvalidParameterValueException", "limit must be 1 to 1000, not 0"},
		{"?limit=5000", "InvalidParameterValueException", "limit must be 1 to 1000, not 5000"},
		{"?limit=ten", "InvalidParameterValueException", "limit must be a whole number"},
		{"?marker=xyz", "InvalidParameterValueException", "is not one this API gave"},
		{"?since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "InvalidParameterValueException", "is before since"},
	} {
		code, body := signedCall(t, srv.URL, "AKROOT", "GET", "/nimbus/v1/audit"+bad.query, "")
		if code != 400 || !strings.Contains(body, bad.msg) {
			t.Errorf("GET audit%s = %d %s, want 400 with %q", bad.query, code, body, bad.msg)
		}
	}
	if code, body := signedCall(t, srv.URL, "AKDEV", "GET", "/nimbus/v1/audit", ""); code != 403 || !strings.Contains(body, "not authorized") {
		t.Errorf("a developer reads the trail: %d %s, want 403", code, body)
	}
}

// failingLog refuses every record.
type failingLog struct{ audit.Log }

func (failingLog) Record(context.Context, audit.Event) error {
	return nimbus.Errorf(nimbus.ErrUnavailable, "disk full")
}

// TestAuditFailureKeepsTheAnswer: a change whose record cannot be written
// still gets its answer (it has happened); the failure is logged as an
// error.
func TestAuditFailureKeepsTheAnswer(t *testing.T) {
	var buf testenv.Buffer
	srv := auditServer(t, failingLog{auditmem.New()}, slog.New(slog.NewTextHandler(&buf, nil)))
	if code, body := signedCall(t, srv.URL, "AKROOT", "POST", "/2015-03-31/functions", auditCreateBody(t, "f", "python3.11")); code != 201 {
		t.Fatalf("create = %d %s, want 201 despite the audit failure", code, body)
	}
	if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "audit: could not record") ||
		!strings.Contains(out, "action=CreateFunction") || !errors.Is(failingLog{}.Record(t.Context(), audit.Event{}), nimbus.ErrUnavailable) {
		t.Errorf("log = %q, want an error naming the unrecorded CreateFunction", out)
	}
}
