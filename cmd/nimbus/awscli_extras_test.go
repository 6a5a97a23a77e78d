package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAWSCLITagsPolicyAccount: the AWS CLI tags a function (on create and
// after), lists and removes tags, adds and reads a permission in Lambda's
// policy shape, reads the account settings with the node's limits, and the
// recursion and code signing settings.
func TestAWSCLITagsPolicyAccount(t *testing.T) {
	s := startServer(t, dataDir(t), "--max-instances", "40")
	zipPath := filepath.Join(t.TempDir(), "f.zip")
	zip := pyPackage(t, "def handler(event, context):\n    return event\n")
	if err := os.WriteFile(zipPath, zip, 0o644); err != nil {
		t.Fatal(err)
	}
	mustAWS(t, s, "lambda", "create-function", "--function-name", "tagged", "--runtime", "python3.11",
		"--handler", "app.handler", "--role", "arn:aws:iam::000000000000:role/nimbus", "--zip-file", "fileb://"+zipPath,
		"--tags", "team=a,env=dev")
	mustAWS(t, s, "lambda", "wait", "function-active-v2", "--function-name", "tagged")
	arn := "arn:aws:lambda:us-east-1:000000000000:function:tagged"

	mustAWS(t, s, "lambda", "tag-resource", "--resource", arn, "--tags", "env=prod,cost=7")
	mustAWS(t, s, "lambda", "untag-resource", "--resource", arn, "--tag-keys", "cost")
	var tags struct{ Tags map[string]string }
	out := mustAWS(t, s, "lambda", "list-tags", "--resource", arn)
	if err := json.Unmarshal([]byte(out), &tags); err != nil || !maps.Equal(tags.Tags, map[string]string{"team": "a", "env": "prod"}) {
		t.Errorf("list-tags printed %s (%v)", out, err)
	}
	if out := mustAWS(t, s, "lambda", "get-function", "--function-name", "tagged", "--query", "Tags.env"); strings.TrimSpace(out) != `"prod"` {
		t.Errorf("get-function Tags.env: %s", out)
	}
	_, errOut, err := awsCLI(t, s, "lambda", "tag-resource", "--resource", arn, "--tags", "aws:owner=me")
	if err == nil || !strings.Contains(errOut, "InvalidParameterValueException") {
		t.Errorf("tag-resource aws:owner: %v, %s", err, errOut)
	}

	out = mustAWS(t, s, "lambda", "add-permission", "--function-name", "tagged", "--statement-id", "s3",
		"--action", "lambda:InvokeFunction", "--principal", "s3.amazonaws.com", "--source-arn", "arn:aws:s3:::uploads")
	var added struct{ Statement string }
	var st struct {
		Sid, Effect, Action, Resource string
		Principal                     struct{ Service string }
		Condition                     map[string]map[string]string
	}
	if err := json.Unmarshal([]byte(out), &added); err != nil || json.Unmarshal([]byte(added.Statement), &st) != nil ||
		st.Sid != "s3" || st.Effect != "Allow" || st.Principal.Service != "s3.amazonaws.com" || st.Resource != arn ||
		st.Condition["ArnLike"]["AWS:SourceArn"] != "arn:aws:s3:::uploads" {
		t.Errorf("add-permission printed %s (%v)", out, err)
	}
	out = mustAWS(t, s, "lambda", "get-policy", "--function-name", "tagged")
	var pol struct{ Policy, RevisionId string }
	var doc struct {
		Version   string
		Statement []struct{ Sid string }
	}
	if err := json.Unmarshal([]byte(out), &pol); err != nil || json.Unmarshal([]byte(pol.Policy), &doc) != nil ||
		doc.Version != "2012-10-17" || len(doc.Statement) != 1 || doc.Statement[0].Sid != "s3" || pol.RevisionId == "" {
		t.Errorf("get-policy printed %s (%v)", out, err)
	}
	_, errOut, err = awsCLI(t, s, "lambda", "add-permission", "--function-name", "tagged", "--statement-id", "s3",
		"--action", "lambda:InvokeFunction", "--principal", "sns.amazonaws.com")
	if err == nil || !strings.Contains(errOut, "ResourceConflictException") {
		t.Errorf("add-permission twice: %v, %s", err, errOut)
	}
	mustAWS(t, s, "lambda", "remove-permission", "--function-name", "tagged", "--statement-id", "s3")
	_, errOut, err = awsCLI(t, s, "lambda", "get-policy", "--function-name", "tagged")
	if err == nil || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("get-policy without a policy: %v, %s", err, errOut)
	}

	mustAWS(t, s, "lambda", "put-function-concurrency", "--function-name", "tagged", "--reserved-concurrent-executions", "5")
	out = mustAWS(t, s, "lambda", "get-account-settings")
	var acct struct {
		AccountLimit struct {
			TotalCodeSize, CodeSizeUnzipped, CodeSizeZipped      int64
			ConcurrentExecutions, UnreservedConcurrentExecutions int
		}
		AccountUsage struct{ TotalCodeSize, FunctionCount int64 }
	}
	if err := json.Unmarshal([]byte(out), &acct); err != nil {
		t.Fatalf("get-account-settings printed %s (%v)", out, err)
	}
	l, u := acct.AccountLimit, acct.AccountUsage
	if l.ConcurrentExecutions != 40 || l.UnreservedConcurrentExecutions != 35 || l.CodeSizeZipped != 50<<20 || l.CodeSizeUnzipped != 250<<20 ||
		l.TotalCodeSize <= 0 || u.FunctionCount != 1 || u.TotalCodeSize != int64(len(zip)) {
		t.Errorf("get-account-settings printed %s", out)
	}

	// Recent operations: an older AWS CLI lacks them.
	if out, errOut, err := awsCLI(t, s, "lambda", "put-function-recursion-config", "--function-name", "tagged", "--recursive-loop", "Allow"); err == nil {
		if !strings.Contains(out, `"RecursiveLoop": "Allow"`) {
			t.Errorf("put-function-recursion-config printed %s", out)
		}
	} else if !strings.Contains(errOut, "Invalid choice") {
		t.Errorf("put-function-recursion-config: %v, %s", err, errOut)
	}
	if out := mustAWS(t, s, "lambda", "list-code-signing-configs"); !strings.Contains(out, `"CodeSigningConfigs": []`) {
		t.Errorf("list-code-signing-configs printed %s", out)
	}
	if out := mustAWS(t, s, "lambda", "get-runtime-management-config", "--function-name", "tagged"); !strings.Contains(out, `"UpdateRuntimeOn": "Auto"`) {
		t.Errorf("get-runtime-management-config printed %s", out)
	}
}
