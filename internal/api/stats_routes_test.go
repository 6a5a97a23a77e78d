package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/nimbus-serverless/nimbus/internal/api"
	auditmem "github.com/nimbus-serverless/nimbus/internal/audit/mem"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/records"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// statsServer is an API server with authentication on (the audit tests'
// keys) and records on an embedded store, with 4 invocations of
// team-a-x and 2 of other-y folded into the statistics.
func statsServer(t *testing.T) *httptest.Server {
	t.Helper()
	ns, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close(context.Background()) })
	rs, err := records.Open(t.Context(), records.Config{JS: ns.JetStream(), Health: ns.Healthy, Node: "n1",
		FlushInterval: 5 * time.Millisecond, Aggregate: true, AggregateInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close(context.Background()) })
	now := time.Now().UTC()
	for i, fn := range []string{"team-a-x", "team-a-x", "team-a-x", "team-a-x", "other-y", "other-y"} {
		r := records.Record{RequestID: fn + string(rune('a'+i)), Function: fn, StartTime: now, EndTime: now, Duration: 10,
			BilledDuration: 10, MemorySize: 128, Status: records.StatusSuccess}
		rs.Add(&r)
	}
	if err := rs.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rep, err := rs.Stats(t.Context(), records.StatsQuery{Window: "1h", ByFunction: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Total.Invocations == 6 && len(rep.Functions) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("statistics not folded: %+v", rep.Total)
		}
	}

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
	srv := httptest.NewServer(api.New(api.Config{Registry: reg, Invoker: fakeInvoker{}, Verifier: v, Audit: auditmem.New(), Records: rs}))
	t.Cleanup(srv.Close)
	return srv
}

// TestStatsRoutes: the account's and a function's statistics, by window,
// by function, as a restricted key sees them, and the refusals.
func TestStatsRoutes(t *testing.T) {
	srv := statsServer(t)
	if code, body := signedCall(t, srv.URL, "AKROOT", "POST", "/2015-03-31/functions", auditCreateBody(t, "team-a-idle", "python3.11")); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, tt := range []struct {
		name, key, path string
		status          int
		errType         string
		window          string
		step, points    int
		invocations     int64
		functions       []string // nil: no Functions
	}{
		{"account, default window", "AKROOT", "/nimbus/v1/stats", 200, "", "1h", 60, 60, 6, nil},
		{"account by function", "AKROOT", "/nimbus/v1/stats?window=24h&by=function", 200, "", "24h", 900, 96, 6, []string{"other-y", "team-a-x"}},
		{"account, 7 days", "AKROOT", "/nimbus/v1/stats?window=7d", 200, "", "7d", 3600, 168, 6, nil},
		{"restricted key: its functions", "AKDEV", "/nimbus/v1/stats?by=function", 200, "", "1h", 60, 60, 4, []string{"team-a-x"}},
		{"one function", "AKDEV", "/nimbus/v1/functions/team-a-x/stats?window=24h", 200, "", "24h", 900, 96, 4, nil},
		{"a function with none yet", "AKDEV", "/nimbus/v1/functions/team-a-idle/stats", 200, "", "1h", 60, 60, 0, nil},
		{"a deleted function's", "AKROOT", "/nimbus/v1/functions/other-y/stats", 200, "", "1h", 60, 60, 2, nil},
		{"an unknown function", "AKROOT", "/nimbus/v1/functions/nope/stats", 404, "ResourceNotFoundException", "", 0, 0, 0, nil},
		{"another team's function", "AKDEV", "/nimbus/v1/functions/other-y/stats", 403, "AccessDeniedException", "", 0, 0, 0, nil},
		{"a bad window", "AKROOT", "/nimbus/v1/stats?window=2h", 400, "ValidationException", "", 0, 0, 0, nil},
		{"a bad window of a function", "AKROOT", "/nimbus/v1/functions/team-a-x/stats?window=30d", 400, "ValidationException", "", 0, 0, 0, nil},
		{"a bad by", "AKROOT", "/nimbus/v1/stats?by=node", 400, "ValidationException", "", 0, 0, 0, nil},
		{"unsigned", "", "/nimbus/v1/stats", 403, "MissingAuthenticationTokenException", "", 0, 0, 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := statsGet(t, srv, tt.key, tt.path)
			if code != tt.status {
				t.Fatalf("status %d, want %d: %s", code, tt.status, body)
			}
			if tt.errType != "" {
				if typ := lambdaError(t, h, body); typ != tt.errType {
					t.Fatalf("error %s (%s), want a %s", typ, body, tt.errType)
				}
				return
			}
			var rep struct {
				Window       string
				Step         int
				Since, Until time.Time
				Points       []struct {
					Time        time.Time
					Invocations int64
				}
				Total struct {
					Invocations int64
					GBSeconds   float64
					P50, P99    float64
				}
				Functions *[]struct {
					Function    string
					Invocations int64
				}
			}
			if err := json.Unmarshal([]byte(body), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Window != tt.window || rep.Step != tt.step || len(rep.Points) != tt.points || rep.Total.Invocations != tt.invocations {
				t.Fatalf("window %s step %d points %d invocations %d, want %s %d %d %d", rep.Window, rep.Step, len(rep.Points),
					rep.Total.Invocations, tt.window, tt.step, tt.points, tt.invocations)
			}
			if !rep.Since.Add(time.Duration(tt.points*tt.step)*time.Second).Equal(rep.Until) || !rep.Points[0].Time.Equal(rep.Since) {
				t.Errorf("since %s until %s first point %s", rep.Since, rep.Until, rep.Points[0].Time)
			}
			if tt.invocations > 0 && (rep.Total.P50 < 9 || rep.Total.P50 > 11 || rep.Total.GBSeconds == 0) {
				t.Errorf("total %+v: p50 should be about 10 ms", rep.Total)
			}
			if (rep.Functions == nil) != (tt.functions == nil) {
				t.Fatalf("functions %v, want %v", rep.Functions, tt.functions)
			}
			if rep.Functions != nil {
				var names []string
				for _, f := range *rep.Functions {
					names = append(names, f.Function)
				}
				if len(names) != len(tt.functions) || len(names) > 0 && names[0] != tt.functions[0] || len(names) > 1 && names[1] != tt.functions[1] {
					t.Errorf("functions %v, want %v", names, tt.functions)
				}
			}
		})
	}
}

// statsGet sends GET path signed by key id (unsigned when id is "").
func statsGet(t *testing.T, srv *httptest.Server, id, path string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id != "" {
		creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secretOf(id)}
		if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, emptySHA256, "lambda", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}
