package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// The authentication cases with real clients other than aws-sdk-go-v2
// (TestAuthGoSDK): boto3 and the JavaScript SDK v3 run a script of the same
// cases (testdata/clients) and print what each answered; the AWS CLI runs
// here command by command.

// clientSpec is what a client script is given.
type clientSpec struct {
	Endpoint, Zip, Prefix, Other string
	Admin, Invoker, Developer    key
}

// outcome is one case's answer, as a client saw it.
type outcome struct {
	Status        int
	Code, Message string
	Result        any
}

// authFixture starts a node and makes what every client's cases need: an
// invoker key (all functions), a developer key limited to team-a-*, the
// function team-b-x and a code package of a few incompressible MB.
func authFixture(t *testing.T) (*server, clientSpec) {
	t.Helper()
	s := startServer(t, dataDir(t))
	create(t, s.client(), "team-b-x", echoSrc)
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i*7919 + i>>8)
	}
	zipPath := filepath.Join(t.TempDir(), "code.zip")
	if err := os.WriteFile(zipPath, zipWith(t, echoSrc, big), 0o644); err != nil {
		t.Fatal(err)
	}
	admin := key{AccessKeyId: s.creds.AccessKeyID, SecretAccessKey: s.creds.SecretAccessKey}
	return s, clientSpec{
		Endpoint: "http://" + s.addr, Zip: zipPath, Other: "team-b-x", Admin: admin,
		Invoker:   createKey(t, s, "inv", "invoker", "*"),
		Developer: createKey(t, s, "dev-a", "developer", "team-a-*"),
	}
}

// runClient runs a client script with the spec and decodes its report.
func runClient(t *testing.T, spec clientSpec, env []string, argv ...string) map[string]outcome {
	t.Helper()
	specPath := filepath.Join(t.TempDir(), "spec.json")
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(specPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], append(argv[1:], specPath)...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	var report map[string]outcome
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatalf("%s printed %q (%v)\n%s", strings.Join(argv, " "), stdout.String(), err, stderr.String())
	}
	return report
}

// cleanEnv is this process's environment without AWS or Nimbus settings.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_") && !strings.HasPrefix(e, "NIMBUS_") {
			env = append(env, e)
		}
	}
	return env
}

// checkReport judges a client's report: what must work, and the error of
// each refusal.
func checkReport(t *testing.T, spec clientSpec, report map[string]outcome) {
	t.Helper()
	ok := []string{"create", "list", "list_marker", "get_arn", "invoke_binary", "invoker_invoke", "dev_invoke_own", "dev_list", "delete"}
	for _, name := range ok {
		if o, found := report[name]; !found || o.Status != 200 {
			t.Errorf("%s: %+v, want success", name, o)
		}
	}
	if got := report["get_arn"].Result; got != spec.Prefix+"one" {
		t.Errorf("get_arn: %v", got)
	}
	if got, _ := json.Marshal(report["invoke_binary"].Result); string(got) != `{"b":"\u0000ÿ😀 bin"}` {
		t.Errorf("invoke_binary: %s", got)
	}
	var names []string
	for _, n := range report["dev_list"].Result.([]any) {
		names = append(names, n.(string))
	}
	if !slices.Equal(names, []string{spec.Prefix + "one"}) {
		t.Errorf("dev_list (team-a-*): %v, want only %sone", names, spec.Prefix)
	}
	refused := []struct{ name, code, msg string }{
		{"anonymous", "MissingAuthenticationTokenException", "Missing Authentication Token"},
		{"wrong_secret", "InvalidSignatureException", "signature we calculated does not match"},
		{"unknown_key", "UnrecognizedClientException", "security token included in the request is invalid"},
		{"skewed", "InvalidSignatureException", "Signature expired"},
		{"invoker_create", "AccessDeniedException", "not authorized"},
		{"invoker_update", "AccessDeniedException", "not authorized"},
		{"invoker_delete", "AccessDeniedException", "not authorized"},
		{"dev_get_other", "AccessDeniedException", "team-b-x"},
		{"dev_invoke_other", "AccessDeniedException", "team-b-x"},
		{"dev_update_other", "AccessDeniedException", "team-b-x"},
		{"dev_delete_other", "AccessDeniedException", "team-b-x"},
		{"dev_url_other", "AccessDeniedException", "team-b-x"},
	}
	for _, r := range refused {
		o, found := report[r.name]
		if !found || o.Status != 403 || o.Code != r.code || !strings.Contains(o.Message, r.msg) {
			t.Errorf("%s: %+v, want 403 %s containing %q", r.name, o, r.code, r.msg)
		}
	}
	if o, found := report["presigned"]; found && (o.Status != 200 || o.Result != spec.Prefix+"one") {
		t.Errorf("presigned: %+v", o)
	}
}

// TestAuthBoto3: boto3 (Debian's python3-boto3, with Debian's python3).
func TestAuthBoto3(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import boto3").Run(); err != nil {
		testenv.Missing(t, "boto3 for "+py+" (Debian package python3-boto3)", err)
	}
	s, spec := authFixture(t)
	spec.Prefix = "team-a-py-"
	script, _ := filepath.Abs("testdata/clients/boto3_auth.py")
	report := runClient(t, spec, []string{"HOME=" + t.TempDir()}, py, script)
	checkReport(t, spec, report)
	if _, found := report["presigned"]; !found {
		t.Errorf("boto3's presigned GetFunction did not run")
	}
	_ = s
}
