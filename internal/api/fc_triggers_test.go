package api_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// fcTriggerOut is the part of Function Compute's Trigger the tests read.
type fcTriggerOut struct {
	TriggerName, TriggerType, TriggerConfig, TriggerID, Qualifier, Description, Status string
	CreatedTime, LastModifiedTime                                                      string
	HTTPTrigger                                                                        *struct{ URLInternet, URLIntranet string } `json:"httpTrigger"`
}

// fcPrintEvent prints the event it gets (bytes of JSON: it is made in
// Function Compute's dialect) as JSON and answers it.
const fcPrintEvent = `import json
def handler(event, context):
    event = json.loads(event)
    print("EVENT " + json.dumps(event, sort_keys=True))
    if event.get("rawPath") == "/structured":
        return {"statusCode": 201, "headers": {"X-Fc-Test": "yes"}, "body": "bWFkZQ==", "isBase64Encoded": True}
    if event.get("rawPath") == "/plain":
        return "just text"
    return {"echo": event}
`

// TestFCTriggers: an http trigger is a function URL that answers on this
// node (its methods only), a timer fires with Function Compute's timer
// event, Get/List/Update/Delete show and change them in Function Compute's
// shape, and what Nimbus cannot do is refused by name.
func TestFCTriggers(t *testing.T) {
	n := nodetest.Start(t, nil)
	fc := newFCAPI(t, n)
	c := client(n)
	zip := base64.StdEncoding.EncodeToString(nodetest.Zip(t, map[string]string{"app.py": fcPrintEvent}))
	fc.do("POST", "/functions", `{"functionName":"trg","runtime":"python3.11","handler":"app.handler","code":{"zipFile":"`+zip+`"}}`, 200)
	waitActive(t, c, "trg")

	var h fcTriggerOut
	fc.json("POST", "/functions/trg/triggers", `{"triggerName":"web","triggerType":"http","description":"the URL",
		"triggerConfig":"{\"authType\":\"anonymous\",\"methods\":[\"GET\",\"post\"]}"}`, 200, &h)
	if h.TriggerName != "web" || h.TriggerType != "http" || h.TriggerID == "" || h.Qualifier != "LATEST" || h.Description != "the URL" ||
		h.HTTPTrigger == nil || h.HTTPTrigger.URLInternet != nodetest.Endpoint(n)+"/fn/trg/" || h.CreatedTime == "" {
		t.Fatalf("CreateTrigger http = %+v %+v", h, h.HTTPTrigger)
	}
	var hc struct {
		AuthType string
		Methods  []string
	}
	if err := json.Unmarshal([]byte(h.TriggerConfig), &hc); err != nil || hc.AuthType != "anonymous" || strings.Join(hc.Methods, ",") != "GET,POST" {
		t.Errorf("http triggerConfig = %s (%v)", h.TriggerConfig, err)
	}
	res, err := http.Post(h.HTTPTrigger.URLInternet+"p?x=1", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `"rawPath": "/p"`) || !strings.Contains(string(b), `"body": "hello"`) {
		t.Errorf("POST through the http trigger = %d %s", res.StatusCode, b)
	}
	// Function Compute's http trigger event (payload version v1) and its
	// answers: structured, or the handler's bytes as they are.
	var ev struct {
		Echo struct {
			Version         string
			Headers         map[string]string
			QueryParameters map[string]string
			RequestContext  struct {
				DomainPrefix, TimeEpoch string
				HTTP                    struct{ Method, Path string }
			}
		}
	}
	if err := json.Unmarshal(b, &ev); err != nil || ev.Echo.Version != "v1" || ev.Echo.QueryParameters["x"] != "1" ||
		ev.Echo.Headers["Content-Type"] != "text/plain" || ev.Echo.RequestContext.HTTP.Method != "POST" ||
		ev.Echo.RequestContext.HTTP.Path != "/p" || ev.Echo.RequestContext.TimeEpoch == "" || ev.Echo.RequestContext.DomainPrefix != "trg" {
		t.Errorf("Function Compute's http trigger event = %s (%v)", b, err)
	}
	for path, want := range map[string]struct {
		status      int
		body, ctype string
	}{"structured": {201, "made", ""}, "plain": {200, "just text", "text/plain; charset=utf-8"}} {
		res, err := http.Get(h.HTTPTrigger.URLInternet + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want.status || string(b) != want.body || want.ctype != "" && res.Header.Get("Content-Type") != want.ctype ||
			path == "structured" && res.Header.Get("X-Fc-Test") != "yes" {
			t.Errorf("GET /%s through the http trigger = %d %q %v", path, res.StatusCode, b, res.Header)
		}
	}
	req, _ := http.NewRequestWithContext(t.Context(), "PUT", h.HTTPTrigger.URLInternet, nil)
	if res, err = http.DefaultClient.Do(req); err != nil || res.StatusCode != 405 || res.Header.Get("Allow") != "GET, POST" {
		t.Errorf("PUT through a GET, POST trigger = %v, %v", res, err)
	}
	res.Body.Close()

	var tm fcTriggerOut
	fc.json("POST", "/functions/trg/triggers", `{"triggerName":"tick","triggerType":"timer",
		"triggerConfig":"{\"cronExpression\":\"@every 1s\",\"enable\":true,\"payload\":\"hi\"}"}`, 200, &tm)
	if tm.TriggerConfig != `{"cronExpression":"@every 1s","enable":true,"payload":"hi"}` || tm.Status != "Enabled" || tm.HTTPTrigger != nil {
		t.Errorf("CreateTrigger timer = %+v", tm)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		logs := getLogs(t, n, "trg", url.Values{"filter": {`"triggerName": "tick"`}})
		if len(logs) > 0 && strings.Contains(logs[0].Line, `EVENT {"payload": "hi", "triggerName": "tick", "triggerTime": "20`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no timer event in the logs: %+v", logs)
		}
	}
	fc.json("PUT", "/functions/trg/triggers/tick", `{"triggerConfig":"{\"cronExpression\":\"CRON_TZ=Asia/Shanghai 0 0 4 * * *\",\"enable\":false,\"payload\":\"x\"}","description":"nightly"}`, 200, &tm)
	if tm.TriggerConfig != `{"cronExpression":"CRON_TZ=Asia/Shanghai 0 0 4 * * *","enable":false,"payload":"x"}` || tm.Status != "Disabled" || tm.Description != "nightly" {
		t.Errorf("UpdateTrigger timer = %+v", tm)
	}
	var got fcTriggerOut
	fc.json("GET", "/functions/trg/triggers/tick", "", 200, &got)
	if got.TriggerConfig != tm.TriggerConfig || got.TriggerID != tm.TriggerID {
		t.Errorf("GetTrigger = %+v, want %+v", got, tm)
	}
	var list struct {
		Triggers  []fcTriggerOut
		NextToken string
	}
	fc.json("GET", "/functions/trg/triggers?limit=1", "", 200, &list)
	if len(list.Triggers) != 1 || list.Triggers[0].TriggerName != "tick" || list.NextToken != "web" {
		t.Errorf("ListTriggers page 1 = %+v", list)
	}
	list.NextToken = ""
	fc.json("GET", "/functions/trg/triggers?nextToken=web", "", 200, &list)
	if len(list.Triggers) != 1 || list.Triggers[0].TriggerName != "web" || list.NextToken != "" {
		t.Errorf("ListTriggers page 2 = %+v", list)
	}

	// Nimbus's own types take Nimbus's config; secrets are shown redacted
	// and kept when the redacted config is sent back.
	var s3 fcTriggerOut
	fc.json("POST", "/functions/trg/triggers", `{"triggerName":"up","triggerType":"s3","triggerConfig":"{\"bucket\":\"b\",\"secret\":\"s3cr3t-value-123\"}"}`, 200, &s3)
	if s3.TriggerType != "s3" || strings.Contains(s3.TriggerConfig, "s3cr3t") || !strings.Contains(s3.TriggerConfig, `"bucket":"b"`) {
		t.Errorf("CreateTrigger s3 = %+v", s3)
	}
	fc.json("PUT", "/functions/trg/triggers/up", `{"triggerConfig":`+jsonString(s3.TriggerConfig)+`,"description":"kept"}`, 200, &s3)
	if s3.Description != "kept" || strings.Contains(s3.TriggerConfig, "s3cr3t") {
		t.Errorf("UpdateTrigger s3 with its shown config = %+v", s3)
	}
	fc.fails("POST", "/functions/trg/triggers", `{"triggerName":"k","triggerType":"kafka","triggerConfig":"{\"nope\":1}"}`, 400, "InvalidArgument", "nope")
	fc.do("DELETE", "/functions/trg/triggers/up", "", 204)

	const create = "/functions/trg/triggers"
	for _, b := range []struct{ body, msg string }{
		{`{"triggerType":"http","triggerConfig":"{}"}`, "triggerName is required"},
		{`{"triggerName":"x","triggerType":"oss","triggerConfig":"{}"}`, `"oss" is not supported by Nimbus`},
		{`{"triggerName":"x","triggerType":"eventbridge","triggerConfig":"{}"}`, "EventBridge"},
		{`{"triggerName":"x","triggerType":"mns_topic","triggerConfig":"{}"}`, "MNS"},
		{`{"triggerName":"x","triggerType":"nope","triggerConfig":"{}"}`, "http and timer"},
		{`{"triggerName":"x","triggerType":"http","triggerConfig":"{\"authType\":\"jwt\",\"methods\":[\"GET\"]}"}`, "triggerConfig.authType"},
		{`{"triggerName":"x","triggerType":"http","triggerConfig":"{\"authType\":\"anonymous\"}"}`, "triggerConfig.methods"},
		{`{"triggerName":"x","triggerType":"http","triggerConfig":"{\"authType\":\"anonymous\",\"methods\":[\"FETCH\"]}"}`, "methods"},
		{`{"triggerName":"x","triggerType":"http","triggerConfig":"{\"authType\":\"anonymous\",\"methods\":[\"GET\"],\"disableURLInternet\":true}"}`, "disableURLInternet"},
		{`{"triggerName":"x","triggerType":"timer","triggerConfig":"{\"cronExpression\":\"0 4 * * *\"}"}`, "six fields"},
		{`{"triggerName":"x","triggerType":"timer","triggerConfig":"{\"cronExpression\":\"0 0 4 L * *\"}"}`, "cronExpression"},
		{`{"triggerName":"x","triggerType":"timer","triggerConfig":"{\"cronExpression\":\"CRON_TZ=Mars/Base 0 0 4 * * *\"}"}`, "timezone"},
		{`{"triggerName":"x","triggerType":"timer","triggerConfig":"{\"cronExpression\":\"@every 1x\"}"}`, "cronExpression"},
		{`{"triggerName":"x","triggerType":"timer","triggerConfig":"{\"cronExpression\":\"@every 1m\",\"bogus\":1}"}`, "bogus"},
		{`{"triggerName":"x","triggerType":"timer","triggerConfig":"not json"}`, "triggerConfig is not valid"},
		{`{"triggerName":"x","triggerType":"timer","triggerConfig":"{\"cronExpression\":\"@every 1m\"}","invocationRole":"acs:ram::1:role/r"}`, "invocationRole"},
		{`{"triggerName":"x","triggerType":"http","qualifier":"1","triggerConfig":"{\"authType\":\"anonymous\",\"methods\":[\"GET\"]}"}`, "takes an alias"},
	} {
		fc.fails("POST", create, b.body, 400, "InvalidArgument", b.msg)
	}
	fc.fails("POST", create, `{"triggerName":"tick","triggerType":"timer","triggerConfig":"{\"cronExpression\":\"@every 1m\"}"}`, 409, "TriggerAlreadyExists", "tick")
	fc.fails("POST", create, `{"triggerName":"web2","triggerType":"http","triggerConfig":"{\"authType\":\"anonymous\",\"methods\":[\"GET\"]}"}`, 409, "TriggerAlreadyExists", "one URL")
	fc.fails("POST", create, `{"triggerName":"x","triggerType":"timer","qualifier":"nope","triggerConfig":"{\"cronExpression\":\"@every 1m\"}"}`, 404, "AliasNotFound", "nope")
	fc.fails("PUT", "/functions/trg/triggers/tick", `{"triggerType":"http"}`, 400, "InvalidArgument", "cannot be changed")
	fc.fails("GET", "/functions/trg/triggers/none", "", 404, "TriggerNotFound", "none")
	fc.fails("GET", "/functions/none/triggers", "", 404, "FunctionNotFound", "none")

	fc.do("DELETE", "/functions/trg/triggers/web", "", 204)
	fc.do("DELETE", "/functions/trg/triggers/tick", "", 204)
	fc.fails("DELETE", "/functions/trg/triggers/web", "", 404, "TriggerNotFound", "web")
	if res, err := http.Get(h.HTTPTrigger.URLInternet); err != nil || res.StatusCode != 404 {
		t.Errorf("the URL after DeleteTrigger = %v, %v", res, err)
	} else {
		res.Body.Close()
	}
}
