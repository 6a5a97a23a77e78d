package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEventInvokeConfigAWSCLI: the real AWS CLI puts, gets, lists and
// deletes the event invoke config of an alias (--qualifier, and the alias
// in the function name), apart from $LATEST's; an unknown alias is not
// found.
func TestEventInvokeConfigAWSCLI(t *testing.T) {
	s := startServer(t, dataDir(t))
	zipPath := filepath.Join(t.TempDir(), "fn.zip")
	if err := os.WriteFile(zipPath, pyPackage(t, "def handler(event, context):\n    return event\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustAWS(t, s, "lambda", "create-function", "--function-name", "orders", "--runtime", "python3.11", "--handler", "app.handler",
		"--role", "arn:aws:iam::000000000000:role/nimbus", "--zip-file", "fileb://"+zipPath, "--publish")
	mustAWS(t, s, "lambda", "create-alias", "--function-name", "orders", "--name", "live", "--function-version", "1")
	const arn = "arn:aws:lambda:us-east-1:000000000000:function:orders"
	var cfg struct {
		FunctionArn          string
		MaximumRetryAttempts *int
		DestinationConfig    struct{ OnFailure struct{ Destination string } }
	}
	out := mustAWS(t, s, "lambda", "put-function-event-invoke-config", "--function-name", "orders", "--qualifier", "live",
		"--maximum-retry-attempts", "0", "--destination-config", `{"OnFailure":{"Destination":"nats:orders.live.failed"}}`)
	if err := json.Unmarshal([]byte(out), &cfg); err != nil || cfg.FunctionArn != arn+":live" || cfg.MaximumRetryAttempts == nil ||
		*cfg.MaximumRetryAttempts != 0 || cfg.DestinationConfig.OnFailure.Destination != "nats:orders.live.failed" {
		t.Fatalf("put-function-event-invoke-config --qualifier live printed %s (%v)", out, err)
	}
	mustAWS(t, s, "lambda", "put-function-event-invoke-config", "--function-name", "orders", "--maximum-retry-attempts", "2")
	out = mustAWS(t, s, "lambda", "get-function-event-invoke-config", "--function-name", "orders:live")
	if err := json.Unmarshal([]byte(out), &cfg); err != nil || cfg.FunctionArn != arn+":live" || *cfg.MaximumRetryAttempts != 0 {
		t.Errorf("get-function-event-invoke-config orders:live printed %s (%v)", out, err)
	}
	out = mustAWS(t, s, "lambda", "list-function-event-invoke-configs", "--function-name", "orders",
		"--query", "FunctionEventInvokeConfigs[].[FunctionArn,MaximumRetryAttempts]", "--output", "text")
	if got := strings.Join(strings.Fields(out), " "); got != arn+":$LATEST 2 "+arn+":live 0" {
		t.Errorf("list-function-event-invoke-configs: %q", out)
	}
	_, errOut, err := awsCLI(t, s, "lambda", "put-function-event-invoke-config", "--function-name", "orders", "--qualifier", "nope",
		"--maximum-retry-attempts", "1")
	if err == nil || !strings.Contains(errOut, "ResourceNotFoundException") || !strings.Contains(errOut, arn+":nope") {
		t.Errorf("put-function-event-invoke-config --qualifier nope: %v, %s", err, errOut)
	}
	mustAWS(t, s, "lambda", "delete-function-event-invoke-config", "--function-name", "orders", "--qualifier", "live")
	_, errOut, err = awsCLI(t, s, "lambda", "get-function-event-invoke-config", "--function-name", "orders", "--qualifier", "live")
	if err == nil || !strings.Contains(errOut, "doesn't have an EventInvokeConfig") {
		t.Errorf("get-function-event-invoke-config after delete: %v, %s", err, errOut)
	}
	mustAWS(t, s, "lambda", "get-function-event-invoke-config", "--function-name", "orders", "--qualifier", "$LATEST")
}
