package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// urlKeyOf reads the key of function's http trigger "url".
func urlKeyOf(t *testing.T, endpoint, function string) string {
	t.Helper()
	c := newClient(endpoint, "us-east-1", aws.Credentials{})
	defer c.close()
	var v triggerView
	if err := c.send(t.Context(), http.MethodGet, triggersPath(function, "url"), nil, &v); err != nil {
		t.Fatal(OneLine(err))
	}
	var cfg struct{ Key string }
	if err := json.Unmarshal(v.Config, &cfg); err != nil || cfg.Key == "" {
		t.Fatalf("trigger url has no key: %s (%v)", v.Config, err)
	}
	return cfg.Key
}

// callURL calls the function's URL with key and returns the status.
func callURL(t *testing.T, endpoint, function, key string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, endpoint+"/fn/"+function+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Nimbus-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestURLKeyDeployAndRotate: deploying a manifest with a KEY URL again
// keeps its key; rotate-key changes it, and only the new key works.
func TestURLKeyDeployAndRotate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := nodetest.Start(t, nil)
	endpoint := nodetest.Endpoint(n)
	doc := "functions:\n  - name: site\n    runtime: python3.11\n    handler: app.handler\n    code: " + writeApp(t) + "\n" +
		"    triggers:\n      - name: url\n        type: http\n        config: {authType: KEY}\n"
	path := filepath.Join(t.TempDir(), "nimbus.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	deploy := func() {
		t.Helper()
		if r := runCmd(t, endpoint, "", "deploy", "-f", path); r.err != nil {
			t.Fatal(OneLine(r.err))
		}
	}
	deploy()
	key := urlKeyOf(t, endpoint, "site")
	deploy()
	if got := urlKeyOf(t, endpoint, "site"); got != key {
		t.Fatalf("a second deploy -f changed the key from %s to %s", key, got)
	}
	if got := callURL(t, endpoint, "site", key); got != 200 {
		t.Fatalf("URL with the key answered %d", got)
	}

	r := runCmd(t, endpoint, "", "triggers", "rotate-key", "site", "url")
	if r.err != nil {
		t.Fatal(OneLine(r.err))
	}
	newKey := strings.TrimSpace(r.stdout)
	if newKey == key || newKey != urlKeyOf(t, endpoint, "site") || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("rotate-key printed %q (old key %s); want the new key alone", r.stdout, key)
	}
	if !strings.Contains(r.stderr, "the old key is refused") {
		t.Errorf("rotate-key said %q on stderr", r.stderr)
	}
	if got := callURL(t, endpoint, "site", key); got != 403 {
		t.Errorf("URL with the old key answered %d, want 403", got)
	}
	if got := callURL(t, endpoint, "site", newKey); got != 200 {
		t.Errorf("URL with the new key answered %d, want 200", got)
	}
	deploy()
	if got := urlKeyOf(t, endpoint, "site"); got != newKey {
		t.Errorf("a deploy after the rotation changed the key from %s to %s", newKey, got)
	}

	r = runCmd(t, endpoint, "", "triggers", "rotate-key", "site", "url", "-o", "json")
	var v triggerView
	if err := json.Unmarshal([]byte(r.stdout), &v); r.err != nil || err != nil || v.Name != "url" || !strings.Contains(string(v.Config), `"key"`) {
		t.Errorf("rotate-key -o json: %q, %v", r.stdout, r.err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"site", "nope"}, "ResourceNotFoundException: Function site has no trigger named nope"},
		{[]string{"gone", "url"}, "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:gone"},
		{[]string{"site", "bad.name"}, `invalid trigger name "bad.name"`},
	} {
		r := runCmd(t, endpoint, "", append([]string{"triggers", "rotate-key"}, tc.args...)...)
		if got := OneLine(r.err); !strings.HasPrefix(got, tc.want) || r.stdout != "" {
			t.Errorf("rotate-key %v: %q, stdout %q; want %q", tc.args, got, r.stdout, tc.want)
		}
	}
}
