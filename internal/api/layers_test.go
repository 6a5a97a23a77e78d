package api_test

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

const layerArnPrefix = "arn:aws:lambda:us-east-1:000000000000:layer:"

// Layers' test functions: a Python one that imports from its layers and
// tries to write to /opt, and a Node one that requires from them.
const (
	pyLayered = `import os, greet, shared
def handler(event, context):
    try:
        open('/opt/x', 'w')
        wrote = True
    except OSError:
        wrote = False
    return {"hello": greet.hello(), "who": shared.WHO, "path": os.environ["PATH"], "wrote": wrote,
            "tool": open('/opt/bin/tool').read()}
`
	nodeLayered = `exports.handler = async () => ({ hello: require('greet').hello() });`
)

// smallNode is a node whose unzipped limit is 2 MiB, so that a test can
// pass it.
func smallNode(c *node.Config) { c.MaxUnzipped = 2 << 20 }

func publishLayer(t *testing.T, c *lambda.Client, name string, zip []byte, runtimes ...types.Runtime) *lambda.PublishLayerVersionOutput {
	t.Helper()
	out, err := c.PublishLayerVersion(t.Context(), &lambda.PublishLayerVersionInput{
		LayerName: aws.String(name), Description: aws.String("layer " + name),
		Content: &types.LayerVersionContentInput{ZipFile: zip}, CompatibleRuntimes: runtimes,
		LicenseInfo: aws.String("MIT"),
	})
	if err != nil {
		t.Fatalf("PublishLayerVersion %s: %v", name, err)
	}
	return out
}

func createLayered(t *testing.T, c *lambda.Client, name string, rt types.Runtime, handler string, zip []byte, layers ...string) error {
	t.Helper()
	_, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: rt, Role: aws.String("arn:aws:iam::000000000000:role/nimbus"),
		Handler: aws.String(handler), Code: &types.FunctionCode{ZipFile: zip}, Layers: layers,
	})
	return err
}

type layeredResult struct {
	Hello, Who, Path, Tool string
	Wrote                  bool
}

func invokeLayered(t *testing.T, c *lambda.Client, name string) layeredResult {
	t.Helper()
	out := invoke(t, c, name, `{}`)
	if out.FunctionError != nil {
		t.Fatalf("invoke %s: %s", name, out.Payload)
	}
	var res layeredResult
	if err := json.Unmarshal(out.Payload, &res); err != nil {
		t.Fatalf("invoke %s: %s: %v", name, out.Payload, err)
	}
	return res
}

// TestLayers: a published layer's Python and Node modules are importable
// by the functions that use it, under a read-only /opt; a later layer's
// file wins; the layer calls answer as Lambda's; bad layer settings are
// refused; deleting a layer version leaves its functions working.
func TestLayers(t *testing.T) {
	n := nodetest.Start(t, smallNode)
	c := client(n)
	ctx := t.Context()

	libZip := nodetest.Zip(t, map[string]string{
		"python/lib/python3.11/site-packages/greet.py": "def hello():\n    return 'from layer one'\n",
		"python/shared.py":                   "WHO = 'one'\n",
		"nodejs/node_modules/greet/index.js": "exports.hello = () => 'node layer';\n",
		"bin/tool":                           "#!/bin/sh\necho tool\n",
	}, "bin/tool")
	lib := publishLayer(t, c, "lib", libZip, types.RuntimePython311, types.Runtime(nodetest.NodeRuntime(t)))
	if got, want := aws.ToString(lib.LayerVersionArn), layerArnPrefix+"lib:1"; got != want {
		t.Errorf("LayerVersionArn %s, want %s", got, want)
	}
	if got, want := aws.ToString(lib.LayerArn), layerArnPrefix+"lib"; got != want {
		t.Errorf("LayerArn %s, want %s", got, want)
	}
	if lib.Version != 1 || aws.ToString(lib.Content.CodeSha256) != lambdaSHA(libZip) || lib.Content.CodeSize != int64(len(libZip)) ||
		aws.ToString(lib.CreatedDate) == "" || aws.ToString(lib.Content.Location) == "" || aws.ToString(lib.LicenseInfo) != "MIT" {
		t.Errorf("PublishLayerVersion = %+v, content %+v", lib, lib.Content)
	}
	over := publishLayer(t, c, "over", nodetest.Zip(t, map[string]string{"python/shared.py": "WHO = 'two'\n"}))

	t.Run("get and list", func(t *testing.T) {
		lib2 := publishLayer(t, c, "lib", libZip, types.RuntimeNodejs20x)
		if lib2.Version != 2 {
			t.Errorf("second version %d, want 2", lib2.Version)
		}
		got, err := c.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("lib"), VersionNumber: aws.Int64(1)})
		if err != nil || aws.ToString(got.LayerVersionArn) != aws.ToString(lib.LayerVersionArn) || aws.ToString(got.Description) != "layer lib" {
			t.Errorf("GetLayerVersion = %+v, %v", got, err)
		}
		byArn, err := c.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: lib2.LayerVersionArn})
		if err != nil || byArn.Version != 2 {
			t.Errorf("GetLayerVersionByArn = %+v, %v", byArn, err)
		}
		vs, err := c.ListLayerVersions(ctx, &lambda.ListLayerVersionsInput{LayerName: aws.String("lib")})
		if err != nil || len(vs.LayerVersions) != 2 || vs.LayerVersions[0].Version != 2 {
			t.Errorf("ListLayerVersions = %+v, %v", vs, err)
		}
		ls, err := c.ListLayers(ctx, &lambda.ListLayersInput{CompatibleRuntime: types.RuntimePython311})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range ls.Layers {
			names = append(names, aws.ToString(l.LayerName)+":"+aws.ToString(l.LatestMatchingVersion.LayerVersionArn))
		}
		// lib:2 is for Node only; over lists no runtime, so it matches.
		if want := []string{"lib:" + layerArnPrefix + "lib:1", "over:" + layerArnPrefix + "over:1"}; strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("ListLayers(python3.11) = %v, want %v", names, want)
		}
		_, err = c.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("lib"), VersionNumber: aws.Int64(9)})
		wantAPIError(t, err, "ResourceNotFoundException", "does not exist")
	})

	code := nodetest.Zip(t, map[string]string{"app.py": pyLayered})
	t.Run("python", func(t *testing.T) {
		if err := createLayered(t, c, "layered", types.RuntimePython311, "app.handler", code,
			aws.ToString(lib.LayerVersionArn), aws.ToString(over.LayerVersionArn)); err != nil {
			t.Fatal(err)
		}
		cfg := waitActive(t, c, "layered")
		if len(cfg.Layers) != 2 || aws.ToString(cfg.Layers[0].Arn) != aws.ToString(lib.LayerVersionArn) || cfg.Layers[0].CodeSize != int64(len(libZip)) {
			t.Errorf("Layers = %+v", cfg.Layers)
		}
		res := invokeLayered(t, c, "layered")
		if res.Hello != "from layer one" || res.Who != "two" || res.Wrote || !strings.HasSuffix(res.Path, ":/opt/bin") || res.Tool != "#!/bin/sh\necho tool\n" {
			t.Errorf("invoke = %+v: want the layers' modules, the later layer's shared.py, /opt/bin on PATH, /opt read-only", res)
		}
		// The other order: the first layer's shared.py wins.
		if err := createLayered(t, c, "reversed", types.RuntimePython311, "app.handler", code,
			aws.ToString(over.LayerVersionArn), aws.ToString(lib.LayerVersionArn)); err != nil {
			t.Fatal(err)
		}
		waitActive(t, c, "reversed")
		if res := invokeLayered(t, c, "reversed"); res.Who != "one" {
			t.Errorf("reversed layers: who = %q, want one", res.Who)
		}
	})

	t.Run("node", func(t *testing.T) {
		rt := types.Runtime(nodetest.NodeRuntime(t))
		if err := createLayered(t, c, "layered-node", rt, "index.handler",
			nodetest.Zip(t, map[string]string{"index.js": nodeLayered}), aws.ToString(lib.LayerVersionArn)); err != nil {
			t.Fatal(err)
		}
		waitActive(t, c, "layered-node")
		if res := invokeLayered(t, c, "layered-node"); res.Hello != "node layer" {
			t.Errorf("node: hello = %q", res.Hello)
		}
	})

	t.Run("update configuration", func(t *testing.T) {
		out, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
			FunctionName: aws.String("reversed"), Layers: []string{aws.ToString(lib.LayerVersionArn)}})
		if err != nil || len(out.Layers) != 1 {
			t.Fatalf("UpdateFunctionConfiguration = %+v, %v", out, err)
		}
		waitActive(t, c, "reversed")
		if res := invokeLayered(t, c, "reversed"); res.Who != "one" || res.Hello != "from layer one" {
			t.Errorf("after update: %+v", res)
		}
		out, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
			FunctionName: aws.String("reversed"), Layers: []string{}})
		if err != nil || len(out.Layers) != 0 {
			t.Fatalf("UpdateFunctionConfiguration (no layers) = %+v, %v", out, err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		arn := aws.ToString(lib.LayerVersionArn)
		var six []string
		for i := range 6 {
			six = append(six, aws.ToString(publishLayer(t, c, "many"+string(rune('a'+i)), nodetest.Zip(t, map[string]string{"f": "x"})).LayerVersionArn))
		}
		err := createLayered(t, c, "six", types.RuntimePython311, "app.handler", code, six...)
		wantAPIError(t, err, "InvalidParameterValueException", "Cannot reference more than 5 layers.")
		err = createLayered(t, c, "ghost", types.RuntimePython311, "app.handler", code, layerArnPrefix+"nothing:1")
		wantAPIError(t, err, "InvalidParameterValueException", "Layer version "+layerArnPrefix+"nothing:1 does not exist.")
		err = createLayered(t, c, "twice", types.RuntimePython311, "app.handler", code, arn, arn)
		wantAPIError(t, err, "InvalidParameterValueException", "same layer")
		err = createLayered(t, c, "elsewhere", types.RuntimePython311, "app.handler", code, "arn:aws:lambda:eu-west-1:000000000000:layer:lib:1")
		wantAPIError(t, err, "InvalidParameterValueException", "does not exist")
		err = createLayered(t, c, "wrongrt", types.RuntimePython311, "app.handler", code, layerArnPrefix+"lib:2")
		wantAPIError(t, err, "InvalidParameterValueException", "is not compatible with runtime python3.11")

		_, err = c.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("slip"),
			Content: &types.LayerVersionContentInput{ZipFile: rawZip(t, "../evil.py", "x")}})
		wantAPIError(t, err, "InvalidParameterValueException", "")
		_, err = c.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("bad name!"),
			Content: &types.LayerVersionContentInput{ZipFile: libZip}})
		if err == nil {
			t.Error("a bad layer name was accepted")
		}

		// Two layers of 1.2 MB each pass the 2 MiB limit together.
		big := func(name string) string {
			b := make([]byte, 1200<<10)
			_, _ = rand.Read(b)
			return aws.ToString(publishLayer(t, c, name, nodetest.Zip(t, map[string][]byte{"blob": b})).LayerVersionArn)
		}
		b1, b2 := big("big1"), big("big2")
		err = createLayered(t, c, "toobig", types.RuntimePython311, "app.handler", code, b1, b2)
		wantAPIError(t, err, "InvalidParameterValueException", "Function code combined with layers exceeds the maximum allowed size of 2097152 bytes. The actual size is")
		_, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
			FunctionName: aws.String("reversed"), Layers: []string{b1, b2}})
		wantAPIError(t, err, "InvalidParameterValueException", "Function code combined with layers exceeds")
	})

	t.Run("policy", func(t *testing.T) {
		in := &lambda.AddLayerVersionPermissionInput{LayerName: aws.String("lib"), VersionNumber: aws.Int64(1),
			StatementId: aws.String("xaccount"), Action: aws.String("lambda:GetLayerVersion"), Principal: aws.String("123456789012")}
		add, err := c.AddLayerVersionPermission(ctx, in)
		if err != nil || !strings.Contains(aws.ToString(add.Statement), `"AWS":"arn:aws:iam::123456789012:root"`) || aws.ToString(add.RevisionId) == "" {
			t.Fatalf("AddLayerVersionPermission = %+v, %v", add, err)
		}
		_, err = c.AddLayerVersionPermission(ctx, in)
		wantAPIError(t, err, "ResourceConflictException", "The statement id (xaccount) provided already exists")
		pol, err := c.GetLayerVersionPolicy(ctx, &lambda.GetLayerVersionPolicyInput{LayerName: aws.String("lib"), VersionNumber: aws.Int64(1)})
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Version   string
			Statement []struct{ Sid, Effect, Action, Resource string }
		}
		if err := json.Unmarshal([]byte(aws.ToString(pol.Policy)), &doc); err != nil || doc.Version != "2012-10-17" || len(doc.Statement) != 1 ||
			doc.Statement[0].Resource != aws.ToString(lib.LayerVersionArn) || doc.Statement[0].Effect != "Allow" {
			t.Errorf("GetLayerVersionPolicy = %s, %v", aws.ToString(pol.Policy), err)
		}
		if _, err := c.RemoveLayerVersionPermission(ctx, &lambda.RemoveLayerVersionPermissionInput{LayerName: aws.String("lib"),
			VersionNumber: aws.Int64(1), StatementId: aws.String("xaccount")}); err != nil {
			t.Fatal(err)
		}
		_, err = c.GetLayerVersionPolicy(ctx, &lambda.GetLayerVersionPolicyInput{LayerName: aws.String("lib"), VersionNumber: aws.Int64(1)})
		wantAPIError(t, err, "ResourceNotFoundException", "No policy is associated with the given resource.")
	})

	t.Run("delete keeps users working", func(t *testing.T) {
		if _, err := c.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{LayerName: aws.String("lib"), VersionNumber: aws.Int64(1)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{LayerName: aws.String("lib"), VersionNumber: aws.Int64(1)}); err != nil {
			t.Errorf("deleting again: %v", err)
		}
		_, err := c.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("lib"), VersionNumber: aws.Int64(1)})
		wantAPIError(t, err, "ResourceNotFoundException", "")
		err = createLayered(t, c, "late", types.RuntimePython311, "app.handler", code, aws.ToString(lib.LayerVersionArn))
		wantAPIError(t, err, "InvalidParameterValueException", "does not exist")
		// Nor is it added to a function that does not use it, as on Lambda.
		_, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
			FunctionName: aws.String("reversed"), Layers: []string{aws.ToString(lib.LayerVersionArn)}})
		wantAPIError(t, err, "InvalidParameterValueException", "does not exist")
		// A new instance of a function that uses it (its configuration
		// changed) still gets it.
		if _, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("layered"),
			Environment: &types.Environment{Variables: map[string]string{"AFTER": "delete"}}}); err != nil {
			t.Fatal(err)
		}
		waitActive(t, c, "layered")
		if res := invokeLayered(t, c, "layered"); res.Hello != "from layer one" || res.Who != "two" {
			t.Errorf("after delete: %+v", res)
		}
	})
}

// rawZip is a zip of one entry named name, as given (nodetest.Zip cleans
// nothing either, but this names the intent: a zip-slip entry).
func rawZip(t *testing.T, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte(body))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
