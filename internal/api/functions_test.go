package api_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

func TestFunctionLifecycle(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	zip := pyZip(t)

	created := createPy(t, c, "hello", zip)
	if got, want := aws.ToString(created.CodeSha256), lambdaSHA(zip); got != want {
		t.Errorf("CodeSha256 = %q, want %q", got, want)
	}
	if got, want := created.CodeSize, int64(len(zip)); got != want {
		t.Errorf("CodeSize = %d, want %d", got, want)
	}
	if got, want := aws.ToString(created.FunctionArn), "arn:aws:lambda:us-east-1:000000000000:function:hello"; got != want {
		t.Errorf("FunctionArn = %q, want %q", got, want)
	}
	if created.State != types.StatePending {
		t.Errorf("State after create = %q, want Pending", created.State)
	}
	if got, want := aws.ToInt32(created.MemorySize), int32(128); got != want {
		t.Errorf("default MemorySize = %d, want %d", got, want)
	}
	if got, want := aws.ToInt32(created.Timeout), int32(3); got != want {
		t.Errorf("default Timeout = %d, want %d", got, want)
	}
	lm, err := time.Parse("2006-01-02T15:04:05.000-0700", aws.ToString(created.LastModified))
	if err != nil || time.Since(lm) > time.Minute {
		t.Errorf("LastModified = %q (%v), want Lambda's format and now", aws.ToString(created.LastModified), err)
	}
	active := waitActive(t, c, "hello")

	got, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")})
	if err != nil {
		t.Fatalf("GetFunction: %v", err)
	}
	if got.Configuration.State != types.StateActive || aws.ToString(got.Configuration.Handler) != "app.handler" {
		t.Errorf("GetFunction configuration = %+v", got.Configuration)
	}
	// Code.Location serves the package back.
	resp, err := http.Get(aws.ToString(got.Code.Location))
	if err != nil {
		t.Fatalf("download code: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != string(zip) {
		t.Errorf("Code.Location gave %d bytes, want the %d-byte package", len(body), len(zip))
	}

	// Full and partial ARNs name the same function.
	for _, name := range []string{
		"arn:aws:lambda:us-east-1:000000000000:function:hello",
		"000000000000:function:hello",
		"hello:$LATEST",
	} {
		if _, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)}); err != nil {
			t.Errorf("GetFunctionConfiguration(%q): %v", name, err)
		}
	}

	// Configuration update with the current RevisionId.
	upd, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("hello"),
		MemorySize:   aws.Int32(256),
		Timeout:      aws.Int32(30),
		Description:  aws.String("says hello"),
		Environment:  &types.Environment{Variables: map[string]string{"GREETING": "hi"}},
		RevisionId:   active.RevisionId,
	})
	if err != nil {
		t.Fatalf("UpdateFunctionConfiguration: %v", err)
	}
	if aws.ToInt32(upd.MemorySize) != 256 || aws.ToInt32(upd.Timeout) != 30 || upd.Environment.Variables["GREETING"] != "hi" {
		t.Errorf("updated configuration = %+v", upd)
	}
	if aws.ToString(upd.RevisionId) == aws.ToString(active.RevisionId) {
		t.Error("RevisionId did not change on update")
	}
	// A stale RevisionId is refused.
	_, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("hello"), MemorySize: aws.Int32(512), RevisionId: active.RevisionId,
	})
	var pfe *types.PreconditionFailedException
	if !errors.As(err, &pfe) {
		t.Errorf("update with stale RevisionId: err = %v, want PreconditionFailedException", err)
	}

	// Code update.
	zip2 := nodetest.Zip(t, map[string]string{"app.py": pyEcho + "# v2\n"})
	code, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("hello"), ZipFile: zip2})
	if err != nil {
		t.Fatalf("UpdateFunctionCode: %v", err)
	}
	if got, want := aws.ToString(code.CodeSha256), lambdaSHA(zip2); got != want {
		t.Errorf("CodeSha256 after update = %q, want %q", got, want)
	}
	after := waitActive(t, c, "hello")
	if aws.ToInt32(after.MemorySize) != 256 {
		t.Errorf("code update lost the configuration: MemorySize = %d", aws.ToInt32(after.MemorySize))
	}

	// Delete, then everything about it is gone.
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("hello")}); err != nil {
		t.Fatalf("DeleteFunction: %v", err)
	}
	_, err = c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")})
	var nfe *types.ResourceNotFoundException
	if !errors.As(err, &nfe) {
		t.Errorf("GetFunction after delete: err = %v, want ResourceNotFoundException", err)
	}
	_, err = c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("hello")})
	if !errors.As(err, &nfe) {
		t.Errorf("second DeleteFunction: err = %v, want ResourceNotFoundException", err)
	}
}

func TestListFunctionsPaging(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	zip := pyZip(t)
	var want []string
	for i := range 5 {
		name := fmt.Sprintf("fn-%d", i)
		createPy(t, c, name, zip)
		want = append(want, name)
	}
	var got []string
	var marker *string
	pages := 0
	for {
		out, err := c.ListFunctions(t.Context(), &lambda.ListFunctionsInput{MaxItems: aws.Int32(2), Marker: marker})
		if err != nil {
			t.Fatalf("ListFunctions: %v", err)
		}
		pages++
		if len(out.Functions) > 2 {
			t.Fatalf("page has %d functions, want at most 2", len(out.Functions))
		}
		for _, f := range out.Functions {
			got = append(got, aws.ToString(f.FunctionName))
		}
		if out.NextMarker == nil {
			break
		}
		marker = out.NextMarker
	}
	if strings.Join(got, ",") != strings.Join(want, ",") || pages != 3 {
		t.Errorf("listed %v in %d pages, want %v in 3", got, pages, want)
	}
	// The SDK's paginator agrees.
	p := lambda.NewListFunctionsPaginator(c, &lambda.ListFunctionsInput{MaxItems: aws.Int32(4)})
	count := 0
	for p.HasMorePages() {
		out, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		count += len(out.Functions)
	}
	if count != 5 {
		t.Errorf("paginator listed %d functions, want 5", count)
	}
}

// TestNimbusExtensions: Nimbus's own configuration fields round-trip
// beside Lambda's.
func TestNimbusExtensions(t *testing.T) {
	n := nodetest.Start(t, nil)
	createPy(t, client(n), "ext", pyZip(t))
	url := nodetest.Endpoint(n) + "/2015-03-31/functions/ext/configuration"
	if status, typ, msg := rawCall(t, http.MethodPut, url, `{"NimbusIdleTimeoutSeconds":120,"NimbusHttpConcurrency":4,"NimbusNetwork":"none"}`); status != 200 {
		t.Fatalf("update: %d %s %s", status, typ, msg)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		NimbusIdleTimeoutSeconds, NimbusHttpConcurrency int
		NimbusNetwork                                   string
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.NimbusIdleTimeoutSeconds != 120 || got.NimbusHttpConcurrency != 4 || got.NimbusNetwork != "none" {
		t.Errorf("configuration = %+v, want idle 120 s, HTTP concurrency 4 and network none", got)
	}
	if status, typ, _ := rawCall(t, http.MethodPut, url, `{"NimbusIdleTimeoutSeconds":-5}`); status != 400 || typ != "ValidationException" {
		t.Errorf("negative idle timeout: %d %s, want 400 ValidationException", status, typ)
	}
	status, typ, msg := rawCall(t, http.MethodPut, url, `{"NimbusNetwork":"bridge"}`)
	if status != 400 || typ != "InvalidParameterValueException" || !strings.Contains(msg, `NimbusNetwork "bridge" is invalid`) {
		t.Errorf("network bridge: %d %s %q, want 400 InvalidParameterValueException naming NimbusNetwork", status, typ, msg)
	}
}

func TestConcurrencyConfig(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	createPy(t, c, "capped", pyZip(t))
	if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("capped"), ReservedConcurrentExecutions: aws.Int32(3),
	}); err != nil {
		t.Fatalf("PutFunctionConcurrency: %v", err)
	}
	got, err := c.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("capped")})
	if err != nil || aws.ToInt32(got.ReservedConcurrentExecutions) != 3 {
		t.Fatalf("GetFunctionConcurrency = %v, %v; want 3", got, err)
	}
	if _, err := c.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("capped")}); err != nil {
		t.Fatalf("DeleteFunctionConcurrency: %v", err)
	}
	got, err = c.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("capped")})
	if err != nil || got.ReservedConcurrentExecutions != nil {
		t.Errorf("GetFunctionConcurrency after delete = %v, %v; want none", got.ReservedConcurrentExecutions, err)
	}
}

// rawCall sends a raw request and returns status, error type and message.
func rawCall(t *testing.T, method, url, body string) (int, string, string) {
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
	var eb struct {
		Message string `json:"message"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(raw, &eb); err != nil {
			t.Errorf("%s %s: error body is not JSON: %q", method, url, raw)
		}
	}
	return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), eb.Message
}

func createBody(name, runtime string, mem, timeout int, zip []byte) string {
	return fmt.Sprintf(`{"FunctionName":%q,"Runtime":%q,"Role":"r","Handler":"app.handler","MemorySize":%d,"Timeout":%d,"Code":{"ZipFile":%q}}`,
		name, runtime, mem, timeout, base64.StdEncoding.EncodeToString(zip))
}

func TestCreateFunctionBadInput(t *testing.T) {
	n := nodetest.Start(t, func(c *node.Config) { c.MaxZipped = 64 << 10 })
	base := nodetest.Endpoint(n) + "/2015-03-31/functions"
	good := pyZip(t)
	slip := nodetest.Zip(t, map[string]string{"../evil.py": "x = 1\n"})
	corrupt := append([]byte(nil), good...)
	copy(corrupt[len(corrupt)/3:], strings.Repeat("\xff", 40))
	big := make([]byte, 200<<10)
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantType   string
		wantMsg    string
	}{
		{"malformed JSON", `{"FunctionName":`, 400, "InvalidRequestContentException", "Could not parse request body"},
		{"empty body", ``, 400, "InvalidRequestContentException", "empty"},
		{"not an object", `[1,2]`, 400, "InvalidRequestContentException", "JSON object"},
		{"wrong field type", `{"FunctionName":"f","MemorySize":"big"}`, 400, "InvalidRequestContentException", "MemorySize"},
		{"name too long", createBody(strings.Repeat("a", 65), "python3.11", 128, 3, good), 400, "ValidationException", "length"},
		{"name bad chars", createBody("bad name!", "python3.11", 128, 3, good), 400, "ValidationException", "pattern"},
		{"empty name", createBody("", "python3.11", 128, 3, good), 400, "ValidationException", "functionName"},
		{"memory too small", createBody("f", "python3.11", 64, 3, good), 400, "ValidationException", "memorySize"},
		{"memory too large", createBody("f", "python3.11", 10241, 3, good), 400, "ValidationException", "memorySize"},
		{"timeout zero", createBody("f", "python3.11", 128, 0, good), 400, "ValidationException", "timeout"},
		{"timeout too long", createBody("f", "python3.11", 128, 901, good), 400, "ValidationException", "timeout"},
		{"unknown runtime", createBody("f", "cobol85", 128, 3, good), 400, "InvalidParameterValueException", "python3.11"},
		{"bad base64", `{"FunctionName":"f","Runtime":"python3.11","Handler":"a.b","Code":{"ZipFile":"!!!not base64"}}`, 400, "InvalidRequestContentException", "base64"},
		{"no code", `{"FunctionName":"f","Runtime":"python3.11","Handler":"a.b","Code":{}}`, 400, "InvalidParameterValueException", "ZipFile"},
		{"not a zip", createBody("f", "python3.11", 128, 3, []byte("hello, this is not a zip archive")), 400, "InvalidParameterValueException", "not a valid zip"},
		{"corrupt zip", createBody("f", "python3.11", 128, 3, corrupt), 400, "InvalidParameterValueException", ""},
		{"zip slip", createBody("f", "python3.11", 128, 3, slip), 400, "InvalidParameterValueException", ""},
		{"oversized body", createBody("f", "python3.11", 128, 3, big), 413, "RequestTooLargeException", "smaller than"},
		{"image package without an image", `{"FunctionName":"f","PackageType":"Image","Code":{}}`, 400, "InvalidParameterValueException", "ImageUri"},
		{"image package with a malformed image", `{"FunctionName":"f","PackageType":"Image","Code":{"ImageUri":"Bad Image::"}}`, 400, "InvalidParameterValueException", "Bad Image::"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, typ, msg := rawCall(t, http.MethodPost, base, tt.body)
			if status != tt.wantStatus || typ != tt.wantType {
				t.Errorf("got %d %s (%q), want %d %s", status, typ, msg, tt.wantStatus, tt.wantType)
			}
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message %q does not mention %q", msg, tt.wantMsg)
			}
		})
	}
	// Nothing was half-created.
	status, _, _ := rawCall(t, http.MethodGet, base+"/f", "")
	if status != http.StatusNotFound {
		t.Errorf("after bad creates, GET f = %d, want 404", status)
	}
	// A duplicate create is a conflict, and leaves the first intact.
	if status, typ, msg := rawCall(t, http.MethodPost, base, createBody("dup", "python3.11", 128, 3, good)); status != 201 {
		t.Fatalf("first create: %d %s %s", status, typ, msg)
	}
	status, typ, msg := rawCall(t, http.MethodPost, base, createBody("dup", "python3.11", 256, 3, good))
	if status != 409 || typ != "ResourceConflictException" || !strings.Contains(msg, "dup") {
		t.Errorf("duplicate create: %d %s %q, want 409 ResourceConflictException", status, typ, msg)
	}
	// Unknown functions are 404 on every verb.
	for _, c := range []struct{ method, path string }{
		{"GET", "/nope"}, {"GET", "/nope/configuration"}, {"DELETE", "/nope"},
		{"PUT", "/nope/configuration"}, {"POST", "/nope/invocations"},
	} {
		body := ""
		if c.method == "PUT" {
			body = `{"MemorySize":256}`
		}
		status, typ, _ := rawCall(t, c.method, base+c.path, body)
		if status != 404 || typ != "ResourceNotFoundException" {
			t.Errorf("%s %s = %d %s, want 404 ResourceNotFoundException", c.method, c.path, status, typ)
		}
	}
	// An unknown route is a clear error too.
	if status, typ, _ := rawCall(t, "GET", nodetest.Endpoint(n)+"/2099-01-01/nothing", ""); status != 404 || typ == "" {
		t.Errorf("unknown route = %d %q", status, typ)
	}
}
