package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// awsCLI runs the real AWS CLI against the server. When the AWS CLI is not
// installed the test is skipped, or fails under NIMBUS_REQUIRE_SERVICES=1.
func awsCLI(t *testing.T, s *server, args ...string) (string, string, error) {
	t.Helper()
	bin := testenv.Tool(t, "aws")
	cmd := exec.Command(bin, append(args, "--endpoint-url", "http://"+s.addr)...)
	// As the README says: the node's credentials file, profile nimbus.
	cmd.Env = append(os.Environ(), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(s.dir, "credentials"), "AWS_PROFILE=nimbus",
		"AWS_CONFIG_FILE=/dev/null", "AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1")
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func mustAWS(t *testing.T, s *server, args ...string) string {
	t.Helper()
	out, errOut, err := awsCLI(t, s, args...)
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// TestAWSCLI follows the README's AWS CLI walk-through.
func TestAWSCLI(t *testing.T) {
	s := startServer(t, dataDir(t))
	zipPath := filepath.Join(t.TempDir(), "hello.zip")
	if err := os.WriteFile(zipPath, pyPackage(t, "def handler(event, context):\n    return {'greeting': 'Hello, ' + event.get('name', 'world') + '!'}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustAWS(t, s, "lambda", "create-function", "--function-name", "hello2", "--runtime", "python3.11",
		"--handler", "app.handler", "--role", "arn:aws:iam::000000000000:role/nimbus", "--zip-file", "fileb://"+zipPath)
	var created struct{ FunctionName, State, CodeSha256 string }
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.FunctionName != "hello2" || created.CodeSha256 == "" {
		t.Fatalf("create-function printed %s (%v)", out, err)
	}
	mustAWS(t, s, "lambda", "wait", "function-active-v2", "--function-name", "hello2")

	outFile := filepath.Join(t.TempDir(), "out.json")
	invokeArgs := []string{"lambda", "invoke", "--function-name", "hello2", "--payload", `{"name":"Ada"}`, "--log-type", "Tail"}
	if version, _, _ := awsCLI(t, s, "--version"); strings.HasPrefix(version, "aws-cli/2") {
		// Version 2 reads --payload as base64 unless told otherwise.
		invokeArgs = append(invokeArgs, "--cli-binary-format", "raw-in-base64-out")
	}
	out = mustAWS(t, s, append(invokeArgs, outFile)...)
	var meta struct {
		StatusCode int
		LogResult  string
	}
	if err := json.Unmarshal([]byte(out), &meta); err != nil || meta.StatusCode != 200 || meta.LogResult == "" {
		t.Errorf("invoke printed %s (%v)", out, err)
	}
	if got, _ := os.ReadFile(outFile); string(got) != `{"greeting": "Hello, Ada!"}` {
		t.Errorf("invoke wrote %s", got)
	}

	out = mustAWS(t, s, "lambda", "list-functions")
	if !strings.Contains(out, `"FunctionName": "hello2"`) {
		t.Errorf("list-functions printed %s", out)
	}
	out = mustAWS(t, s, "lambda", "update-function-configuration", "--function-name", "hello2", "--memory-size", "256",
		"--environment", "Variables={GREETING=hi}")
	if !strings.Contains(out, `"MemorySize": 256`) {
		t.Errorf("update-function-configuration printed %s", out)
	}
	mustAWS(t, s, "lambda", "get-function", "--function-name", "arn:aws:lambda:us-east-1:000000000000:function:hello2")
	awsSettings(t, s)
	awsProvisioned(t, s)
	awsInvokeAsync(t, s)

	// Errors reach the user as the AWS CLI prints Lambda's errors.
	_, errOut, err := awsCLI(t, s, "lambda", "get-function", "--function-name", "nope")
	if err == nil || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("get-function nope: %v, %s", err, errOut)
	}
	_, errOut, err = awsCLI(t, s, "lambda", "create-function", "--function-name", "bad", "--runtime", "python3.11",
		"--handler", "app.handler", "--role", "r", "--timeout", "901", "--zip-file", "fileb://"+zipPath)
	if err == nil || !strings.Contains(errOut, "ValidationException") {
		t.Errorf("create-function with a 901 s timeout: %v, %s", err, errOut)
	}
	mustAWS(t, s, "lambda", "delete-function", "--function-name", "hello2")
	_, errOut, err = awsCLI(t, s, "lambda", "get-function", "--function-name", "hello2")
	if err == nil || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("get-function after delete: %v, %s", err, errOut)
	}
}

// awsSettings: the AWS CLI sets and reads EphemeralStorage, TracingConfig,
// LoggingConfig and DeadLetterConfig, clears VpcConfig, and gets Lambda's
// error for what Nimbus does not support.
func awsSettings(t *testing.T, s *server) {
	t.Helper()
	var cfg struct {
		EphemeralStorage struct{ Size int }
		TracingConfig    struct{ Mode string }
		LoggingConfig    struct{ LogFormat, ApplicationLogLevel, SystemLogLevel, LogGroup string }
		DeadLetterConfig struct{ TargetArn string }
		VpcConfig        *struct{}
	}
	out := mustAWS(t, s, "lambda", "update-function-configuration", "--function-name", "hello2",
		"--ephemeral-storage", "Size=1024", "--tracing-config", "Mode=Active",
		"--dead-letter-config", "TargetArn=nats:hello2.dead", "--vpc-config", "SubnetIds=[],SecurityGroupIds=[]")
	if err := json.Unmarshal([]byte(out), &cfg); err != nil || cfg.EphemeralStorage.Size != 1024 || cfg.TracingConfig.Mode != "Active" ||
		cfg.DeadLetterConfig.TargetArn != "nats:hello2.dead" || cfg.VpcConfig != nil {
		t.Errorf("update-function-configuration printed %s (%v)", out, err)
	}
	// LoggingConfig came to the AWS CLI late (1.31, 2.14): an older one
	// cannot send it, and aws-sdk-go-v2 tests it alone.
	logArgs := []string{"lambda", "update-function-configuration", "--function-name", "hello2",
		"--logging-config", "LogFormat=JSON,ApplicationLogLevel=DEBUG,SystemLogLevel=WARN"}
	out, errOut, err := awsCLI(t, s, logArgs...)
	switch {
	case strings.Contains(errOut, "Unknown options: --logging-config"):
		t.Logf("this AWS CLI has no --logging-config")
	case err != nil:
		t.Errorf("aws %s: %v\n%s", strings.Join(logArgs, " "), err, errOut)
	default:
		if err := json.Unmarshal([]byte(out), &cfg); err != nil || cfg.LoggingConfig.LogFormat != "JSON" || cfg.LoggingConfig.LogGroup != "/aws/lambda/hello2" ||
			cfg.LoggingConfig.ApplicationLogLevel != "DEBUG" || cfg.LoggingConfig.SystemLogLevel != "WARN" || cfg.EphemeralStorage.Size != 1024 {
			t.Errorf("update-function-configuration --logging-config printed %s (%v)", out, err)
		}
	}
	if got := mustAWS(t, s, "lambda", "get-function-configuration", "--function-name", "hello2", "--query", "EphemeralStorage.Size"); strings.TrimSpace(got) != "1024" {
		t.Errorf("get-function-configuration EphemeralStorage.Size: %s", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--vpc-config", "SubnetIds=subnet-1,SecurityGroupIds=sg-1"}, "InvalidParameterValueException"},
		{[]string{"--tracing-config", "Mode=Sometimes"}, "ValidationException"},
		{[]string{"--dead-letter-config", "TargetArn=arn:aws:sqs:us-east-1:000000000000:dlq"}, "InvalidParameterValueException"},
	} {
		_, errOut, err := awsCLI(t, s, append([]string{"lambda", "update-function-configuration", "--function-name", "hello2"}, tc.args...)...)
		if err == nil || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "not supported") && tc.want != "ValidationException" {
			t.Errorf("update-function-configuration %v: %v, %s; want %s", tc.args, err, errOut, tc.want)
		}
	}
}

// awsProvisioned: list-provisioned-concurrency-configs answers an empty
// list, then the config put.
func awsProvisioned(t *testing.T, s *server) {
	t.Helper()
	list := func() []struct{ FunctionArn string } {
		t.Helper()
		out := mustAWS(t, s, "lambda", "list-provisioned-concurrency-configs", "--function-name", "hello2")
		var v struct {
			ProvisionedConcurrencyConfigs []struct{ FunctionArn string }
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.ProvisionedConcurrencyConfigs == nil {
			t.Fatalf("list-provisioned-concurrency-configs printed %s (%v)", out, err)
		}
		return v.ProvisionedConcurrencyConfigs
	}
	if got := list(); len(got) != 0 {
		t.Errorf("configs before any: %+v", got)
	}
	mustAWS(t, s, "lambda", "put-provisioned-concurrency-config", "--function-name", "hello2", "--qualifier", "$LATEST",
		"--provisioned-concurrent-executions", "1")
	if got := list(); len(got) != 1 || got[0].FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:hello2:$LATEST" {
		t.Errorf("configs after a put: %+v", got)
	}
	mustAWS(t, s, "lambda", "delete-provisioned-concurrency-config", "--function-name", "hello2", "--qualifier", "$LATEST")
}

// awsInvokeAsync: Lambda's deprecated InvokeAsync answers {"Status": 202}.
func awsInvokeAsync(t *testing.T, s *server) {
	t.Helper()
	args := filepath.Join(t.TempDir(), "args.json")
	if err := os.WriteFile(args, []byte(`{"name":"Ada"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustAWS(t, s, "lambda", "invoke-async", "--function-name", "hello2", "--invoke-args", args)
	var v struct{ Status int }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Status != 202 {
		t.Errorf("invoke-async printed %s (%v)", out, err)
	}
}
