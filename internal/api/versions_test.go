package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/nimbus-serverless/nimbus"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// pyRelease answers the release its code says and the version it runs as.
func pyRelease(t testing.TB, release string) []byte {
	return nodetest.Zip(t, map[string]string{"app.py": "import os\nRELEASE = '" + release + "'\n" +
		"def handler(event, context):\n    return {'release': RELEASE, 'version': os.environ['AWS_LAMBDA_FUNCTION_VERSION'], 'fv': context.function_version}\n"})
}

type released struct{ Release, Version, Fv string }

func invokeQ(t *testing.T, c *lambda.Client, name, qualifier string) (released, string) {
	t.Helper()
	in := &lambda.InvokeInput{FunctionName: aws.String(name)}
	if qualifier != "" {
		in.Qualifier = aws.String(qualifier)
	}
	out, err := c.Invoke(t.Context(), in)
	if err != nil {
		t.Fatalf("Invoke %s:%s: %v", name, qualifier, err)
	}
	if out.FunctionError != nil {
		t.Fatalf("Invoke %s:%s: function error %s", name, qualifier, out.Payload)
	}
	var r released
	if err := json.Unmarshal(out.Payload, &r); err != nil {
		t.Fatalf("Invoke %s:%s: %s", name, qualifier, out.Payload)
	}
	return r, aws.ToString(out.ExecutedVersion)
}

// TestVersions: PublishVersion snapshots code and configuration (numbered,
// none when nothing changed, with its preconditions), each version runs
// its own code in its own instances with its own version in its
// environment, ListVersionsByFunction pages them, Get and Delete take a
// version qualifier, and a version's code outlives $LATEST's update.
func TestVersions(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	const name = "ver"
	createPy(t, c, name, pyRelease(t, "r1"))
	waitActive(t, c, name)

	v1, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name), Description: aws.String("first")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(v1.Version) != "1" || !strings.HasSuffix(aws.ToString(v1.FunctionArn), ":function:ver:1") || aws.ToString(v1.Description) != "first" {
		t.Fatalf("version 1: %s %s %q", aws.ToString(v1.Version), aws.ToString(v1.FunctionArn), aws.ToString(v1.Description))
	}
	again, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name)})
	if err != nil || aws.ToString(again.Version) != "1" {
		t.Fatalf("publishing with nothing changed: %v %v", err, again)
	}
	_, err = c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name), CodeSha256: aws.String(lambdaSHA([]byte("other")))})
	wantAPIError(t, err, "PreconditionFailedException", "CodeSHA256")
	_, err = c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name), RevisionId: aws.String("0b0e4b0c-0000-4000-8000-000000000000")})
	wantAPIError(t, err, "PreconditionFailedException", "Revision Id")
	_, err = c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("nope")})
	wantAPIError(t, err, "ResourceNotFoundException", "nope")

	// $LATEST moves on; version 1 keeps its code.
	if _, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(name), ZipFile: pyRelease(t, "r2"), Publish: true}); err != nil {
		t.Fatal(err)
	}
	if r, ev := invokeQ(t, c, name, ""); r.Release != "r2" || r.Version != "$LATEST" || ev != "$LATEST" {
		t.Errorf("$LATEST: %+v executed %s", r, ev)
	}
	if r, ev := invokeQ(t, c, name, "1"); r.Release != "r1" || r.Version != "1" || r.Fv != "1" || ev != "1" {
		t.Errorf("version 1: %+v executed %s", r, ev)
	}
	if r, ev := invokeQ(t, c, name, "2"); r.Release != "r2" || r.Version != "2" || ev != "2" {
		t.Errorf("version 2 (published by UpdateFunctionCode): %+v executed %s", r, ev)
	}
	if r, ev := invokeQ(t, c, name+":1", ""); r.Release != "r1" || ev != "1" { // name:qualifier, as Lambda takes it
		t.Errorf("ver:1: %+v executed %s", r, ev)
	}
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name + ":1"), Qualifier: aws.String("2")})
	wantAPIError(t, err, "InvalidParameterValueException", "does not match the specified qualifier")
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Qualifier: aws.String("9")})
	wantAPIError(t, err, "ResourceNotFoundException", "function:ver:9")

	// Configuration is part of a version too.
	if _, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(name), MemorySize: aws.Int32(256)}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, name)
	v3, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name)})
	if err != nil || aws.ToString(v3.Version) != "3" || aws.ToInt32(v3.MemorySize) != 256 {
		t.Fatalf("version 3: %v %+v", err, v3)
	}
	g, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name), Qualifier: aws.String("1")})
	if err != nil || aws.ToInt32(g.Configuration.MemorySize) != 128 || aws.ToString(g.Configuration.Version) != "1" {
		t.Fatalf("GetFunction :1: %v %+v", err, g)
	}

	var seen []string
	for marker := (*string)(nil); ; {
		page, err := c.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String(name), MaxItems: aws.Int32(2), Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Versions {
			seen = append(seen, aws.ToString(v.Version))
		}
		if marker = page.NextMarker; marker == nil {
			break
		}
	}
	if strings.Join(seen, ",") != "$LATEST,1,2,3" {
		t.Errorf("ListVersionsByFunction: %v", seen)
	}

	// Deleting a version: not $LATEST, not an alias's, then it is gone.
	_, err = c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name), Qualifier: aws.String("$LATEST")})
	wantAPIError(t, err, "InvalidParameterValueException", "$LATEST version cannot be deleted")
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String("keep"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name), Qualifier: aws.String("1")})
	wantAPIError(t, err, "ResourceConflictException", "aliases reference it")
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name), Qualifier: aws.String("2")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Qualifier: aws.String("2")})
	wantAPIError(t, err, "ResourceNotFoundException", "function:ver:2")
	if r, _ := invokeQ(t, c, name, "1"); r.Release != "r1" {
		t.Errorf("version 1 after deleting 2: %+v", r)
	}
	v4, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name), Description: aws.String("after a delete")})
	if err != nil || aws.ToString(v4.Version) != "3" { // nothing changed since 3
		t.Fatalf("publish after a delete: %v %+v", err, v4)
	}
	// An asynchronous invoke of a version (and through an alias) runs it.
	for _, q := range []string{"1", "keep"} {
		out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Qualifier: aws.String(q), InvocationType: types.InvocationTypeEvent})
		if err != nil {
			t.Fatalf("async invoke of %s: %v", q, err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		url := nodetest.Endpoint(n) + "/nimbus/v1/functions/ver/tasks/" + id
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			task := callJSON[nimbus.Task](t, "GET", url, "", http.StatusOK)
			if task.Status == nimbus.TaskSucceeded {
				if !strings.Contains(task.Result, `"release": "r1"`) || !strings.Contains(task.Result, `"version": "1"`) {
					t.Errorf("async %s ran %q, want version 1", q, task.Result)
				}
				break
			}
			if nimbus.TaskFinal(task.Status) || time.Now().After(deadline) {
				t.Fatalf("async %s: task %+v, want Succeeded", q, task)
			}
		}
	}
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
}

// TestAliasCanary is a canary rollout through an alias: live -> v1, then
// 10 % to v2 (10,000 invokes land within 1 % of it), then all on v2,
// with no failed request during the shifts; and the alias API's errors.
func TestAliasCanary(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 invokes")
	}
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	const name = "canary"
	createPy(t, c, name, pyRelease(t, "v1"))
	waitActive(t, c, name)
	if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	a, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"), FunctionVersion: aws.String("1"),
		Description: aws.String("production")})
	if err != nil || !strings.HasSuffix(aws.ToString(a.AliasArn), ":function:canary:live") || aws.ToString(a.RevisionId) == "" {
		t.Fatalf("CreateAlias: %v %+v", err, a)
	}
	_, err = c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"), FunctionVersion: aws.String("1")})
	wantAPIError(t, err, "ResourceConflictException", "Alias already exists")
	_, err = c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String("42"), FunctionVersion: aws.String("1")})
	wantAPIError(t, err, "ValidationException", "name")
	_, err = c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String("x"), FunctionVersion: aws.String("7")})
	wantAPIError(t, err, "ResourceNotFoundException", "canary:7")

	// The live traffic, throughout.
	var failed, calls atomic.Int64
	var firstFailure sync.Once
	var why string // the first failure, for the report
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := c.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), Qualifier: aws.String("live")})
				calls.Add(1)
				if err != nil || out.FunctionError != nil {
					failed.Add(1)
					firstFailure.Do(func() {
						if err == nil {
							err = fmt.Errorf("%s: %s", aws.ToString(out.FunctionError), out.Payload)
						}
						why = err.Error()
					})
				}
			}
		})
	}
	if r, ev := invokeQ(t, c, name, "live"); r.Release != "v1" || ev != "1" {
		t.Fatalf("live -> 1: %+v %s", r, ev)
	}
	if _, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(name), ZipFile: pyRelease(t, "v2"), Publish: true}); err != nil {
		t.Fatal(err)
	}
	_, err = c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.1, "1": 0.2}}})
	wantAPIError(t, err, "InvalidParameterValueException", "cannot be greater than 1")
	_, err = c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 1.5}}})
	wantAPIError(t, err, "ValidationException", "between 0.0 and 1.0")
	_, err = c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"), RevisionId: aws.String("stale"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.1}}})
	wantAPIError(t, err, "PreconditionFailedException", "Revision Id")
	up, err := c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.1}}})
	if err != nil || up.RoutingConfig == nil || up.RoutingConfig.AdditionalVersionWeights["2"] != 0.1 || aws.ToString(up.FunctionVersion) != "1" {
		t.Fatalf("UpdateAlias 10 %%: %v %+v", err, up)
	}

	const total = 10_000
	var v2 atomic.Int64
	var iwg sync.WaitGroup
	for w := range 8 {
		iwg.Go(func() {
			for i := w; i < total; i += 8 {
				out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Qualifier: aws.String("live")})
				if err != nil {
					t.Errorf("invoke live: %v", err)
					return
				}
				var r released
				_ = json.Unmarshal(out.Payload, &r)
				ev := aws.ToString(out.ExecutedVersion)
				if (ev == "2") != (r.Release == "v2") || ev != r.Version {
					t.Errorf("executed version %s ran %+v", ev, r)
					return
				}
				if ev == "2" {
					v2.Add(1)
				}
			}
		})
	}
	iwg.Wait()
	share := float64(v2.Load()) / total
	t.Logf("10,000 invokes at 10 %%: %.2f %% on version 2", 100*share)
	if share < 0.09 || share > 0.11 {
		t.Errorf("%.2f %% of the invokes went to version 2, want 10 ± 1 %%", 100*share)
	}

	// All on v2.
	if _, err := c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"), FunctionVersion: aws.String("2"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{}}}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if r, ev := invokeQ(t, c, name, "live"); r.Release != "v2" || ev != "2" {
			t.Fatalf("live -> 2: %+v %s", r, ev)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed during the shifts; the first: %s", failed.Load(), calls.Load(), why)
	}
	got, err := c.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String(name), Name: aws.String("live")})
	if err != nil || aws.ToString(got.FunctionVersion) != "2" || got.RoutingConfig != nil || aws.ToString(got.Description) != "production" {
		t.Fatalf("GetAlias: %v %+v", err, got)
	}
	// GetFunction through the alias shows the version it points at.
	g, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name), Qualifier: aws.String("live")})
	if err != nil || aws.ToString(g.Version) != "2" {
		t.Fatalf("GetFunctionConfiguration :live: %v %+v", err, g)
	}
	list, err := c.ListAliases(ctx, &lambda.ListAliasesInput{FunctionName: aws.String(name)})
	if err != nil || len(list.Aliases) != 1 || aws.ToString(list.Aliases[0].Name) != "live" {
		t.Fatalf("ListAliases: %v %+v", err, list)
	}
	if _, err := c.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String(name), Name: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String(name), Name: aws.String("live")})
	wantAPIError(t, err, "ResourceNotFoundException", "live")
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Qualifier: aws.String("live")})
	wantAPIError(t, err, "ResourceNotFoundException", "canary:live")
}

// TestProvisionedVersions: provisioned concurrency on an alias keeps that
// many warm instances of the version it points at, follows the alias when
// it moves, is listed with its qualified ARN, and goes with a delete.
func TestProvisionedVersions(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	const name = "pv"
	createPy(t, c, name, pyRelease(t, "v1"))
	waitActive(t, c, name)
	if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	_, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String(name),
		Qualifier: aws.String("nope"), ProvisionedConcurrentExecutions: aws.Int32(1)})
	wantAPIError(t, err, "ResourceNotFoundException", "function:pv:nope")
	if _, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String(name),
		Qualifier: aws.String("live"), ProvisionedConcurrentExecutions: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	ready := func(q string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			out, err := c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String(name), Qualifier: aws.String(q)})
			if err != nil {
				t.Fatalf("GetProvisionedConcurrencyConfig %s: %v", q, err)
			}
			if out.Status == types.ProvisionedConcurrencyStatusEnumReady && aws.ToInt32(out.AvailableProvisionedConcurrentExecutions) == 2 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s with %d available, want READY with 2", q, out.Status, aws.ToInt32(out.AvailableProvisionedConcurrentExecutions))
			}
		}
	}
	ready("live")
	if r, ev := invokeQ(t, c, name, "live"); r.Release != "v1" || ev != "1" {
		t.Fatalf("live: %+v %s", r, ev)
	}
	// The alias moves to version 2: its warm instances follow.
	if _, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(name), ZipFile: pyRelease(t, "v2"), Publish: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"), FunctionVersion: aws.String("2")}); err != nil {
		t.Fatal(err)
	}
	ready("live")
	list, err := c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: aws.String(name)})
	if err != nil || len(list.ProvisionedConcurrencyConfigs) != 1 || !strings.HasSuffix(aws.ToString(list.ProvisionedConcurrencyConfigs[0].FunctionArn), ":function:pv:live") {
		t.Fatalf("ListProvisionedConcurrencyConfigs: %v %+v", err, list)
	}
	if _, err := c.DeleteProvisionedConcurrencyConfig(ctx, &lambda.DeleteProvisionedConcurrencyConfigInput{FunctionName: aws.String(name), Qualifier: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String(name), Qualifier: aws.String("live")})
	wantAPIError(t, err, "ProvisionedConcurrencyConfigNotFoundException", "No Provisioned Concurrency Config")
}
