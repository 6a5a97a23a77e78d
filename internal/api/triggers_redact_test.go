package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// TestTriggerSecretsRedacted checks that no answer shows a trigger's
// secret, and that a view sent back keeps it: an s3 trigger's secret, which
// the node checks on every notification, so what is stored can be seen.
func TestTriggerSecretsRedacted(t *testing.T) {
	n := nodetest.Start(t, nil)
	createPy(t, client(n), "tf", pyZip(t))
	base := nodetest.Endpoint(n) + "/nimbus/v1/functions/tf/triggers"
	const secret = "s3cr3t-s3cr3t"
	noSecret := func(what string, raw []byte) {
		t.Helper()
		if strings.Contains(string(raw), secret) {
			t.Errorf("%s shows the secret: %s", what, raw)
		}
	}
	status, raw, _ := call(t, "POST", base, `{"name":"up","type":"s3","config":{"bucket":"b","secret":"`+secret+`"}}`)
	if status != http.StatusCreated || !strings.Contains(string(raw), `"secret":"****"`) {
		t.Fatalf("create: %d %s, want the secret shown as ****", status, raw)
	}
	noSecret("the create's answer", raw)
	_, raw, _ = call(t, "GET", base, "")
	noSecret("the list", raw)
	_, view, _ := call(t, "GET", base+"/up", "")
	noSecret("get", view)

	// The view, edited and sent back, keeps the stored secret.
	var v map[string]any
	if err := json.Unmarshal(view, &v); err != nil {
		t.Fatal(err)
	}
	v["batchSize"] = 2 // a change: the trigger restarts with the stored config
	back, _ := json.Marshal(v)
	status, raw, _ = call(t, "PUT", base+"/up", string(back))
	if status != http.StatusOK {
		t.Fatalf("update with the view: %d %s", status, raw)
	}
	noSecret("the update's answer", raw)
	waitTriggerActive(t, base+"/up")
	notify := func(secret string) int {
		status, _, _ := call(t, "POST", nodetest.Endpoint(n)+"/nimbus/v1/s3-events/tf/up?secret="+secret, `{"Records":[]}`)
		return status
	}
	if got, bad := notify(secret), notify(trigger.Redacted); got != http.StatusOK || bad != http.StatusForbidden {
		t.Errorf("notifications with the secret and with ****: %d and %d, want 200 and 403 (the secret kept)", got, bad)
	}

	// A redacted secret cannot be made up: not for a new trigger, nor
	// where none is stored.
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "", `{"name":"fake","type":"s3","config":{"bucket":"b","secret":"****"}}`},
		{"PUT", "/open", `{"config":{"bucket":"b","secret":"****"}}`},
	} {
		if tc.path == "/open" {
			callJSON[api.TriggerView](t, "POST", base, `{"name":"open","type":"s3","config":{"bucket":"b"}}`, http.StatusCreated)
		}
		status, raw, typ := call(t, tc.method, base+tc.path, tc.body)
		if status != http.StatusBadRequest || typ != "InvalidParameterValueException" || !strings.Contains(string(raw), "give the secret itself") {
			t.Errorf("%s %s with a redacted secret: %d %s %s, want 400 asking for the secret", tc.method, tc.path, status, typ, raw)
		}
	}
}

// waitTriggerActive waits until the trigger at url is Active with its current
// settings.
func waitTriggerActive(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := callJSON[api.TriggerView](t, "GET", url, "", http.StatusOK)
		if v.Status.State == trigger.StateActive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("trigger not Active: %+v", v.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
