package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

var latest = aws.String("$LATEST")

// TestProvisionedConcurrency: Put, Get, List and Delete of provisioned
// concurrency through aws-sdk-go-v2, with Lambda's shapes and errors.
func TestProvisionedConcurrency(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	createPy(t, c, "warm", pyZip(t))
	name := aws.String("warm")

	// None yet: Get is not found, List is empty.
	_, err := c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: name, Qualifier: latest})
	var pnf *types.ProvisionedConcurrencyConfigNotFoundException
	if !errors.As(err, &pnf) {
		t.Errorf("Get without a config: %v, want ProvisionedConcurrencyConfigNotFoundException", err)
	}
	list, err := c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: name})
	if err != nil || list.ProvisionedConcurrencyConfigs == nil || len(list.ProvisionedConcurrencyConfigs) != 0 || list.NextMarker != nil {
		t.Fatalf("List without a config: %+v, %v; want an empty list", list, err)
	}

	put, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: name, Qualifier: latest, ProvisionedConcurrentExecutions: aws.Int32(2),
	})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if aws.ToInt32(put.RequestedProvisionedConcurrentExecutions) != 2 || put.Status == "" || aws.ToString(put.LastModified) == "" {
		t.Errorf("Put answered %+v", put)
	}
	// The node warms two instances: the config becomes READY.
	deadline, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		got, err := c.GetProvisionedConcurrencyConfig(deadline, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: name, Qualifier: latest})
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.Status == types.ProvisionedConcurrencyStatusEnumReady {
			if aws.ToInt32(got.AvailableProvisionedConcurrentExecutions) != 2 || aws.ToInt32(got.AllocatedProvisionedConcurrentExecutions) != 2 {
				t.Errorf("READY with %+v", got)
			}
			break
		}
		if deadline.Err() != nil {
			t.Fatalf("still %s: %+v", got.Status, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	list, err = c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: name, MaxItems: aws.Int32(50)})
	if err != nil || len(list.ProvisionedConcurrencyConfigs) != 1 {
		t.Fatalf("List: %+v, %v", list, err)
	}
	if item := list.ProvisionedConcurrencyConfigs[0]; aws.ToString(item.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:warm:$LATEST" ||
		aws.ToInt32(item.RequestedProvisionedConcurrentExecutions) != 2 || item.Status != types.ProvisionedConcurrencyStatusEnumReady {
		t.Errorf("List item %+v", item)
	}
	p := lambda.NewListProvisionedConcurrencyConfigsPaginator(c, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: name})
	pages := 0
	for p.HasMorePages() {
		if _, err := p.NextPage(ctx); err != nil {
			t.Fatal(err)
		}
		pages++
	}
	if pages != 1 {
		t.Errorf("the paginator read %d pages, want 1", pages)
	}

	if _, err := c.DeleteProvisionedConcurrencyConfig(ctx, &lambda.DeleteProvisionedConcurrencyConfigInput{FunctionName: name, Qualifier: latest}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: name, Qualifier: latest})
	if !errors.As(err, &pnf) {
		t.Errorf("Get after Delete: %v, want ProvisionedConcurrencyConfigNotFoundException", err)
	}
	_, err = c.DeleteProvisionedConcurrencyConfig(ctx, &lambda.DeleteProvisionedConcurrencyConfigInput{FunctionName: name, Qualifier: latest})
	wantAPIError(t, err, "ResourceNotFoundException", "No Provisioned Concurrency Config")
	if list, err := c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: name}); err != nil || len(list.ProvisionedConcurrencyConfigs) != 0 {
		t.Errorf("List after Delete: %+v, %v", list, err)
	}
}

// TestProvisionedConcurrencyBadInput: qualifier rules, values out of range,
// more than the reserved concurrency, unknown functions and bad list
// queries are refused with Lambda's error types, and change nothing.
func TestProvisionedConcurrencyBadInput(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	createPy(t, c, "pc", pyZip(t))
	name := aws.String("pc")
	put := func(fn *string, q *string, v int32) error {
		_, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: fn, Qualifier: q, ProvisionedConcurrentExecutions: aws.Int32(v)})
		return err
	}
	wantAPIError(t, put(name, aws.String("prod"), 1), "ResourceNotFoundException", "function:pc:prod")
	wantAPIError(t, put(name, aws.String("1"), 1), "ResourceNotFoundException", "function:pc:1")
	wantAPIError(t, put(name, latest, 0), "ValidationException", "Value '0' at 'provisionedConcurrentExecutions'")
	wantAPIError(t, put(name, latest, -3), "ValidationException", "greater than or equal to 1")
	wantAPIError(t, put(aws.String("nope"), latest, 1), "ResourceNotFoundException", "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope")
	if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: name, ReservedConcurrentExecutions: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, put(name, latest, 3), "InvalidParameterValueException", "should not be greater than the reservedConcurrentExecution")
	_, err := c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: name, Qualifier: aws.String("live")})
	wantAPIError(t, err, "ResourceNotFoundException", "function:pc:live")
	_, err = c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("nope"), Qualifier: latest})
	wantAPIError(t, err, "ResourceNotFoundException", "Function not found")
	_, err = c.DeleteProvisionedConcurrencyConfig(ctx, &lambda.DeleteProvisionedConcurrencyConfigInput{FunctionName: name, Qualifier: aws.String("live")})
	wantAPIError(t, err, "ResourceNotFoundException", "function:pc:live")
	_, err = c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: aws.String("nope")})
	wantAPIError(t, err, "ResourceNotFoundException", "Function not found")
	_, err = c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: name, MaxItems: aws.Int32(51)})
	wantAPIError(t, err, "ValidationException", "maxItems")
	_, err = c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: name, Marker: aws.String("x")})
	wantAPIError(t, err, "InvalidParameterValueException", "Marker")

	// What the SDKs would not send.
	base := nodetest.Endpoint(n) + "/2019-09-30/functions/pc/provisioned-concurrency"
	for _, tt := range []struct{ method, query, body, typ, msg string }{
		{"PUT", "", `{"ProvisionedConcurrentExecutions":1}`, "ValidationException", "Value null at 'qualifier'"},
		{"PUT", "?Qualifier=", `{"ProvisionedConcurrentExecutions":1}`, "ValidationException", "Value null at 'qualifier'"},
		{"PUT", "?Qualifier=a.b", `{"ProvisionedConcurrentExecutions":1}`, "ValidationException", "regular expression pattern"},
		{"PUT", "?Qualifier=$LATEST", `{}`, "ValidationException", "Value null at 'provisionedConcurrentExecutions'"},
		{"PUT", "?Qualifier=$LATEST", `{"ProvisionedConcurrentExecutions":99999999999}`, "ValidationException", "less than or equal to 2147483647"},
		{"PUT", "?Qualifier=$LATEST", `{"ProvisionedConcurrentExecutions":"2"}`, "InvalidRequestContentException", "ProvisionedConcurrentExecutions"},
		{"PUT", "?Qualifier=$LATEST", `{"ProvisionedConcurrentExecutions":1,"Extra":true}`, "InvalidRequestContentException", "unknown field"},
		{"GET", "", "", "ValidationException", "Value null at 'qualifier'"},
		{"DELETE", "", "", "ValidationException", "Value null at 'qualifier'"},
		{"GET", "?List=SOME", "", "ValidationException", "[ALL]"},
		{"GET", "?List=ALL&MaxItems=0", "", "ValidationException", "maxItems"},
	} {
		status, typ, msg := rawCall(t, tt.method, base+tt.query, tt.body)
		if status != http.StatusBadRequest || typ != tt.typ || !strings.Contains(msg, tt.msg) {
			t.Errorf("%s %s %s: %d %s %q, want 400 %s containing %q", tt.method, tt.query, tt.body, status, typ, msg, tt.typ, tt.msg)
		}
	}
	if list, err := c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: name}); err != nil || len(list.ProvisionedConcurrencyConfigs) != 0 {
		t.Errorf("refused requests left a config: %+v, %v", list, err)
	}
}

// TestInvokeAsyncLegacy: Lambda's deprecated InvokeAsync answers 202 with
// {"Status": 202} and runs the event as an asynchronous invocation.
func TestInvokeAsyncLegacy(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	createPy(t, c, "old", pyZip(t))

	out, err := c.InvokeAsync(ctx, &lambda.InvokeAsyncInput{FunctionName: aws.String("old"), InvokeArgs: strings.NewReader(`{"legacy": true}`)})
	if err != nil {
		t.Fatalf("InvokeAsync: %v", err)
	}
	if out.Status != 202 {
		t.Errorf("Status = %d, want 202", out.Status)
	}
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	if id == "" {
		t.Fatal("no request id: it is the task's id")
	}
	url := nodetest.Endpoint(n) + "/nimbus/v1/functions/old/tasks/" + id
	deadline := time.Now().Add(30 * time.Second)
	for {
		task := callJSON[nimbus.Task](t, "GET", url, "", http.StatusOK)
		if task.Status == nimbus.TaskSucceeded {
			if !strings.Contains(task.Result, `"legacy": true`) {
				t.Errorf("task result %q, want the echoed event", task.Result)
			}
			break
		}
		if nimbus.TaskFinal(task.Status) || time.Now().After(deadline) {
			t.Fatalf("task %+v, want Succeeded", task)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The path with and without its trailing slash; bad input.
	base := nodetest.Endpoint(n) + "/2014-11-13/functions/"
	status, raw, _ := call(t, "POST", base+"old/invoke-async", `{}`)
	if status != http.StatusAccepted || strings.TrimSpace(string(raw)) != `{"Status":202}` {
		t.Errorf("POST without the slash: %d %s", status, raw)
	}
	for _, tt := range []struct {
		path, body string
		status     int
		typ, msg   string
	}{
		{"nope/invoke-async/", `{}`, 404, "ResourceNotFoundException", "Function not found"},
		{"old/invoke-async/", `{"not json`, 400, "InvalidRequestContentException", "valid JSON"},
		{"old/invoke-async/", `{"big":"` + strings.Repeat("x", 7<<20) + `"}`, 413, "RequestTooLargeException", ""},
		{"old/invoke-async/", `{"big":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "RequestTooLargeException", ""},
	} {
		status, typ, msg := rawCall(t, "POST", base+tt.path, tt.body)
		if status != tt.status || typ != tt.typ || !strings.Contains(msg, tt.msg) {
			t.Errorf("POST %s (%d bytes): %d %s %q, want %d %s", tt.path, len(tt.body), status, typ, msg, tt.status, tt.typ)
		}
	}
	_, err = c.InvokeAsync(ctx, &lambda.InvokeAsyncInput{FunctionName: aws.String("nope"), InvokeArgs: strings.NewReader(`{}`)})
	wantAPIError(t, err, "ResourceNotFoundException", "Function not found")
}

// TestAsyncListsOfUnknownFunction: the task and dead-letter lists of a
// function that does not exist are not found, not empty.
func TestAsyncListsOfUnknownFunction(t *testing.T) {
	n := nodetest.Start(t, nil)
	createPy(t, client(n), "here", pyZip(t))
	base := nodetest.Endpoint(n) + "/nimbus/v1/functions/"
	for _, list := range []string{"tasks", "dead-letters"} {
		status, typ, msg := rawCall(t, "GET", base+"nope/"+list, "")
		if status != 404 || typ != "ResourceNotFoundException" || msg != "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope" {
			t.Errorf("GET nope/%s: %d %s %q, want 404 ResourceNotFoundException", list, status, typ, msg)
		}
		if status, raw, _ := call(t, "GET", base+"here/"+list, ""); status != 200 || !strings.Contains(string(raw), "[]") {
			t.Errorf("GET here/%s: %d %s, want an empty list", list, status, raw)
		}
	}
	_ = callJSON[api.TaskList](t, "GET", base+"here/tasks?status=Failed", "", http.StatusOK)
}
