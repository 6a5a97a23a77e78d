package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// versioned deploys function name with version 1 (release r1), version 2
// (r2), $LATEST at r3, and alias live -> 1.
func versioned(t *testing.T, c *lambda.Client, name string) {
	t.Helper()
	ctx := t.Context()
	createPy(t, c, name, pyRelease(t, "r1"))
	waitActive(t, c, name)
	if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"r2", "r3"} {
		_, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(name), ZipFile: pyRelease(t, rel), Publish: rel == "r2"})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitActive(t, c, name)
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
}

// setAlias points alias live of name at version, with weights.
func setAlias(t *testing.T, c *lambda.Client, name, version string, weights map[string]float64) {
	t.Helper()
	_, err := c.UpdateAlias(t.Context(), &lambda.UpdateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"),
		FunctionVersion: aws.String(version), RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: weights}})
	if err != nil {
		t.Fatal(err)
	}
}

// urlRelease calls a function URL and reads pyRelease's answer.
func urlRelease(t *testing.T, url string) released {
	t.Helper()
	r := urlCall(t, "GET", url, nil, nil)
	var got released
	if r.status != http.StatusOK || json.Unmarshal(r.body, &got) != nil {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	return got
}

// TestFunctionURLAlias: a function has a URL of its own and one per
// alias, each with its own settings; an alias's URL runs the version the
// alias routes each request to (by its weights), and goes away with the
// alias.
func TestFunctionURLAlias(t *testing.T) {
	n := nodetest.Start(t, patientNode)
	c := client(n)
	ctx := t.Context()
	ep := nodetest.Endpoint(n)
	const name = "site"
	versioned(t, c, name)
	fname, live := aws.String(name), aws.String("live")

	created, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: fname, Qualifier: live,
		AuthType: types.FunctionUrlAuthTypeNone, Cors: &types.Cors{AllowOrigins: []string{"https://live.example"}}})
	if err != nil {
		t.Fatalf("CreateFunctionUrlConfig live: %v", err)
	}
	aliasURL := ep + "/fn/site:live/"
	if aws.ToString(created.FunctionUrl) != aliasURL || aws.ToString(created.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:site:live" {
		t.Errorf("created %s %s, want %s and the alias's ARN", aws.ToString(created.FunctionUrl), aws.ToString(created.FunctionArn), aliasURL)
	}
	// The function's own URL has settings of its own.
	own, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: fname, AuthType: "NIMBUS_KEY"})
	if err != nil || aws.ToString(own.FunctionUrl) != ep+"/fn/site/" || aws.ToString(own.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:site" {
		t.Fatalf("CreateFunctionUrlConfig: %+v %v", own, err)
	}
	wantStatus(t, urlCall(t, "GET", ep+"/fn/site/", nil, nil), http.StatusForbidden, "Forbidden")
	r := urlCall(t, "GET", ep+"/fn/site/", nil, map[string]string{"X-Nimbus-Key": nimbusKey(t, ep, name)})
	var latest released
	if r.status != 200 || json.Unmarshal(r.body, &latest) != nil || latest.Release != "r3" || latest.Version != "$LATEST" {
		t.Errorf("the function's own URL: %d %s, want $LATEST (r3)", r.status, r.body)
	}

	// Each request through the alias's URL runs the version it points at.
	if got := urlRelease(t, aliasURL+"x"); got.Release != "r1" || got.Version != "1" {
		t.Errorf("live -> 1: the URL ran %+v", got)
	}
	r = urlCall(t, "GET", aliasURL, nil, map[string]string{"Origin": "https://live.example"})
	if r.header.Get("Access-Control-Allow-Origin") != "https://live.example" {
		t.Errorf("the alias URL's CORS: got headers %v", r.header)
	}
	setAlias(t, c, name, "2", nil)
	if got := urlRelease(t, aliasURL); got.Release != "r2" || got.Version != "2" {
		t.Errorf("live -> 2: the URL ran %+v", got)
	}
	setAlias(t, c, name, "1", map[string]float64{"2": 0.5})
	seen := map[string]int{}
	for range 30 {
		seen[urlRelease(t, aliasURL).Version]++
	}
	if seen["1"] == 0 || seen["2"] == 0 || len(seen) != 2 {
		t.Errorf("live -> 1 with half to 2: versions run %v, want both", seen)
	}

	got, err := c.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("site:live")})
	if err != nil || got.AuthType != types.FunctionUrlAuthTypeNone || aws.ToString(got.FunctionUrl) != aliasURL {
		t.Errorf("GetFunctionUrlConfig site:live: %+v %v", got, err)
	}
	upd, err := c.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: fname, Qualifier: live, AuthType: "NIMBUS_KEY"})
	if err != nil || upd.AuthType != "NIMBUS_KEY" || aws.ToString(upd.FunctionArn) != aws.ToString(created.FunctionArn) {
		t.Errorf("UpdateFunctionUrlConfig live: %+v %v", upd, err)
	}
	wantStatus(t, urlCall(t, "GET", aliasURL, nil, nil), http.StatusForbidden, "Forbidden")
	if _, err := c.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: fname, Qualifier: live, AuthType: types.FunctionUrlAuthTypeNone}); err != nil {
		t.Fatal(err)
	}

	var arns []string
	pages := lambda.NewListFunctionUrlConfigsPaginator(c, &lambda.ListFunctionUrlConfigsInput{FunctionName: fname, MaxItems: aws.Int32(1)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page.FunctionUrlConfigs {
			arns = append(arns, aws.ToString(u.FunctionArn))
		}
	}
	if len(arns) != 2 || arns[0] != aws.ToString(created.FunctionArn) || arns[1] != aws.ToString(own.FunctionArn) {
		t.Errorf("ListFunctionUrlConfigs: got %v, want the alias's and the function's", arns)
	}

	// Deleting the alias deletes its URL, as Lambda does.
	if _, err := c.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: fname, Name: live}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, urlCall(t, "GET", aliasURL, nil, nil), http.StatusNotFound, "site:live has no function URL")
	list, err := c.ListFunctionUrlConfigs(ctx, &lambda.ListFunctionUrlConfigsInput{FunctionName: fname})
	if err != nil || len(list.FunctionUrlConfigs) != 1 {
		t.Errorf("ListFunctionUrlConfigs after DeleteAlias: %+v %v", list, err)
	}

	// Deleting a URL of an alias leaves the others; deleting the function
	// deletes them all.
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: fname, Name: aws.String("beta"), FunctionVersion: aws.String("2")}); err != nil {
		t.Fatal(err)
	}
	beta := aws.String("beta")
	if _, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: fname, Qualifier: beta, AuthType: types.FunctionUrlAuthTypeNone}); err != nil {
		t.Fatal(err)
	}
	if got := urlRelease(t, ep+"/fn/site:beta/"); got.Release != "r2" {
		t.Errorf("beta -> 2: the URL ran %+v", got)
	}
	if _, err := c.DeleteFunctionUrlConfig(ctx, &lambda.DeleteFunctionUrlConfigInput{FunctionName: fname, Qualifier: beta}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: fname, Qualifier: beta})
	wantAPIError(t, err, "ResourceNotFoundException", "does not exist")
	if _, err := c.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: fname}); err != nil {
		t.Errorf("the function's own URL after deleting beta's: %v", err)
	}
	if _, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: fname, Qualifier: beta, AuthType: types.FunctionUrlAuthTypeNone}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: fname}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{ep + "/fn/site/", ep + "/fn/site:beta/"} {
		wantStatus(t, urlCall(t, "GET", u, nil, nil), http.StatusNotFound, "Function not found")
	}
}

// TestFunctionURLBadQualifier: a function URL's Qualifier is an alias or
// $LATEST, never a version, and names an alias that exists.
func TestFunctionURLBadQualifier(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	versioned(t, c, "bq")
	for _, tt := range []struct {
		name, fn, qualifier, code, msg string
	}{
		{"version", "bq", "1", "ValidationException", `Value '1' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (^\$LATEST$)|((?!^[0-9]+$)([a-zA-Z0-9-_]+))`},
		{"version in the name", "bq:1", "", "ValidationException", "Value '1' at 'qualifier'"},
		{"missing alias", "bq", "nope", "ResourceNotFoundException", "Function not found: arn:aws:lambda:us-east-1:000000000000:function:bq:nope"},
		{"invalid characters", "bq", "li.ve", "ValidationException", "Value 'li.ve' at 'qualifier'"},
		{"name and qualifier disagree", "bq:live", "other", "InvalidParameterValueException", "does not match"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String(tt.fn), AuthType: types.FunctionUrlAuthTypeNone}
			if tt.qualifier != "" {
				in.Qualifier = aws.String(tt.qualifier)
			}
			_, err := c.CreateFunctionUrlConfig(ctx, in)
			wantAPIError(t, err, tt.code, tt.msg)
			_, err = c.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: in.FunctionName, Qualifier: in.Qualifier})
			wantAPIError(t, err, tt.code, tt.msg)
		})
	}
	// $LATEST is the function's own URL.
	out, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("bq"), Qualifier: aws.String("$LATEST"),
		AuthType: types.FunctionUrlAuthTypeNone})
	if err != nil || aws.ToString(out.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:bq" {
		t.Errorf("$LATEST: %+v %v", out, err)
	}
	_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("bq"), AuthType: types.FunctionUrlAuthTypeNone})
	wantAPIError(t, err, "ResourceConflictException", "FunctionUrlConfig exists")
	_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("bq"), Qualifier: aws.String("live"), AuthType: types.FunctionUrlAuthTypeNone})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("bq:live"), AuthType: types.FunctionUrlAuthTypeNone})
	wantAPIError(t, err, "ResourceConflictException", "function:bq:live")
}

// TestEventSourceMappingAlias: a mapping of a function's alias runs each
// batch on the version the alias points at when the batch is delivered,
// and is listed by the alias's name.
func TestEventSourceMappingAlias(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	n := nodetest.Start(t, patientNode)
	c, ctx := client(n), t.Context()
	const name = "esmq"
	versioned(t, c, name)

	in := kafkaMapping("esmq:live")
	in.SelfManagedEventSource.Endpoints["KAFKA_BOOTSTRAP_SERVERS"] = cluster.ListenAddrs()
	in.BatchSize, in.MaximumBatchingWindowInSeconds, in.DestinationConfig = aws.Int32(10), aws.Int32(0), nil
	out, err := c.CreateEventSourceMapping(ctx, in)
	if err != nil {
		t.Fatalf("CreateEventSourceMapping esmq:live: %v", err)
	}
	const liveARN = "arn:aws:lambda:us-east-1:000000000000:function:esmq:live"
	if aws.ToString(out.FunctionArn) != liveARN {
		t.Errorf("FunctionArn %s, want %s", aws.ToString(out.FunctionArn), liveARN)
	}
	// One mapping of the function itself, by the qualified ARN of a version.
	pinned := kafkaMapping("arn:aws:lambda:us-east-1:000000000000:function:esmq:2")
	if v, err := c.CreateEventSourceMapping(ctx, pinned); err != nil || aws.ToString(v.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:esmq:2" {
		t.Fatalf("CreateEventSourceMapping esmq:2: %+v %v", v, err)
	}
	for fn, want := range map[string]int{"esmq": 0, "esmq:live": 1, liveARN: 1, "esmq:2": 1} {
		list, err := c.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String(fn)})
		if err != nil || len(list.EventSourceMappings) != want {
			t.Errorf("ListEventSourceMappings %s: %d mappings (%v), want %d", fn, len(list.EventSourceMappings), err, want)
		}
	}

	// Batches run on the alias's version at delivery: 1, then 2.
	trig := callJSON[api.TriggerList](t, "GET", nodetest.Endpoint(n)+"/nimbus/v1/functions/esmq/triggers", "", http.StatusOK)
	var orders string
	for _, v := range trig.Triggers {
		if v.ID == aws.ToString(out.UUID) {
			orders = v.Name
		}
	}
	produce(t, cluster.ListenAddrs(), "orders", 4)
	waitKafkaVersions(t, n, name, orders, 5, "1")
	setAlias(t, c, name, "2", nil)
	produce(t, cluster.ListenAddrs(), "orders", 4)
	waitKafkaVersions(t, n, name, orders, 10, "1", "2")

	for _, bad := range []struct{ fn, code, msg string }{
		{"esmq:9", "ResourceNotFoundException", "Function not found: arn:aws:lambda:us-east-1:000000000000:function:esmq:9"},
		{"esmq:gone", "ResourceNotFoundException", "function:esmq:gone"},
		{"esmq:li.ve", "ValidationException", "functionName"},
	} {
		_, err := c.CreateEventSourceMapping(ctx, kafkaMapping(bad.fn))
		wantAPIError(t, err, bad.code, bad.msg)
	}
	up, err := c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: out.UUID, FunctionName: aws.String("esmq:1")})
	if err != nil || aws.ToString(up.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:esmq:1" {
		t.Errorf("UpdateEventSourceMapping to esmq:1: %+v %v", up, err)
	}
	_, err = c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: out.UUID, FunctionName: aws.String("esmq:9")})
	wantAPIError(t, err, "ResourceNotFoundException", "function:esmq:9")
}

// waitKafkaVersions waits until trigger orders of function name has
// delivered total messages and the function's invocation records from
// kafka show the versions want ran, and no other.
func waitKafkaVersions(t *testing.T, n *node.Node, name, orders string, total int64, want ...string) {
	t.Helper()
	base := nodetest.Endpoint(n) + "/nimbus/v1/functions/" + name
	deadline := time.Now().Add(60 * time.Second)
	for {
		v := callJSON[api.TriggerView](t, "GET", base+"/triggers/"+orders, "", http.StatusOK)
		var got []string
		list := callJSON[api.InvocationList](t, "GET", base+"/invocations?limit=100", "", http.StatusOK)
		for _, rec := range list.Invocations {
			if rec.Trigger == "kafka" && !slices.Contains(got, rec.Qualifier) {
				got = append(got, rec.Qualifier)
			}
		}
		slices.Sort(got)
		if v.Status.Delivered == total && slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d (want %d); kafka invocations ran versions %v, want %v", v.Status.Delivered, total, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
