package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	_, spec := authFixture(t)
	spec.Prefix = "team-a-py-"
	script, _ := filepath.Abs("testdata/clients/boto3_auth.py")
	report := runClient(t, spec, []string{"HOME=" + t.TempDir()}, py, script)
	checkReport(t, spec, report)
	if _, found := report["presigned"]; !found {
		t.Errorf("boto3's presigned GetFunction did not run")
	}
}

// jsSDKVersion is the @aws-sdk/client-lambda the tests use, pinned so that
// a run is repeatable (and the SDK's later releases need node 22; Debian's
// is 20).
const jsSDKVersion = "3.1178.0"

// jsSDK returns a directory whose node_modules holds @aws-sdk/client-lambda
// (v3), installing it from the npm registry into the user's cache
// directory on first use.
func jsSDK(t *testing.T) string {
	t.Helper()
	npm := testenv.Tool(t, "npm")
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "nimbus-tests", "aws-sdk-js-"+jsSDKVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@aws-sdk", "client-lambda", "package.json")); err == nil {
		return dir
	}
	// Install beside it and rename, so that two runs at once do not mix.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", tmp, "@aws-sdk/client-lambda@"+jsSDKVersion)
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		testenv.Missing(t, "@aws-sdk/client-lambda "+jsSDKVersion+" (npm install failed)", fmt.Errorf("%v\n%s", err, out))
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestAuthJSSDK: the AWS SDK for JavaScript v3, run by Debian's node.
func TestAuthJSSDK(t *testing.T) {
	node := "/usr/bin/node"
	if _, err := os.Stat(node); err != nil {
		testenv.Missing(t, node, err)
	}
	dir := jsSDK(t)
	_, spec := authFixture(t)
	spec.Prefix = "team-a-js-"
	script, _ := filepath.Abs("testdata/clients/jssdk_auth.cjs")
	report := runClient(t, spec, []string{"NODE_PATH=" + filepath.Join(dir, "node_modules"), "HOME=" + t.TempDir()}, node, script)
	checkReport(t, spec, report)
}

// awsAs runs the AWS CLI against s with only the given AWS settings in its
// environment.
func awsAs(t *testing.T, s *server, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "aws"), append(args, "--endpoint-url", "http://"+s.addr, "--region", "us-east-1")...)
	cmd.Env = append(cleanEnv(), append([]string{"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_PAGER=", "AWS_MAX_ATTEMPTS=1", "HOME=" + t.TempDir()}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func keyEnv(k key) []string {
	return []string{"AWS_ACCESS_KEY_ID=" + k.AccessKeyId, "AWS_SECRET_ACCESS_KEY=" + k.SecretAccessKey}
}

// TestAuthAWSCLI: the AWS CLI, used as the README says (the node's
// credentials file, profile nimbus), and with other keys and none.
func TestAuthAWSCLI(t *testing.T) {
	testenv.Tool(t, "aws")
	s, spec := authFixture(t)
	readme := []string{"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(s.dir, "credentials"), "AWS_PROFILE=nimbus"}
	out, errOut, err := awsAs(t, s, readme, "lambda", "create-function", "--function-name", "team-a-cli", "--runtime", "python3.11",
		"--handler", "app.handler", "--role", "r", "--zip-file", "fileb://"+spec.Zip)
	if err != nil || !strings.Contains(out, `"FunctionName": "team-a-cli"`) {
		t.Fatalf("create-function with a %s: %v %s %s", spec.Zip, err, out, errOut)
	}
	payload := filepath.Join(t.TempDir(), "payload.json")
	if err := os.WriteFile(payload, []byte("{\"b\": \"\xc3\xbf\xf0\x9f\x98\x80\"}"), 0o644); err != nil {
		t.Fatal(err)
	}
	result := filepath.Join(t.TempDir(), "out.json")
	arn := "arn:aws:lambda:us-east-1:000000000000:function:team-a-cli"
	ok := [][]string{
		{"lambda", "list-functions", "--max-items", "1"},
		{"lambda", "get-function", "--function-name", arn, "--qualifier", "$LATEST"},
		{"lambda", "invoke", "--function-name", arn + ":$LATEST", "--payload", "fileb://" + payload, result},
	}
	for _, args := range ok {
		if out, errOut, err := awsAs(t, s, readme, args...); err != nil {
			t.Errorf("aws %s: %v %s %s", strings.Join(args, " "), err, out, errOut)
		}
	}
	if got, _ := os.ReadFile(result); string(got) != `{"b": "\u00ff\ud83d\ude00"}` {
		t.Errorf("invoke wrote %s", got)
	}
	refused := []struct {
		env  []string
		args []string
		code string
	}{
		{nil, []string{"lambda", "list-functions", "--no-sign-request"}, "MissingAuthenticationTokenException"},
		{keyEnv(key{AccessKeyId: spec.Admin.AccessKeyId, SecretAccessKey: "wrong"}), []string{"lambda", "list-functions"}, "InvalidSignatureException"},
		{keyEnv(key{AccessKeyId: "AKIANOSUCHKEY0000000", SecretAccessKey: "x"}), []string{"lambda", "list-functions"}, "UnrecognizedClientException"},
		{keyEnv(spec.Invoker), []string{"lambda", "delete-function", "--function-name", "team-a-cli"}, "AccessDeniedException"},
		{keyEnv(spec.Invoker), []string{"lambda", "create-function", "--function-name", "team-a-inv", "--runtime", "python3.11",
			"--handler", "app.handler", "--role", "r", "--zip-file", "fileb://" + spec.Zip}, "AccessDeniedException"},
		{keyEnv(spec.Developer), []string{"lambda", "get-function", "--function-name", "team-b-x"}, "AccessDeniedException"},
		{keyEnv(spec.Developer), []string{"lambda", "invoke", "--function-name", "team-b-x", result}, "AccessDeniedException"},
	}
	for _, r := range refused {
		_, errOut, err := awsAs(t, s, r.env, r.args...)
		if err == nil || !strings.Contains(errOut, "("+r.code+")") {
			t.Errorf("aws %s: %v %s, want %s", strings.Join(r.args, " "), err, errOut, r.code)
		}
	}
	if _, errOut, err := awsAs(t, s, keyEnv(spec.Invoker), "lambda", "invoke", "--function-name", "team-a-cli", result); err != nil {
		t.Errorf("invoker invoke: %v %s", err, errOut)
	}
}
