package node_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/nimbus-serverless/nimbus/internal/audit"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// signedNode is a node with authentication on, opened on dir, and the
// admin key it wrote to its credentials file.
type signedNode struct {
	n     *node.Node
	done  chan error
	admin aws.Credentials
}

func openSigned(t *testing.T, dir string) *signedNode {
	t.Helper()
	cfg := node.Defaults()
	cfg.Addr, cfg.DataDir, cfg.Auth, cfg.PrestartedHelpers = "127.0.0.1:0", dir, node.AuthSigV4, 0
	n, err := node.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	sn := &signedNode{n: n, done: make(chan error, 1)}
	go func() { sn.done <- n.Serve() }()
	path := filepath.Join(dir, "credentials")
	sc, err := config.LoadSharedConfigProfile(t.Context(), "nimbus", func(o *config.LoadSharedConfigOptions) {
		o.CredentialsFiles, o.ConfigFiles = []string{path}, []string{}
	})
	if err != nil || !sc.Credentials.HasKeys() {
		t.Fatalf("profile nimbus of %s: %v", path, err)
	}
	sn.admin = sc.Credentials
	return sn
}

func (sn *signedNode) stop(t *testing.T) {
	t.Helper()
	if err := sn.n.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-sn.done; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// call sends a request signed with creds and decodes a JSON answer into out.
func (sn *signedNode) call(t *testing.T, creds aws.Credentials, method, path string, body any, out any) int {
	t.Helper()
	return nodetest.Call(t, nodetest.Endpoint(sn.n), creds, method, path, body, out)
}

// TestAuditTrail: on a node with authentication on, changes and a denied
// attempt are in GET /nimbus/v1/audit with the right who, what and
// outcome, never a secret, and they are still there after a restart.
func TestAuditTrail(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // traversable, as nodetest does
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sn := openSigned(t, dir)
	stopped := false
	defer func() {
		if !stopped {
			sn.stop(t)
		}
	}()
	zip := base64.StdEncoding.EncodeToString(nodetest.Zip(t, map[string]string{"app.py": "def handler(e, c):\n    return e\n"}))
	if code := sn.call(t, sn.admin, "POST", "/2015-03-31/functions", map[string]any{
		"FunctionName": "audited", "Runtime": "python3.11", "Role": "arn:aws:iam::000000000000:role/x",
		"Handler": "app.handler", "Code": map[string]string{"ZipFile": zip},
	}, nil); code != 201 {
		t.Fatalf("create function = %d", code)
	}
	var dev struct{ AccessKeyId, SecretAccessKey string }
	if code := sn.call(t, sn.admin, "POST", "/nimbus/v1/keys", map[string]string{"Name": "dev", "Role": "developer", "Functions": "*"}, &dev); code != 201 {
		t.Fatalf("create key = %d", code)
	}
	devCreds := aws.Credentials{AccessKeyID: dev.AccessKeyId, SecretAccessKey: dev.SecretAccessKey}
	if code := sn.call(t, devCreds, "POST", "/nimbus/v1/keys", map[string]string{"Name": "evil", "Role": "admin"}, nil); code != 403 {
		t.Fatalf("a developer creates a key = %d, want 403", code)
	}
	if code := sn.call(t, sn.admin, "DELETE", "/2015-03-31/functions/audited", nil, nil); code != 204 {
		t.Fatalf("delete function = %d", code)
	}
	if code := sn.call(t, sn.admin, "GET", "/2015-03-31/functions", nil, nil); code != 200 {
		t.Fatalf("list functions = %d", code)
	}
	// The denied CreateKey names no key: it is refused before its body is
	// read.
	want := []audit.Event{
		{Key: "admin", AccessKeyID: sn.admin.AccessKeyID, Role: "admin", Action: "DeleteFunction", Function: "audited", Status: 204},
		{Key: "dev", AccessKeyID: dev.AccessKeyId, Role: "developer", Action: "CreateKey", Status: 403, ErrorType: "AccessDeniedException"},
		{Key: "admin", AccessKeyID: sn.admin.AccessKeyID, Role: "admin", Action: "CreateKey", Resource: "dev", Status: 201},
		{Key: "admin", AccessKeyID: sn.admin.AccessKeyID, Role: "admin", Action: "CreateFunction", Function: "audited", Status: 201},
	}
	check := func(sn *signedNode) {
		t.Helper()
		var page struct{ Events []audit.Event }
		if code := sn.call(t, sn.admin, "GET", "/nimbus/v1/audit", nil, &page); code != 200 {
			t.Fatalf("GET audit = %d", code)
		}
		raw, _ := json.Marshal(page)
		if strings.Contains(string(raw), dev.SecretAccessKey) {
			t.Errorf("the trail holds a secret: %s", raw)
		}
		if len(page.Events) != len(want) {
			t.Fatalf("trail = %s, want %d events", raw, len(want))
		}
		for i, got := range page.Events {
			w := want[i]
			w.Time, w.Route = got.Time, got.Route
			w.Source = "127.0.0.1"
			if got != w || time.Since(got.Time) > time.Minute {
				t.Errorf("event %d = %+v, want %+v", i, got, w)
			}
		}
		var mine struct{ Events []audit.Event }
		if code := sn.call(t, sn.admin, "GET", "/nimbus/v1/audit?key=dev", nil, &mine); code != 200 || len(mine.Events) != 1 || mine.Events[0].Status != 403 {
			t.Errorf("GET audit?key=dev = %d %+v, want the denied CreateKey", code, mine.Events)
		}
	}
	check(sn)
	sn.stop(t)
	stopped = true
	sn = openSigned(t, dir)
	defer sn.stop(t)
	check(sn)
}
