package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/cluster"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

type nopEngine struct{}

func (nopEngine) Free(*nimbus.Function) (string, bool, error) { return "", true, nil }
func (nopEngine) Hold(ctx context.Context, _ *nimbus.Function, _ string) (context.Context, func() bool, error) {
	return ctx, func() bool { return true }, nil
}

// TestNodesAuth: GET /nimbus/v1/nodes is a read (admin and developer keys,
// not invoker keys, not unsigned requests); the forward route takes no
// access key, an admin's included; without a membership the route is 404.
func TestNodesAuth(t *testing.T) {
	v := &auth.Verifier{Region: "us-east-1", Service: "lambda", MaxBody: 8 << 20, Secrets: func(id string) (string, auth.Principal, bool) {
		p, ok := auditKeys[id]
		return secretOf(id), p, ok
	}}
	m, err := cluster.Open(t.Context(), cluster.Config{KV: mem.NewKV(), Self: func() cluster.Member {
		return cluster.Member{ID: "n1", Address: "http://n1:9000", Version: "v", Started: time.Now().Add(-time.Hour)}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	fwd, err := cluster.NewForwarder(cluster.ForwarderConfig{Members: m, Local: fakeInvoker{}, Engine: nopEngine{},
		Key: []byte(strings.Repeat("x", 32)), Resolve: func(context.Context, string, string) (*nimbus.Function, error) { return &nimbus.Function{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Registry: nil, Invoker: fwd, Verifier: v, Nodes: m, SelfID: "n1", Forwards: fwd}))
	defer srv.Close()
	for id, want := range map[string]int{"": http.StatusForbidden, "AKINV": http.StatusForbidden, "AKDEV": http.StatusOK, "AKROOT": http.StatusOK} {
		status, body := signedCall(t, srv.URL, id, http.MethodGet, "/nimbus/v1/nodes", "")
		if status != want && !(id == "" && status == http.StatusUnauthorized) {
			t.Errorf("GET /nimbus/v1/nodes as %q: %d %s, want %d", id, status, body, want)
		}
		if status == http.StatusOK {
			var out struct{ Nodes []api.NodeInfo }
			if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Nodes) != 1 || out.Nodes[0].ID != "n1" || !out.Nodes[0].Self ||
				out.Nodes[0].Address != "http://n1:9000" || out.Nodes[0].UptimeSeconds < 3599 {
				t.Errorf("GET /nimbus/v1/nodes: %s", body)
			}
		}
	}
	body := `{"function":"f","key":"f@k","invocation":{"requestId":"1","trigger":"api"}}`
	if status, out := signedCall(t, srv.URL, "AKROOT", http.MethodPost, cluster.ForwardPath, body); status != http.StatusUnauthorized {
		t.Errorf("a forward signed with an admin access key: %d %s, want 401", status, out)
	}
	bare := httptest.NewServer(api.New(api.Config{}))
	defer bare.Close()
	if status, _ := signedCall(t, bare.URL, "", http.MethodGet, "/nimbus/v1/nodes", ""); status != http.StatusNotFound {
		t.Errorf("GET /nimbus/v1/nodes without a membership: %d, want 404", status)
	}
	if status, _ := signedCall(t, bare.URL, "", http.MethodPost, cluster.ForwardPath, body); status != http.StatusNotFound {
		t.Errorf("a forward to a node without a forwarder: %d, want 404", status)
	}
}
