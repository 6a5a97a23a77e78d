package api_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

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

func TestEventInvokeConfigBadInput(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	createPy(t, c, "bad", pyZip(t))
	createPy(t, c, "other", pyZip(t))
	base := nodetest.Endpoint(n) + "/2019-09-25/functions/"
	eic := base + "bad/event-invoke-config"
	dest := func(d string) string { return `{"DestinationConfig":{"OnFailure":{"Destination":"` + d + `"}}}` }
	tests := []struct {
		name, method, url, body string
		wantStatus              int
		wantType, wantMsg       string
	}{
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
		{"other qualifier", "GET", eic + "?Qualifier=prod", ``, 404, "ResourceNotFoundException", "$LATEST"},
		{"list max items 0", "GET", eic + "/list?MaxItems=0", ``, 400, "ValidationException", "maxItems"},
		{"list max items 51", "GET", eic + "/list?MaxItems=51", ``, 400, "ValidationException", "maxItems"},
		{"list max items text", "GET", eic + "/list?MaxItems=ten", ``, 400, "ValidationException", "maxItems"},
		{"list unknown marker", "GET", eic + "/list?Marker=xyz", ``, 400, "InvalidParameterValueException", "Marker"},
	}
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
	// Nothing was written by the bad requests.
	_, err := c.GetFunctionEventInvokeConfig(t.Context(), &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("bad")})
	wantNotFound(t, "Get after bad requests", err, "doesn't have an EventInvokeConfig")
}
