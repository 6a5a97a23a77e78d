package api_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// TestFCCrossDialect: a function created in the Lambda dialect is read and
// invoked in Function Compute's, and one created in Function Compute's is
// invoked in Lambda's; an unknown operation answers Function Compute's
// error shape.
func TestFCCrossDialect(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	base := nodetest.Endpoint(n) + "/2023-03-30/functions"
	fcCall := func(method, url, body string, want int) []byte {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != want || res.Header.Get("X-Fc-Request-Id") == "" {
			t.Fatalf("%s %s = %d %s (x-fc-request-id %q), want %d", method, url, res.StatusCode, b, res.Header.Get("X-Fc-Request-Id"), want)
		}
		return b
	}
	createPy(t, c, "fromlambda", pyZip(t))
	waitActive(t, c, "fromlambda")
	var got struct {
		FunctionName, Runtime, CodeChecksum string
		CPU                                 float64
	}
	if err := json.Unmarshal(fcCall("GET", base+"/fromlambda", "", 200), &got); err != nil || got.FunctionName != "fromlambda" ||
		got.Runtime != "python3.11" || got.CodeChecksum == "" || got.CPU != 0.05 {
		t.Errorf("GetFunction of a Lambda-made function = %+v, %v", got, err)
	}
	if out := fcCall("POST", base+"/fromlambda/invocations", `{"a":1}`, 200); string(out) != `{"echo": {"a": 1}}` {
		t.Errorf("InvokeFunction = %s", out)
	}
	// Made in Function Compute's dialect, it has Function Compute's
	// conventions (its event is bytes, its answer returned as it is) in
	// either dialect.
	zip := base64.StdEncoding.EncodeToString(nodetest.Zip(t, map[string]string{"app.py": "def handler(event, context):\n    return b'fc:' + event\n"}))
	fcCall("POST", base, `{"functionName":"fromfc","runtime":"python3.11","handler":"app.handler","code":{"zipFile":"`+zip+`"}}`, 200)
	waitActive(t, c, "fromfc")
	out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("fromfc"), Payload: []byte(`{"b":2}`)})
	if err != nil || string(out.Payload) != `fc:{"b":2}` {
		t.Errorf("Lambda Invoke of an FC-made function = %s, %v", out.Payload, err)
	}
	var e struct{ Code, Message, RequestId string }
	if err := json.Unmarshal(fcCall("GET", nodetest.Endpoint(n)+"/2023-03-30/nothing", "", 404), &e); err != nil ||
		e.Code != "UnknownOperation" || e.RequestId == "" {
		t.Errorf("unknown operation: %+v, %v", e, err)
	}
	if err := json.Unmarshal(fcCall("GET", nodetest.Endpoint(n)+"/2023-03-30/layers", "", 501), &e); err != nil || e.Code != "NotImplemented" ||
		!strings.Contains(e.Message, "ListLayers") {
		t.Errorf("not-yet operation: %+v, %v", e, err)
	}
}
