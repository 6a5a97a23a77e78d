package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// call sends a request and returns the status, the body and the error type.
func call(t *testing.T, method, url, body string) (int, []byte, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header.Get("X-Amzn-ErrorType")
}

// callJSON sends a request that must answer want, and decodes the answer.
func callJSON[T any](t *testing.T, method, url, body string, want int) T {
	t.Helper()
	status, raw, _ := call(t, method, url, body)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, status, want, raw)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s %s: %v: %s", method, url, err, raw)
	}
	return v
}

const kafkaTrigger = `{"name":"orders","type":"kafka","config":{"brokers":["127.0.0.1:1"],"topic":"orders"},
	"batchSize":10,"batchWindow":"250ms","maxRetries":2,"failureDestination":"nats:dead.letters","concurrency":4}`

func TestTriggersAPI(t *testing.T) {
	n := nodetest.Start(t, nil)
	createPy(t, client(n), "tf", pyZip(t))
	base := nodetest.Endpoint(n) + "/nimbus/v1/functions/tf/triggers"

	v := callJSON[api.TriggerView](t, "POST", base, kafkaTrigger, http.StatusCreated)
	if v.ID == "" || v.Name != "orders" || v.Type != "kafka" || !v.Enabled || v.BatchSize != 10 || v.BatchWindow != "250ms" ||
		v.MaxRetries != 2 || v.FailureDestination != "nats:dead.letters" || v.Concurrency != 4 || v.Created.IsZero() {
		t.Errorf("create: got %+v", v)
	}
	if !slices.Contains([]string{trigger.StateConnecting, trigger.StateError, trigger.StateActive}, v.Status.State) {
		t.Errorf("status of a new trigger: got %+v", v.Status)
	}
	// Defaults.
	d := callJSON[api.TriggerView](t, "POST", base, `{"name":"d","type":"kafka","config":{"brokers":["127.0.0.1:1"],"topic":"t"}}`, http.StatusCreated)
	if d.BatchSize != 1 || d.BatchWindow != "0s" || d.MaxRetries != 3 || !d.Enabled {
		t.Errorf("defaults: got %+v", d)
	}

	list := callJSON[api.TriggerList](t, "GET", base, "", http.StatusOK)
	if len(list.Triggers) != 2 || list.Triggers[0].Name != "orders" || list.Triggers[1].Name != "d" {
		t.Errorf("list: got %+v", list)
	}
	got := callJSON[api.TriggerView](t, "GET", base+"/orders", "", http.StatusOK)
	if got.ID != v.ID || string(got.Config) != `{"brokers":["127.0.0.1:1"],"topic":"orders"}` {
		t.Errorf("get: got %+v", got)
	}

	// An update changes what it names; a view sent back is accepted.
	u := callJSON[api.TriggerView](t, "PUT", base+"/orders", `{"batchSize":20,"batchWindow":"1s"}`, http.StatusOK)
	if u.BatchSize != 20 || u.BatchWindow != "1s" || u.MaxRetries != 2 || string(u.Config) != string(got.Config) || u.ID != v.ID {
		t.Errorf("update: got %+v", u)
	}
	back, _ := json.Marshal(u)
	callJSON[api.TriggerView](t, "PUT", base+"/orders", string(back), http.StatusOK)

	dis := callJSON[api.TriggerView](t, "POST", base+"/orders/disable", "", http.StatusOK)
	if dis.Enabled || dis.Status.State != trigger.StateDisabled {
		t.Errorf("disable: got enabled %v, status %+v", dis.Enabled, dis.Status)
	}
	en := callJSON[api.TriggerView](t, "POST", base+"/orders/enable", "", http.StatusOK)
	if !en.Enabled || en.Status.State == trigger.StateDisabled {
		t.Errorf("enable: got enabled %v, status %+v", en.Enabled, en.Status)
	}

	if status, raw, _ := call(t, "DELETE", base+"/orders", ""); status != http.StatusNoContent {
		t.Errorf("delete: status %d: %s", status, raw)
	}
	if status, _, typ := call(t, "GET", base+"/orders", ""); status != http.StatusNotFound || typ != "ResourceNotFoundException" {
		t.Errorf("get after delete: %d %s", status, typ)
	}
	// A function URL with a key gets one generated; streaming needs an
	// HTTP function.
	url := callJSON[api.TriggerView](t, "POST", base, `{"name":"url","type":"http","config":{"authType":"KEY"}}`, http.StatusCreated)
	var urlCfg struct{ Key string }
	if err := json.Unmarshal(url.Config, &urlCfg); err != nil || len(urlCfg.Key) < 16 {
		t.Errorf("http trigger: got config %s, want a generated key", url.Config)
	}
	status, raw, typ := call(t, "PUT", base+"/url", `{"config":{"authType":"NONE","invokeMode":"RESPONSE_STREAM"}}`)
	if status != http.StatusBadRequest || typ != "InvalidParameterValueException" || !strings.Contains(string(raw), "RESPONSE_STREAM") {
		t.Errorf("streaming URL of a Python function: %d %s %s", status, typ, raw)
	}

	// Triggers go with their function.
	if status, raw, _ := call(t, "DELETE", nodetest.Endpoint(n)+"/2015-03-31/functions/tf", ""); status != http.StatusNoContent {
		t.Fatalf("delete function: %d %s", status, raw)
	}
	if status, _, _ := call(t, "GET", base, ""); status != http.StatusNotFound {
		t.Errorf("list of a deleted function: status %d, want 404", status)
	}
}

func TestTriggersAPIBadInput(t *testing.T) {
	n := nodetest.Start(t, nil)
	createPy(t, client(n), "tf", pyZip(t))
	fns := nodetest.Endpoint(n) + "/nimbus/v1/functions/"
	base := fns + "tf/triggers"
	callJSON[api.TriggerView](t, "POST", base, kafkaTrigger, http.StatusCreated)
	kafka := func(extra string) string {
		return `{"name":"k","type":"kafka","config":{"brokers":["127.0.0.1:9092"],"topic":"t"}` + extra + `}`
	}
	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantType, wantMsg        string
	}{
		{"malformed JSON", "POST", "", `{"name":`, 400, "InvalidRequestContentException", "Could not parse"},
		{"empty body", "POST", "", ``, 400, "InvalidRequestContentException", "empty"},
		{"unknown field", "POST", "", kafka(`,"batchSizes":3`), 400, "InvalidRequestContentException", `unknown field "batchSizes"`},
		{"wrong field type", "POST", "", kafka(`,"batchSize":"ten"`), 400, "InvalidRequestContentException", "batchSize"},
		{"no name", "POST", "", `{"type":"kafka"}`, 400, "InvalidParameterValueException", "name is required"},
		{"bad name", "POST", "", `{"name":"a b","type":"kafka"}`, 400, "ValidationException", "triggerName"},
		{"no type", "POST", "", `{"name":"k"}`, 400, "InvalidParameterValueException", "type is required"},
		{"unknown type", "POST", "", `{"name":"k","type":"sqs"}`, 400, "InvalidParameterValueException", `"sqs" is not supported`},
		{"bad config", "POST", "", `{"name":"k","type":"kafka","config":{"topic":"t"}}`, 400, "InvalidParameterValueException", "brokers"},
		{"config unknown field", "POST", "", `{"name":"k","type":"kafka","config":{"brokers":["h:1"],"topic":"t","x":1}}`, 400, "InvalidParameterValueException", "kafka"},
		{"batch size 0", "POST", "", kafka(`,"batchSize":0`), 400, "ValidationException", "batchSize"},
		{"batch size too big", "POST", "", kafka(`,"batchSize":10001`), 400, "ValidationException", "batchSize"},
		{"window as a number", "POST", "", kafka(`,"batchWindow":5`), 400, "ValidationException", "duration string"},
		{"window not a duration", "POST", "", kafka(`,"batchWindow":"soon"`), 400, "ValidationException", "not a duration"},
		{"window too long", "POST", "", kafka(`,"batchWindow":"6m"`), 400, "ValidationException", "batchWindow"},
		{"retries too many", "POST", "", kafka(`,"maxRetries":101`), 400, "ValidationException", "maxRetries"},
		{"retries negative", "POST", "", kafka(`,"maxRetries":-1`), 400, "ValidationException", "maxRetries"},
		{"bad destination", "POST", "", kafka(`,"failureDestination":"ftp://x"`), 400, "InvalidParameterValueException", "destination"},
		{"duplicate name", "POST", "", kafkaTrigger, 409, "ResourceConflictException", "orders"},
		{"no function", "POST", "@nope/triggers", kafka(""), 404, "ResourceNotFoundException", "function:nope"},
		{"bad function name", "POST", "@bad%20name/triggers", kafka(""), 400, "ValidationException", "functionName"},
		{"get unknown", "GET", "/nope", "", 404, "ResourceNotFoundException", "no trigger named nope"},
		{"get bad trigger name", "GET", "/a.b", "", 400, "ValidationException", "triggerName"},
		{"change type", "PUT", "/orders", `{"type":"rabbitmq"}`, 400, "InvalidParameterValueException", "cannot be changed"},
		{"rename", "PUT", "/orders", `{"name":"other"}`, 400, "InvalidParameterValueException", "renamed"},
		{"update bad config", "PUT", "/orders", `{"config":{"brokers":[]}}`, 400, "InvalidParameterValueException", "brokers"},
		{"update unknown", "PUT", "/nope", `{}`, 404, "ResourceNotFoundException", "nope"},
		{"enable unknown", "POST", "/nope/enable", "", 404, "ResourceNotFoundException", "nope"},
		{"delete unknown", "DELETE", "/nope", "", 404, "ResourceNotFoundException", "nope"},
		{"oversized body", "POST", "", kafka(`,"failureDestination":"` + strings.Repeat("x", 1<<20) + `"`), 413, "RequestTooLargeException", "smaller than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := base + tt.path
			if p, ok := strings.CutPrefix(tt.path, "@"); ok {
				url = fns + p
			}
			status, raw, typ := call(t, tt.method, url, tt.body)
			var body struct{ Message string }
			_ = json.Unmarshal(raw, &body)
			if status != tt.wantStatus || typ != tt.wantType || !strings.Contains(body.Message, tt.wantMsg) {
				t.Errorf("got %d %s %q, want %d %s containing %q", status, typ, body.Message, tt.wantStatus, tt.wantType, tt.wantMsg)
			}
		})
	}
}
