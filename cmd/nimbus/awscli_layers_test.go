package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// TestAWSCLILayers: the AWS CLI publishes a layer from a zip file, creates
// a function that uses it, and the function imports the layer's module.
func TestAWSCLILayers(t *testing.T) {
	s := startServer(t, dataDir(t))
	dir := t.TempDir()
	layerZip, codeZip := filepath.Join(dir, "layer.zip"), filepath.Join(dir, "code.zip")
	write := func(p string, files map[string]string) {
		if err := os.WriteFile(p, nodetest.Zip(t, files), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(layerZip, map[string]string{"python/greeting.py": "WORD = 'from the layer'\n"})
	write(codeZip, map[string]string{"app.py": "import greeting\ndef handler(event, context):\n    return {'word': greeting.WORD}\n"})

	out := mustAWS(t, s, "lambda", "publish-layer-version", "--layer-name", "greeting", "--zip-file", "fileb://"+layerZip,
		"--compatible-runtimes", "python3.11", "--description", "a greeting")
	var layer struct {
		LayerVersionArn string
		Version         int
		Content         struct{ CodeSize int64 }
	}
	if err := json.Unmarshal([]byte(out), &layer); err != nil || layer.Version != 1 ||
		layer.LayerVersionArn != "arn:aws:lambda:us-east-1:000000000000:layer:greeting:1" {
		t.Fatalf("publish-layer-version printed %s (%v)", out, err)
	}
	out = mustAWS(t, s, "lambda", "list-layers", "--compatible-runtime", "python3.11")
	if !strings.Contains(out, `"LayerName": "greeting"`) {
		t.Errorf("list-layers printed %s", out)
	}
	out = mustAWS(t, s, "lambda", "create-function", "--function-name", "layered", "--runtime", "python3.11",
		"--handler", "app.handler", "--role", "arn:aws:iam::000000000000:role/nimbus", "--zip-file", "fileb://"+codeZip,
		"--layers", layer.LayerVersionArn)
	if !strings.Contains(out, `"Arn": "`+layer.LayerVersionArn+`"`) {
		t.Errorf("create-function printed %s", out)
	}
	mustAWS(t, s, "lambda", "wait", "function-active-v2", "--function-name", "layered")
	outFile := filepath.Join(dir, "out.json")
	mustAWS(t, s, "lambda", "invoke", "--function-name", "layered", outFile)
	if got, _ := os.ReadFile(outFile); string(got) != `{"word": "from the layer"}` {
		t.Errorf("invoke wrote %s", got)
	}
	if _, errOut, err := awsCLI(t, s, "lambda", "update-function-configuration", "--function-name", "layered",
		"--layers", "arn:aws:lambda:us-east-1:000000000000:layer:x:1"); err == nil ||
		!strings.Contains(errOut, "InvalidParameterValueException") || !strings.Contains(errOut, "does not exist") {
		t.Errorf("update-function-configuration with an unknown layer: %v, %s", err, errOut)
	}
	mustAWS(t, s, "lambda", "delete-layer-version", "--layer-name", "greeting", "--version-number", "1")
	if _, errOut, err := awsCLI(t, s, "lambda", "get-layer-version", "--layer-name", "greeting", "--version-number", "1"); err == nil ||
		!strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("get-layer-version after delete: %v, %s", err, errOut)
	}
}
