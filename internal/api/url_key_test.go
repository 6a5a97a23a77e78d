package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// triggerKey returns the key in a trigger view's http config.
func triggerKey(t *testing.T, v api.TriggerView) string {
	t.Helper()
	var c struct{ Key string }
	if err := json.Unmarshal(v.Config, &c); err != nil || c.Key == "" {
		t.Fatalf("trigger %s has no key in its config %s (%v)", v.Name, v.Config, err)
	}
	return c.Key
}

// TestURLKeyKeptAndRotated: a KEY URL's key survives updates that leave it
// out (the trigger API's PUT, the Lambda dialect's UpdateFunctionUrlConfig),
// and changes when rotated: then the old key is refused and the new one
// works.
func TestURLKeyKeptAndRotated(t *testing.T) {
	n := nodetest.Start(t, patientNode)
	c := client(n)
	ep := nodetest.Endpoint(n)
	deploy(t, c, fixture{name: "keyed", runtime: "python3.11", handler: "app.handler", zip: nodetest.Zip(t, map[string]string{"app.py": pyURL})})
	base := ep + "/nimbus/v1/functions/keyed/triggers"
	url := ep + "/fn/keyed/plain"

	created := callJSON[api.TriggerView](t, "POST", base, `{"name":"url","type":"http","config":{"authType":"KEY"}}`, http.StatusCreated)
	key := triggerKey(t, created)
	// The same trigger again, as `nimbus deploy -f` sends it: the key stays.
	for _, body := range []string{
		`{"name":"url","type":"http","enabled":true,"config":{"authType":"KEY"},"batchSize":1,"batchWindow":"0s","maxRetries":3}`,
		`{"config":{"authType":"KEY","invokeMode":"BUFFERED"}}`,
		`{"maxRetries":1}`,
	} {
		v := callJSON[api.TriggerView](t, "PUT", base+"/url", body, http.StatusOK)
		if got := triggerKey(t, v); got != key {
			t.Errorf("PUT %s changed the key from %s to %s", body, key, got)
		}
	}
	if _, err := c.UpdateFunctionUrlConfig(t.Context(), &lambda.UpdateFunctionUrlConfigInput{FunctionName: aws.String("keyed"), AuthType: "NIMBUS_KEY"}); err != nil {
		t.Fatal(err)
	}
	if got := nimbusKey(t, ep, "keyed"); got != key {
		t.Errorf("UpdateFunctionUrlConfig without NimbusKey changed the key from %s to %s", key, got)
	}
	if r := urlCall(t, "GET", url, nil, map[string]string{"X-Nimbus-Key": key}); r.status != 200 {
		t.Fatalf("with the key: %d %s", r.status, r.body)
	}

	rotated := callJSON[api.TriggerView](t, "POST", base+"/url/rotate-key", "", http.StatusOK)
	newKey := triggerKey(t, rotated)
	if newKey == key || rotated.Name != "url" || rotated.Type != "http" {
		t.Fatalf("rotate-key answered %+v; want the trigger with a new key", rotated)
	}
	if got := nimbusKey(t, ep, "keyed"); got != newKey {
		t.Errorf("GetFunctionUrlConfig shows key %s after rotation, want %s", got, newKey)
	}
	wantStatus(t, urlCall(t, "GET", url, nil, map[string]string{"X-Nimbus-Key": key}), 403, "Forbidden")
	if r := urlCall(t, "GET", url, nil, map[string]string{"X-Nimbus-Key": newKey}); r.status != 200 {
		t.Errorf("with the new key: %d %s", r.status, r.body)
	}
}

func TestURLRotateKeyBadInput(t *testing.T) {
	n := nodetest.Start(t, nil)
	createPy(t, client(n), "rk", pyZip(t))
	base := nodetest.Endpoint(n) + "/nimbus/v1/functions/"
	callJSON[api.TriggerView](t, "POST", base+"rk/triggers", `{"name":"pub","type":"http","config":{"authType":"NONE"}}`, http.StatusCreated)
	callJSON[api.TriggerView](t, "POST", base+"rk/triggers", kafkaTrigger, http.StatusCreated)
	for _, tt := range []struct {
		path   string
		status int
		typ    string
		msg    string
	}{
		{"rk/triggers/pub/rotate-key", 400, "InvalidParameterValueException", "authType NONE: it has no key to rotate"},
		{"rk/triggers/orders/rotate-key", 400, "InvalidParameterValueException", "of type kafka"},
		{"rk/triggers/nope/rotate-key", 404, "ResourceNotFoundException", "no trigger named nope"},
		{"nope/triggers/url/rotate-key", 404, "ResourceNotFoundException", "Function not found"},
		{"rk/triggers/bad.name/rotate-key", 400, "ValidationException", "triggerName"},
	} {
		status, typ, msg := rawCall(t, "POST", base+tt.path, "")
		if status != tt.status || typ != tt.typ || !strings.Contains(msg, tt.msg) {
			t.Errorf("POST %s = %d %s %q, want %d %s containing %q", tt.path, status, typ, msg, tt.status, tt.typ, tt.msg)
		}
	}
}
