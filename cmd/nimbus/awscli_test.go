package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// awsCLI runs the real AWS CLI against the server; it skips the test when
// the AWS CLI is not installed.
func awsCLI(t *testing.T, s *server, args ...string) (string, string, error) {
	t.Helper()
	bin, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("the AWS CLI is not installed: these tests use it as a real client")
	}
	cmd := exec.Command(bin, append(args, "--endpoint-url", "http://"+s.addr)...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=nimbus", "AWS_SECRET_ACCESS_KEY=nimbus",
		"AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1")
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
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
