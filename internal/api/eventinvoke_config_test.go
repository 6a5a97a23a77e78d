package api_test

import (
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/destination"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

const eiARN = "arn:aws:lambda:us-east-1:000000000000:function:"

func TestEventInvokeConfig(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	createPy(t, c, "ei", pyZip(t))
	createPy(t, c, "ei-next", pyZip(t))
	name := aws.String("ei")

	_, err := c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: name})
	wantNotFound(t, "Get before Put", err, "doesn't have an EventInvokeConfig")
	_, err = c.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: name, MaximumRetryAttempts: aws.Int32(1)})
	wantNotFound(t, "Update before Put", err, "doesn't have an EventInvokeConfig")

	before := time.Now().Add(-time.Second)
	put, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:             name,
		MaximumRetryAttempts:     aws.Int32(8),
		MaximumEventAgeInSeconds: aws.Int32(604800),
		DestinationConfig: &types.DestinationConfig{
			OnSuccess: &types.OnSuccess{Destination: aws.String(eiARN + "ei-next")},
			OnFailure: &types.OnFailure{Destination: aws.String("https://example.com/failed")},
		},
	})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if aws.ToString(put.FunctionArn) != eiARN+"ei:$LATEST" || aws.ToInt32(put.MaximumRetryAttempts) != 8 ||
		aws.ToInt32(put.MaximumEventAgeInSeconds) != 604800 || put.LastModified == nil || put.LastModified.Before(before) {
		t.Errorf("Put = arn %s, retries %d, age %d, modified %v", aws.ToString(put.FunctionArn),
			aws.ToInt32(put.MaximumRetryAttempts), aws.ToInt32(put.MaximumEventAgeInSeconds), put.LastModified)
	}
	get, err := c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String(eiARN + "ei")})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	wantDestinations(t, "Get", get.DestinationConfig, eiARN+"ei-next", "https://example.com/failed")

	// Update merges: the retries change, the rest stays.
	upd, err := c.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{
		FunctionName: name, MaximumRetryAttempts: aws.Int32(0),
		DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String("nats:results.failed")}},
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if aws.ToInt32(upd.MaximumRetryAttempts) != 0 || upd.MaximumRetryAttempts == nil || aws.ToInt32(upd.MaximumEventAgeInSeconds) != 604800 {
		t.Errorf("Update = retries %v, age %v; want 0 and 604800 kept", upd.MaximumRetryAttempts, upd.MaximumEventAgeInSeconds)
	}
	wantDestinations(t, "Update", upd.DestinationConfig, eiARN+"ei-next", "nats:results.failed")

	list, err := c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: name, MaxItems: aws.Int32(10)})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 1 || list.NextMarker != nil {
		t.Fatalf("List = %+v, %v; want one config", list, err)
	}

	// Put replaces everything.
	put, err = c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: name, MaximumEventAgeInSeconds: aws.Int32(60)})
	if err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if put.MaximumRetryAttempts != nil || aws.ToInt32(put.MaximumEventAgeInSeconds) != 60 {
		t.Errorf("second Put = retries %v, age %v; want retries unset", put.MaximumRetryAttempts, put.MaximumEventAgeInSeconds)
	}
	wantDestinations(t, "second Put", put.DestinationConfig, "", "")

	if _, err := c.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: name}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: name})
	wantNotFound(t, "Get after Delete", err, "doesn't have an EventInvokeConfig")
	_, err = c.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: name})
	wantNotFound(t, "second Delete", err, "doesn't have an EventInvokeConfig")
	list, err = c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: name})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 0 {
		t.Errorf("List after Delete = %+v, %v; want none", list, err)
	}
	_, err = c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("ghost"), MaximumRetryAttempts: aws.Int32(1)})
	wantNotFound(t, "Put on an unknown function", err, "Function not found")
}

func wantNotFound(t *testing.T, what string, err error, msg string) {
	t.Helper()
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || !strings.Contains(aws.ToString(nf.Message), msg) {
		t.Errorf("%s: %v; want ResourceNotFoundException mentioning %q", what, err, msg)
	}
}

func wantDestinations(t *testing.T, what string, dc *types.DestinationConfig, onSuccess, onFailure string) {
	t.Helper()
	if dc == nil || dc.OnSuccess == nil || dc.OnFailure == nil {
		t.Errorf("%s: DestinationConfig = %+v, want both sides", what, dc)
		return
	}
	if got := aws.ToString(dc.OnSuccess.Destination); got != onSuccess {
		t.Errorf("%s: OnSuccess = %q, want %q", what, got, onSuccess)
	}
	if got := aws.ToString(dc.OnFailure.Destination); got != onFailure {
		t.Errorf("%s: OnFailure = %q, want %q", what, got, onFailure)
	}
}

// rawJSON sends a request and decodes a successful answer into a map.
func rawJSON(t *testing.T, method, url, body string) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: answer is not a JSON object: %s", method, url, raw)
		}
	}
	return resp.StatusCode, m, string(raw)
}

func TestEventInvokeConfigNimbusFields(t *testing.T) {
	n := nodetest.Start(t, nil)
	createPy(t, client(n), "flow", pyZip(t))
	url := nodetest.Endpoint(n) + "/2019-09-25/functions/flow/event-invoke-config"
	status, got, raw := rawJSON(t, http.MethodPut, url,
		`{"NimbusMaxConcurrency":4,"NimbusMaxEventsPerSecond":2.5,"NimbusDestinationSecret":"hunter2-hunter2",
		  "DestinationConfig":{"OnFailure":{"Destination":"http://127.0.0.1:9/hook"}}}`)
	if status != http.StatusOK {
		t.Fatalf("Put: %d %s", status, raw)
	}
	if got["NimbusMaxConcurrency"] != 4.0 || got["NimbusMaxEventsPerSecond"] != 2.5 || got["NimbusDestinationSecretSet"] != true {
		t.Errorf("Put answer %s", raw)
	}
	if strings.Contains(raw, "hunter2") {
		t.Errorf("the answer shows the write-only secret: %s", raw)
	}
	if ts, ok := got["LastModified"].(float64); !ok || time.Since(time.Unix(int64(ts), 0)).Abs() > time.Minute {
		t.Errorf("LastModified = %v, want epoch seconds of now", got["LastModified"])
	}
	// Update without the secret keeps it; Put without it clears it.
	if status, got, raw = rawJSON(t, http.MethodPost, url, `{"NimbusMaxConcurrency":0}`); status != 200 ||
		got["NimbusDestinationSecretSet"] != true || got["NimbusMaxConcurrency"] != 0.0 || got["NimbusMaxEventsPerSecond"] != 2.5 {
		t.Errorf("Update: %d %s", status, raw)
	}
	if status, got, raw = rawJSON(t, http.MethodGet, url, ""); status != 200 || strings.Contains(raw, "hunter2") || got["NimbusDestinationSecretSet"] != true {
		t.Errorf("Get: %d %s", status, raw)
	}
	if status, got, raw = rawJSON(t, http.MethodPut, url, `{"MaximumRetryAttempts":1}`); status != 200 || got["NimbusDestinationSecretSet"] != false {
		t.Errorf("Put without the secret: %d %s", status, raw)
	}
}

// errorCase is a raw request and the Lambda error it must get.
type errorCase struct {
	name, method, url, body string
	wantStatus              int
	wantType, wantMsg       string
}

// checkErrors sends each case's request and checks its error.
func checkErrors(t *testing.T, tests []errorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, typ, msg := rawCall(t, tt.method, tt.url, tt.body)
			if status != tt.wantStatus || typ != tt.wantType {
				t.Errorf("got %d %s (%q), want %d %s", status, typ, msg, tt.wantStatus, tt.wantType)
			}
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message %q does not mention %q", msg, tt.wantMsg)
			}
		})
	}
}

func TestEventInvokeConfigBadInput(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	createPy(t, c, "bad", pyZip(t))
	createPy(t, c, "other", pyZip(t))
	base := nodetest.Endpoint(n) + "/2019-09-25/functions/"
	eic := base + "bad/event-invoke-config"
	dest := func(d string) string { return `{"DestinationConfig":{"OnFailure":{"Destination":"` + d + `"}}}` }
	tests := []errorCase{
		{"retries too many", "PUT", eic, `{"MaximumRetryAttempts":9}`, 400, "ValidationException", "less than or equal to 8"},
		{"retries negative", "PUT", eic, `{"MaximumRetryAttempts":-1}`, 400, "ValidationException", "maximumRetryAttempts"},
		{"age too short", "PUT", eic, `{"MaximumEventAgeInSeconds":59}`, 400, "ValidationException", "greater than or equal to 60"},
		{"age too long", "PUT", eic, `{"MaximumEventAgeInSeconds":604801}`, 400, "ValidationException", "604800"},
		{"concurrency negative", "PUT", eic, `{"NimbusMaxConcurrency":-1}`, 400, "ValidationException", "nimbusMaxConcurrency"},
		{"rate negative", "PUT", eic, `{"NimbusMaxEventsPerSecond":-1}`, 400, "ValidationException", "nimbusMaxEventsPerSecond"},
		{"no settings", "PUT", eic, `{}`, 400, "InvalidParameterValueException", "at least one"},
		{"no settings on update", "POST", eic, `{}`, 400, "InvalidParameterValueException", "at least one"},
		{"unknown field", "PUT", eic, `{"NimbusMaxConcurency":3}`, 400, "InvalidRequestContentException", "NimbusMaxConcurency"},
		{"wrong type", "PUT", eic, `{"MaximumRetryAttempts":"two"}`, 400, "InvalidRequestContentException", "MaximumRetryAttempts"},
		{"fractional retries", "PUT", eic, `{"MaximumRetryAttempts":1.5}`, 400, "InvalidRequestContentException", "MaximumRetryAttempts"},
		{"malformed JSON", "PUT", eic, `{"MaximumRetryAttempts":`, 400, "InvalidRequestContentException", "parse"},
		{"empty body", "PUT", eic, ``, 400, "InvalidRequestContentException", "empty"},
		{"not an object", "PUT", eic, `[1]`, 400, "InvalidRequestContentException", "object"},
		{"sqs destination", "PUT", eic, dest("arn:aws:sqs:us-east-1:000000000000:q"), 400, "InvalidParameterValueException", "sqs"},
		{"other region", "PUT", eic, dest("arn:aws:lambda:eu-west-1:000000000000:function:other"), 400, "InvalidParameterValueException", "region eu-west-1"},
		{"other account", "PUT", eic, dest("arn:aws:lambda:us-east-1:111111111111:function:other"), 400, "InvalidParameterValueException", "account 111111111111"},
		{"itself", "PUT", eic, dest("bad"), 400, "InvalidParameterValueException", "itself"},
		{"missing function", "PUT", eic, dest("ghost"), 400, "InvalidParameterValueException", "ghost does not exist"},
		{"bad URL", "PUT", eic, dest("https://"), 400, "InvalidParameterValueException", "no host"},
		{"ftp URL", "PUT", eic, dest("ftp://x/y"), 400, "InvalidParameterValueException", "nats:<subject>"},
		{"nats wildcard", "PUT", eic, dest("nats:a.>"), 400, "InvalidParameterValueException", "wildcards"},
		{"nats system subject", "POST", eic, dest("nats:$JS.API.x"), 400, "InvalidParameterValueException", "$"},
		{"unknown function put", "PUT", base + "ghost/event-invoke-config", `{"MaximumRetryAttempts":1}`, 404, "ResourceNotFoundException", "ghost"},
		{"unknown function update", "POST", base + "ghost/event-invoke-config", `{"MaximumRetryAttempts":1}`, 404, "ResourceNotFoundException", "ghost"},
		{"unknown function get", "GET", base + "ghost/event-invoke-config", ``, 404, "ResourceNotFoundException", "ghost"},
		{"unknown function delete", "DELETE", base + "ghost/event-invoke-config", ``, 404, "ResourceNotFoundException", "ghost"},
		{"unknown function list", "GET", base + "ghost/event-invoke-config/list", ``, 404, "ResourceNotFoundException", "ghost"},
		{"bad function name", "GET", base + "bad%20name!/event-invoke-config", ``, 400, "ValidationException", "functionName"},
		{"unknown alias", "GET", eic + "?Qualifier=prod", ``, 404, "ResourceNotFoundException", "bad:prod"},
		{"list max items 0", "GET", eic + "/list?MaxItems=0", ``, 400, "ValidationException", "maxItems"},
		{"list max items 51", "GET", eic + "/list?MaxItems=51", ``, 400, "ValidationException", "maxItems"},
		{"list max items text", "GET", eic + "/list?MaxItems=ten", ``, 400, "ValidationException", "maxItems"},
		{"list unknown marker", "GET", eic + "/list?Marker=xyz", ``, 400, "InvalidParameterValueException", "Marker"},
	}
	checkErrors(t, tests)
	// Nothing was written by the bad requests.
	_, err := c.GetFunctionEventInvokeConfig(t.Context(), &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("bad")})
	wantNotFound(t, "Get after bad requests", err, "doesn't have an EventInvokeConfig")
}

// pyFailing fails an event that asks it to, and answers the others.
const pyFailing = "def handler(event, context):\n    if event.get('fail'):\n        raise Exception('asked to fail')\n    return {'ok': True}\n"

// hookRecord is a destination delivery a webhook received: its path, the
// function ARN of its record, and whether it was signed with the secret.
type hookRecord struct {
	path, arn string
	signed    bool
}

// signedHooks is a webhook destination that keeps every delivery and
// refuses those not signed with secret.
func signedHooks(t *testing.T, secret string) (string, chan hookRecord) {
	got := make(chan hookRecord, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var rec struct {
			RequestContext struct{ FunctionArn string } `json:"requestContext"`
		}
		_ = json.Unmarshal(b, &rec)
		err := destination.Verify(secret, r.Header, b, time.Now(), time.Minute)
		got <- hookRecord{r.URL.Path, rec.RequestContext.FunctionArn, err == nil}
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, got
}

// waitFinal polls an async task until it is final.
func waitFinal(t *testing.T, n *node.Node, fn, id string) nimbus.Task {
	t.Helper()
	url := nodetest.Endpoint(n) + "/nimbus/v1/functions/" + fn + "/tasks/" + id
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		task := callJSON[nimbus.Task](t, "GET", url, "", http.StatusOK)
		if nimbus.TaskFinal(task.Status) {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s of %s: %+v, not final", id, fn, task)
		}
	}
}

// TestEventInvokeConfigQualifiers: $LATEST, version 1 and alias live have
// configs of their own; an async event on live follows live's (no retry,
// its own failure destination and secret) while $LATEST's destination
// gets nothing; List pages them all; a version's or alias's config goes
// with it, and all go with the function.
func TestEventInvokeConfigQualifiers(t *testing.T) {
	n := nodetest.Start(t, func(c *node.Config) { c.AsyncRetryBase = 20 * time.Millisecond })
	c := client(n)
	ctx := t.Context()
	const name = "eiq"
	setup := func() {
		createPy(t, c, name, nodetest.Zip(t, map[string]string{"app.py": pyFailing}))
		waitActive(t, c, name)
		if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
		for _, alias := range []string{"live", "idle"} {
			if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String(alias), FunctionVersion: aws.String("1")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	setup()
	hook, deliveries := signedHooks(t, "live-secret")
	failTo := func(path string) *types.DestinationConfig {
		return &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(hook + path)}}
	}
	puts := []struct {
		fn, q   string
		retries int32
		age     int32
	}{
		{name, "", 2, 3600},
		{name, "1", 1, 120},
		{name + ":live", "", 0, 60}, // the qualifier in the name, as Lambda takes it
	}
	for _, p := range puts {
		in := &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(p.fn), MaximumRetryAttempts: aws.Int32(p.retries),
			MaximumEventAgeInSeconds: aws.Int32(p.age), DestinationConfig: failTo("/" + cmp.Or(p.q, p.fn))}
		if p.q != "" {
			in.Qualifier = aws.String(p.q)
		}
		if _, err := c.PutFunctionEventInvokeConfig(ctx, in); err != nil {
			t.Fatalf("Put %s qualifier %q: %v", p.fn, p.q, err)
		}
	}
	// live's secret, a Nimbus field: the deliveries of live are signed with it.
	url := nodetest.Endpoint(n) + "/2019-09-25/functions/" + name + "/event-invoke-config"
	if status, got, raw := rawJSON(t, http.MethodPost, url+"?Qualifier=live", `{"NimbusDestinationSecret":"live-secret"}`); status != 200 ||
		got["NimbusDestinationSecretSet"] != true || got["FunctionArn"] != eiARN+name+":live" || got["MaximumRetryAttempts"] != 0.0 {
		t.Fatalf("Update live: %d %s", status, raw)
	}
	for _, w := range []struct {
		q, arn       string
		retries, age int32
	}{
		{"", eiARN + name + ":$LATEST", 2, 3600},
		{"$LATEST", eiARN + name + ":$LATEST", 2, 3600},
		{"1", eiARN + name + ":1", 1, 120},
		{"live", eiARN + name + ":live", 0, 60},
	} {
		in := &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String(name)}
		if w.q != "" {
			in.Qualifier = aws.String(w.q)
		}
		got, err := c.GetFunctionEventInvokeConfig(ctx, in)
		if err != nil || aws.ToString(got.FunctionArn) != w.arn || aws.ToInt32(got.MaximumRetryAttempts) != w.retries ||
			aws.ToInt32(got.MaximumEventAgeInSeconds) != w.age {
			t.Errorf("Get %q = %+v, %v; want %s with retries %d, age %d", w.q, got, err, w.arn, w.retries, w.age)
		}
	}

	// An event on live: one attempt (live's 0 retries), failure to live's
	// destination, signed with live's secret; $LATEST's gets nothing.
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Qualifier: aws.String("live"),
		InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"fail":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	if task := waitFinal(t, n, name, id); task.Status != nimbus.TaskFailed || task.Attempts != 1 || task.DestinationStatus != "Delivered" ||
		task.Destination != hook+"/"+name+":live" {
		t.Errorf("task of the event on live = %+v; want Failed after 1 attempt, delivered to live's destination", task)
	}
	select {
	case d := <-deliveries:
		if d.path != "/"+name+":live" || d.arn != eiARN+name+":live" || !d.signed {
			t.Errorf("delivery = %+v; want live's destination, with live's ARN, signed with live's secret", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("live's failure destination got nothing")
	}
	select {
	case d := <-deliveries:
		t.Errorf("another delivery: %+v", d)
	default:
	}

	// List: $LATEST, the version, the alias; paged.
	var arns []string
	var marker *string
	for page := 0; ; page++ {
		list, err := c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String(name), MaxItems: aws.Int32(2), Marker: marker})
		if err != nil || page > 2 {
			t.Fatalf("List page %d: %+v, %v", page, list, err)
		}
		for _, cfg := range list.FunctionEventInvokeConfigs {
			arns = append(arns, strings.TrimPrefix(aws.ToString(cfg.FunctionArn), eiARN))
		}
		if marker = list.NextMarker; marker == nil {
			break
		}
	}
	if got, want := strings.Join(arns, " "), name+":$LATEST "+name+":1 "+name+":live"; got != want {
		t.Errorf("List = %s, want %s", got, want)
	}

	// Deleting the alias, then the version, deletes their configs.
	if _, err := c.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String(name), Name: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String(name), Qualifier: aws.String("live")})
	wantNotFound(t, "Get live after its alias was deleted and created again", err, "function "+eiARN+name+":live doesn't have an EventInvokeConfig")
	for _, alias := range []string{"live", "idle"} {
		if _, err := c.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String(name), Name: aws.String(alias)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name), Qualifier: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String(name)})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 1 || aws.ToString(list.FunctionEventInvokeConfigs[0].FunctionArn) != eiARN+name+":$LATEST" {
		t.Errorf("List after deleting the version and the aliases = %+v, %v; want $LATEST's alone", list, err)
	}

	// Deleting the function deletes them all: a function created again
	// under its name, with version 1 and alias live again, has none.
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"), FunctionVersion: aws.String("$LATEST")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(name), Qualifier: aws.String("live"), MaximumRetryAttempts: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	setup()
	list, err = c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String(name)})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 0 {
		t.Errorf("List of the function created again = %+v, %v; want none", list, err)
	}
}

// TestEventInvokeConfigBadQualifiers: versions and aliases that do not
// exist, a name and a Qualifier that disagree, a malformed qualifier, a
// qualifier without a config, and flow control on a qualifier.
func TestEventInvokeConfigBadQualifiers(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	createPy(t, c, "bq", pyZip(t))
	waitActive(t, c, "bq")
	if _, err := c.PublishVersion(t.Context(), &lambda.PublishVersionInput{FunctionName: aws.String("bq")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(t.Context(), &lambda.CreateAliasInput{FunctionName: aws.String("bq"), Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	base := nodetest.Endpoint(n) + "/2019-09-25/functions/"
	eic := base + "bq/event-invoke-config"
	retries := `{"MaximumRetryAttempts":1}`
	tests := []errorCase{
		{"missing version put", "PUT", eic + "?Qualifier=2", retries, 404, "ResourceNotFoundException", "Function not found: " + eiARN + "bq:2"},
		{"version not as Nimbus writes it", "PUT", eic + "?Qualifier=01", retries, 404, "ResourceNotFoundException", "Function not found: " + eiARN + "bq:01"},
		{"missing alias put", "PUT", eic + "?Qualifier=nope", retries, 404, "ResourceNotFoundException", "Function not found: " + eiARN + "bq:nope"},
		{"missing alias in the name", "PUT", base + "bq:nope/event-invoke-config", retries, 404, "ResourceNotFoundException", eiARN + "bq:nope"},
		{"missing version update", "POST", eic + "?Qualifier=7", retries, 404, "ResourceNotFoundException", eiARN + "bq:7"},
		{"missing version get", "GET", eic + "?Qualifier=7", ``, 404, "ResourceNotFoundException", eiARN + "bq:7"},
		{"missing alias delete", "DELETE", eic + "?Qualifier=nope", ``, 404, "ResourceNotFoundException", eiARN + "bq:nope"},
		{"missing function, qualified", "GET", base + "ghost/event-invoke-config?Qualifier=live", ``, 404, "ResourceNotFoundException", "ghost:live"},
		{"name and qualifier disagree", "PUT", base + "bq:live/event-invoke-config?Qualifier=1", retries, 400, "InvalidParameterValueException", "does not match the specified qualifier"},
		{"ARN and qualifier disagree", "GET", base + eiARN + "bq:1/event-invoke-config?Qualifier=live", ``, 400, "InvalidParameterValueException", "does not match"},
		{"malformed qualifier", "PUT", eic + "?Qualifier=li.ve", retries, 400, "ValidationException", "qualifier"},
		{"no config on the alias", "GET", eic + "?Qualifier=live", ``, 404, "ResourceNotFoundException", eiARN + "bq:live doesn't have an EventInvokeConfig"},
		{"no config to update", "POST", eic + "?Qualifier=1", retries, 404, "ResourceNotFoundException", eiARN + "bq:1 doesn't have an EventInvokeConfig"},
		{"no config to delete", "DELETE", base + "bq:live/event-invoke-config", ``, 404, "ResourceNotFoundException", "bq:live doesn't have"},
		{"concurrency on an alias", "PUT", eic + "?Qualifier=live", `{"NimbusMaxConcurrency":2}`, 400, "InvalidParameterValueException", "NimbusMaxConcurrency"},
		{"rate on a version", "PUT", eic + "?Qualifier=1", `{"MaximumRetryAttempts":0,"NimbusMaxEventsPerSecond":5}`, 400, "InvalidParameterValueException", "function's own config"},
	}
	checkErrors(t, tests)
	list, err := c.ListFunctionEventInvokeConfigs(t.Context(), &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("bq")})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 0 {
		t.Errorf("List after bad requests = %+v, %v; want none written", list, err)
	}
}
