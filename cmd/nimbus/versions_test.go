package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionsAWSCLI: a canary rollout with the real AWS CLI and then the
// nimbus CLI: create with --publish (version 1), alias live -> 1, publish
// version 2, shift half of live's requests to it, then all; every
// invocation lands on a version the alias routes to, none fails.
func TestVersionsAWSCLI(t *testing.T) {
	s := startServer(t, dataDir(t))
	dir := t.TempDir()
	pkg := func(release string) string {
		p := filepath.Join(dir, release+".zip")
		if err := os.WriteFile(p, pyPackage(t, "def handler(event, context):\n    return {'release': '"+release+"', 'version': context.function_version}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return "fileb://" + p
	}
	out := mustAWS(t, s, "lambda", "create-function", "--function-name", "shop", "--runtime", "python3.11", "--handler", "app.handler",
		"--role", "arn:aws:iam::000000000000:role/nimbus", "--zip-file", pkg("one"), "--publish")
	var v struct{ Version, FunctionArn string }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version != "1" || !strings.HasSuffix(v.FunctionArn, ":function:shop:1") {
		t.Fatalf("create-function --publish printed %s (%v)", out, err)
	}
	out = mustAWS(t, s, "lambda", "create-alias", "--function-name", "shop", "--name", "live", "--function-version", "1")
	if !strings.Contains(out, `"AliasArn": "arn:aws:lambda:us-east-1:000000000000:function:shop:live"`) {
		t.Fatalf("create-alias printed %s", out)
	}
	mustAWS(t, s, "lambda", "update-function-code", "--function-name", "shop", "--zip-file", pkg("two"))
	mustAWS(t, s, "lambda", "wait", "function-updated-v2", "--function-name", "shop")
	out = mustAWS(t, s, "lambda", "publish-version", "--function-name", "shop", "--description", "two")
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version != "2" {
		t.Fatalf("publish-version printed %s (%v)", out, err)
	}
	out = mustAWS(t, s, "lambda", "list-versions-by-function", "--function-name", "shop", "--query", "Versions[].Version", "--output", "text")
	if strings.Join(strings.Fields(out), ",") != "$LATEST,1,2" {
		t.Errorf("list-versions-by-function: %q", out)
	}
	mustAWS(t, s, "lambda", "update-alias", "--function-name", "shop", "--name", "live", "--routing-config", `{"AdditionalVersionWeights": {"2": 0.5}}`)
	invoke := func(qualifier string) (release, executed string) {
		t.Helper()
		outFile := filepath.Join(dir, "out.json")
		meta := mustAWS(t, s, "lambda", "invoke", "--function-name", "shop", "--qualifier", qualifier, outFile)
		var m struct {
			StatusCode      int
			ExecutedVersion string
			FunctionError   string
		}
		var r struct{ Release, Version string }
		b, _ := os.ReadFile(outFile)
		if err := json.Unmarshal([]byte(meta), &m); err != nil || m.StatusCode != 200 || m.FunctionError != "" || json.Unmarshal(b, &r) != nil || r.Version != m.ExecutedVersion {
			t.Fatalf("invoke %s printed %s, wrote %s", qualifier, meta, b)
		}
		return r.Release, m.ExecutedVersion
	}
	seen := map[string]bool{}
	for range 24 {
		rel, ev := invoke("live")
		seen[ev+"="+rel] = true
	}
	if !seen["1=one"] || !seen["2=two"] || len(seen) != 2 {
		t.Errorf("24 invokes of live at 50 %% saw %v, want both 1=one and 2=two", seen)
	}
	if rel, ev := invoke("1"); rel != "one" || ev != "1" {
		t.Errorf("version 1: %s %s", rel, ev)
	}

	// The nimbus CLI, as its help shows it.
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, err := nimbusCLI(t, s, args...)
		if err != nil {
			t.Fatalf("nimbus %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out
	}
	out = cli("alias", "set", "shop", "live", "2")
	if out != "Alias live of shop: 2\n" {
		t.Errorf("alias set: %q", out)
	}
	for range 5 {
		if out = cli("invoke", "shop:live"); !strings.Contains(out, `"release": "two"`) {
			t.Fatalf("invoke shop:live after the shift: %s", out)
		}
	}
	aliasURL(t, s, cli)
	aliasPolicy(t, s)
	out = cli("alias", "set", "shop", "canary", "1", "--weight", "2=0.1")
	if out != "Alias canary of shop: 1 (90 %), 2 (10 %)\n" {
		t.Errorf("alias set --weight: %q", out)
	}
	out = cli("alias", "ls", "shop")
	if !strings.Contains(out, "ALIAS") || !strings.Contains(out, "canary") || !strings.Contains(out, "live") {
		t.Errorf("alias ls: %s", out)
	}
	mustAWS(t, s, "lambda", "update-function-configuration", "--function-name", "shop", "--memory-size", "256")
	mustAWS(t, s, "lambda", "wait", "function-updated-v2", "--function-name", "shop")
	out = cli("publish", "shop", "-o", "json")
	var pv struct{ Version string }
	if err := json.Unmarshal([]byte(out), &pv); err != nil || pv.Version != "3" {
		t.Errorf("publish -o json: %s", out)
	}
	out = cli("versions", "shop")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 5 || !strings.HasPrefix(lines[0], "VERSION") || !strings.HasPrefix(lines[4], "3 ") {
		t.Errorf("versions: %s", out)
	}
	if _, errOut, err := nimbusCLI(t, s, "alias", "set", "shop", "x", "1", "--weight", "2"); err == nil || !strings.Contains(errOut, "--weight must be VERSION=SHARE") {
		t.Errorf("alias set --weight 2: %v %s", err, errOut)
	}
	if _, errOut, err := nimbusCLI(t, s, "invoke", "shop:nope"); err == nil || !strings.Contains(errOut, "shop:nope") {
		t.Errorf("invoke shop:nope: %v %s", err, errOut)
	}
	cli("alias", "rm", "shop", "canary")
	if _, errOut, err := awsCLI(t, s, "lambda", "get-alias", "--function-name", "shop", "--name", "canary"); err == nil || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("get-alias after alias rm: %v %s", err, errOut)
	}
	mustAWS(t, s, "lambda", "delete-function", "--function-name", "shop")
}

// aliasURL: with the AWS CLI, a function URL of alias live of shop (live
// -> 2) runs the version the alias points at, follows it when it moves,
// refuses a version's number, and goes away with the alias.
func aliasURL(t *testing.T, s *server, cli func(args ...string) string) {
	t.Helper()
	out := mustAWS(t, s, "lambda", "create-function-url-config", "--function-name", "shop", "--qualifier", "live", "--auth-type", "NONE")
	var u struct{ FunctionUrl, FunctionArn string }
	if err := json.Unmarshal([]byte(out), &u); err != nil || u.FunctionUrl != "http://"+s.addr+"/fn/shop:live/" ||
		u.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:shop:live" {
		t.Fatalf("create-function-url-config --qualifier live printed %s (%v)", out, err)
	}
	release := func() string {
		t.Helper()
		resp, err := http.Get(u.FunctionUrl)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct{ Release string }
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d (%v)", u.FunctionUrl, resp.StatusCode, err)
		}
		return r.Release
	}
	if got := release(); got != "two" {
		t.Errorf("the URL of live -> 2 ran %q", got)
	}
	cli("alias", "set", "shop", "live", "1")
	if got := release(); got != "one" {
		t.Errorf("the URL of live -> 1 ran %q", got)
	}
	out = mustAWS(t, s, "lambda", "get-function-url-config", "--function-name", "shop:live", "--query", "FunctionArn", "--output", "text")
	if strings.TrimSpace(out) != u.FunctionArn {
		t.Errorf("get-function-url-config shop:live: %s", out)
	}
	if _, errOut, err := awsCLI(t, s, "lambda", "create-function-url-config", "--function-name", "shop", "--qualifier", "1", "--auth-type", "NONE"); err == nil ||
		!strings.Contains(errOut, "ValidationException") {
		t.Errorf("create-function-url-config --qualifier 1: %v %s", err, errOut)
	}
	mustAWS(t, s, "lambda", "create-alias", "--function-name", "shop", "--name", "old", "--function-version", "1")
	mustAWS(t, s, "lambda", "create-function-url-config", "--function-name", "shop", "--qualifier", "old", "--auth-type", "AWS_IAM")
	mustAWS(t, s, "lambda", "delete-alias", "--function-name", "shop", "--name", "old")
	out = mustAWS(t, s, "lambda", "list-function-url-configs", "--function-name", "shop", "--query", "FunctionUrlConfigs[].FunctionArn", "--output", "text")
	if strings.TrimSpace(out) != u.FunctionArn {
		t.Errorf("list-function-url-configs after delete-alias old: %q, want live's only", out)
	}
	cli("alias", "set", "shop", "live", "2")
}

// aliasPolicy: with the AWS CLI, a permission on alias live of shop is in
// live's policy, on live's ARN, with live's RevisionId, and not in the
// function's; remove-permission on shop:live removes it.
func aliasPolicy(t *testing.T, s *server) {
	t.Helper()
	out := mustAWS(t, s, "lambda", "add-permission", "--function-name", "shop", "--qualifier", "live", "--statement-id", "billing",
		"--action", "lambda:InvokeFunction", "--principal", "arn:aws:iam::000000000000:user/billing")
	const liveARN = "arn:aws:lambda:us-east-1:000000000000:function:shop:live"
	var added struct{ Statement string }
	var st struct{ Resource string }
	if err := json.Unmarshal([]byte(out), &added); err != nil || json.Unmarshal([]byte(added.Statement), &st) != nil || st.Resource != liveARN {
		t.Errorf("add-permission --qualifier live printed %s (%v)", out, err)
	}
	out = mustAWS(t, s, "lambda", "get-policy", "--function-name", "shop", "--qualifier", "live")
	var pol struct{ Policy, RevisionId string }
	var doc struct {
		Statement []struct{ Sid, Resource string }
	}
	if err := json.Unmarshal([]byte(out), &pol); err != nil || json.Unmarshal([]byte(pol.Policy), &doc) != nil ||
		len(doc.Statement) != 1 || doc.Statement[0].Sid != "billing" || doc.Statement[0].Resource != liveARN {
		t.Errorf("get-policy --qualifier live printed %s (%v)", out, err)
	}
	rev := mustAWS(t, s, "lambda", "get-alias", "--function-name", "shop", "--name", "live", "--query", "RevisionId", "--output", "text")
	if strings.TrimSpace(rev) != pol.RevisionId {
		t.Errorf("get-policy --qualifier live RevisionId %s, want the alias's %s", pol.RevisionId, rev)
	}
	if _, errOut, err := awsCLI(t, s, "lambda", "get-policy", "--function-name", "shop"); err == nil || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("get-policy of the function, with live's only: %v %s", err, errOut)
	}
	if _, errOut, err := awsCLI(t, s, "lambda", "get-policy", "--function-name", "shop", "--qualifier", "gone"); err == nil ||
		!strings.Contains(errOut, "Function not found: arn:aws:lambda:us-east-1:000000000000:function:shop:gone") {
		t.Errorf("get-policy --qualifier gone: %v %s", err, errOut)
	}
	mustAWS(t, s, "lambda", "remove-permission", "--function-name", "shop:live", "--statement-id", "billing")
	if _, errOut, err := awsCLI(t, s, "lambda", "get-policy", "--function-name", "shop:live"); err == nil || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("get-policy shop:live after remove-permission: %v %s", err, errOut)
	}
}
