package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
)

// key is an access key as `nimbus keys create -o json` prints it.
type key struct {
	Name, AccessKeyId, SecretAccessKey, Role, Functions string
}

func (k key) creds() aws.Credentials {
	return aws.Credentials{AccessKeyID: k.AccessKeyId, SecretAccessKey: k.SecretAccessKey}
}

// nimbusCLI runs the nimbus CLI against s with no credentials in its
// environment but NIMBUS_DATA_DIR, so that it signs with the admin key of
// s's credentials file (the last place its credential chain looks).
func nimbusCLI(t *testing.T, s *server, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(nimbusBin, append(args, "--endpoint", "http://"+s.addr)...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_") && !strings.HasPrefix(e, "NIMBUS_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, "NIMBUS_DATA_DIR="+s.dir, "HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// createKey makes a key with `nimbus keys create NAME --role R -o json`,
// which must print one JSON object with the secret.
func createKey(t *testing.T, s *server, name, role, glob string) key {
	t.Helper()
	out, errOut, err := nimbusCLI(t, s, "keys", "create", name, "--role", role, "--functions", glob, "-o", "json")
	if err != nil {
		t.Fatalf("nimbus keys create %s: %v\n%s", name, err, errOut)
	}
	var k key
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&k); err != nil || dec.More() {
		t.Fatalf("nimbus keys create -o json printed %q, want one JSON object (%v)", out, err)
	}
	if k.Name != name || k.Role != role || k.Functions != glob || k.AccessKeyId == "" || k.SecretAccessKey == "" {
		t.Fatalf("nimbus keys create printed %+v", k)
	}
	return k
}

// clientAs is a Lambda client of s signing with c (anonymous when c is
// zero).
func clientAs(s *server, c aws.Credentials) *lambda.Client {
	var p aws.CredentialsProvider = aws.AnonymousCredentials{}
	if c.AccessKeyID != "" {
		p = credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")
	}
	return lambda.New(lambda.Options{
		HTTPClient:   sdkhttp.Client(),
		BaseEndpoint: aws.String("http://" + s.addr), Region: "us-east-1", Credentials: p,
		RetryMaxAttempts: 1,
	})
}

// wantAPIError checks that err is Lambda's error code with HTTP status.
func wantAPIError(t *testing.T, what string, err error, status int, code, msg string) {
	t.Helper()
	var ae smithy.APIError
	var re *awshttp.ResponseError
	if !errors.As(err, &ae) || !errors.As(err, &re) {
		t.Errorf("%s: %v, want %d %s", what, err, status, code)
		return
	}
	if ae.ErrorCode() != code || re.HTTPStatusCode() != status || !strings.Contains(ae.ErrorMessage(), msg) {
		t.Errorf("%s: %d %s %q, want %d %s containing %q", what, re.HTTPStatusCode(), ae.ErrorCode(), ae.ErrorMessage(), status, code, msg)
	}
}

const echoSrc = "import base64\ndef handler(e, c):\n    return e\n"

// TestAuthGoSDK: aws-sdk-go-v2, in process, against a real `nimbus serve`
// with authentication on (the default): signed requests work, bad ones get
// Lambda's errors, roles and function globs hold, keys are managed with the
// real CLI.
func TestAuthGoSDK(t *testing.T) {
	s := startServer(t, dataDir(t))
	ctx := t.Context()
	admin := s.client()

	// Correctly signed: create with a zip (a large one: a few MB of
	// incompressible code), list with paging, get by ARN and qualifier,
	// invoke with binary data.
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i*7919 + i>>8)
	}
	in := createInput(t, "team-a-one", echoSrc, nil)
	in.Code.ZipFile = zipWith(t, echoSrc, big)
	if _, err := admin.CreateFunction(ctx, in); err != nil {
		t.Fatalf("CreateFunction with a %d-byte zip: %v", len(in.Code.ZipFile), err)
	}
	create(t, admin, "team-a-two", echoSrc)
	create(t, admin, "team-b-x", echoSrc)
	page, err := admin.ListFunctions(ctx, &lambda.ListFunctionsInput{MaxItems: aws.Int32(2)})
	if err != nil || len(page.Functions) != 2 || page.NextMarker == nil {
		t.Fatalf("ListFunctions MaxItems=2: %+v, %v", page, err)
	}
	if _, err := admin.ListFunctions(ctx, &lambda.ListFunctionsInput{MaxItems: aws.Int32(2), Marker: page.NextMarker}); err != nil {
		t.Fatalf("ListFunctions with Marker: %v", err)
	}
	arn := "arn:aws:lambda:us-east-1:000000000000:function:team-a-two"
	if _, err := admin.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(arn), Qualifier: aws.String("$LATEST")}); err != nil {
		t.Fatalf("GetFunction by ARN with a qualifier: %v", err)
	}
	payload := []byte(`{"b":"\u0000\u00ff\ud83d\ude00 \\x00 \t"}`)
	out, err := admin.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn + ":$LATEST"), Payload: payload})
	if err != nil || out.FunctionError != nil {
		t.Fatalf("Invoke by qualified ARN: %v %+v", err, out)
	}
	if _, err := admin.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("team-a-one"), Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("Invoke the big function: %v", err)
	}
	// A body that is not JSON at all (every byte value): the signature
	// holds; the refusal is Lambda's, for the content.
	raw := make([]byte, 256)
	for i := range raw {
		raw[i] = byte(i)
	}
	_, err = admin.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("team-a-one"), Payload: raw})
	wantAPIError(t, "Invoke with a binary payload", err, 400, "InvalidRequestContentException", "")

	// Anonymous, a wrong secret, an unknown key, a skewed clock.
	_, err = clientAs(s, aws.Credentials{}).ListFunctions(ctx, nil)
	wantAPIError(t, "anonymous ListFunctions", err, 403, "MissingAuthenticationTokenException", "Missing Authentication Token")
	_, err = clientAs(s, aws.Credentials{AccessKeyID: s.creds.AccessKeyID, SecretAccessKey: "wrong"}).ListFunctions(ctx, nil)
	wantAPIError(t, "wrong secret", err, 403, "InvalidSignatureException", "does not match")
	_, err = clientAs(s, aws.Credentials{AccessKeyID: "AKIANOSUCHKEY0000000", SecretAccessKey: "x"}).ListFunctions(ctx, nil)
	wantAPIError(t, "unknown key", err, 403, "UnrecognizedClientException", "security token")
	skewed := lambda.New(lambda.Options{
		HTTPClient:   sdkhttp.Client(),
		BaseEndpoint: aws.String("http://" + s.addr), Region: "us-east-1", RetryMaxAttempts: 1,
		Credentials:  credentials.NewStaticCredentialsProvider(s.creds.AccessKeyID, s.creds.SecretAccessKey, ""),
		HTTPSignerV4: skewedSigner{v4.NewSigner(), -10 * time.Minute},
	})
	_, err = skewed.ListFunctions(ctx, nil)
	wantAPIError(t, "signed 10 min ago", err, 403, "InvalidSignatureException", "Signature expired")
	_, err = clientAs(s, s.creds).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("team-b-x"), Payload: []byte(`{}`)})
	if err != nil {
		t.Fatalf("signed Invoke: %v", err)
	}

	authRoles(t, s)
	authPresigned(t, s)
	authFunctionURL(t, s)
	authKeysCLI(t, s)
}

// skewedSigner signs as if the clock were off by skew.
type skewedSigner struct {
	s    *v4.Signer
	skew time.Duration
}

func (k skewedSigner) SignHTTP(ctx context.Context, c aws.Credentials, r *http.Request, hash, service, region string, at time.Time, opts ...func(*v4.SignerOptions)) error {
	return k.s.SignHTTP(ctx, c, r, hash, service, region, at.Add(k.skew), opts...)
}

func zipWith(t *testing.T, src string, blob []byte) []byte {
	t.Helper()
	return nodetest.Zip(t, map[string][]byte{"app.py": []byte(src), "blob.bin": blob})
}

// authRoles: an invoker key invokes but cannot manage; a developer key
// limited to team-a-* cannot touch team-b-x and lists only team-a-*.
func authRoles(t *testing.T, s *server) {
	t.Helper()
	ctx := t.Context()
	inv := clientAs(s, createKey(t, s, "inv", "invoker", "*").creds())
	if _, err := inv.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("team-b-x"), Payload: []byte(`{}`)}); err != nil {
		t.Errorf("invoker Invoke: %v", err)
	}
	wantDenied(t, "invoker", manageCalls(t, inv, "team-b-x", "by-invoker"))
	_, err := inv.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("team-b-x")})
	wantAPIError(t, "invoker GetFunction", err, 403, "AccessDeniedException", "not authorized")

	dev := clientAs(s, createKey(t, s, "dev-a", "developer", "team-a-*").creds())
	if _, err := dev.CreateFunction(ctx, createInput(t, "team-a-three", echoSrc, nil)); err != nil {
		t.Errorf("developer creates in its glob: %v", err)
	}
	if _, err := dev.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("team-a-two"), Payload: []byte(`{}`)}); err != nil {
		t.Errorf("developer invokes in its glob: %v", err)
	}
	if _, err := dev.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("team-a-two"), MemorySize: aws.Int32(256)}); err != nil {
		t.Errorf("developer updates in its glob: %v", err)
	}
	for _, name := range []string{"team-b-x", "arn:aws:lambda:us-east-1:000000000000:function:team-b-x", "team-b-x:$LATEST"} {
		_, err = dev.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		wantAPIError(t, "developer GetFunction "+name, err, 403, "AccessDeniedException", "not authorized")
		_, err = dev.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{}`)})
		wantAPIError(t, "developer Invoke "+name, err, 403, "AccessDeniedException", "not authorized")
	}
	wantDenied(t, "developer team-a-*", manageCalls(t, dev, "team-b-x", "team-b-y"))
	// Nimbus triggers, through the Nimbus API.
	devKey := clientCreds(dev)
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/nimbus/v1/functions/team-b-x/triggers", ""},
		{"POST", "/nimbus/v1/functions/team-b-x/triggers", `{"Name":"t","Type":"timer","Config":{"schedule":"rate(1 hour)"}}`},
		{"DELETE", "/nimbus/v1/functions/team-b-x/triggers/t", ""},
	} {
		resp := signedDo(t, s, devKey, r.method, r.path, r.body)
		if resp.StatusCode != 403 || resp.Type != "AccessDeniedException" {
			t.Errorf("developer %s %s: %d %s, want 403 AccessDeniedException", r.method, r.path, resp.StatusCode, resp.Body)
		}
	}
	list, err := dev.ListFunctions(ctx, nil)
	if err != nil {
		t.Fatalf("developer ListFunctions: %v", err)
	}
	var names []string
	for _, f := range list.Functions {
		names = append(names, aws.ToString(f.FunctionName))
	}
	if len(names) != 3 || strings.Contains(strings.Join(names, ","), "team-b") {
		t.Errorf("developer team-a-* lists %v, want the three team-a-* functions", names)
	}
}

// manageCalls are the calls that manage function fn (or create function
// created), by c.
func manageCalls(t *testing.T, c *lambda.Client, fn, created string) map[string]func() error {
	ctx, name := t.Context(), aws.String(fn)
	return map[string]func() error{
		"CreateFunction " + created: func() error {
			_, err := c.CreateFunction(ctx, createInput(t, created, echoSrc, nil))
			return err
		},
		"UpdateFunctionConfiguration": func() error {
			_, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: name, MemorySize: aws.Int32(256)})
			return err
		},
		"UpdateFunctionCode": func() error {
			_, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: name, ZipFile: pyPackage(t, echoSrc)})
			return err
		},
		"DeleteFunction": func() error {
			_, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: name})
			return err
		},
		"CreateFunctionUrlConfig": func() error {
			_, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: name, AuthType: types.FunctionUrlAuthTypeNone})
			return err
		},
		"PutFunctionConcurrency": func() error {
			_, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: name, ReservedConcurrentExecutions: aws.Int32(1)})
			return err
		},
	}
}

// wantDenied checks that each call is refused with AccessDeniedException.
func wantDenied(t *testing.T, who string, calls map[string]func() error) {
	t.Helper()
	for op, call := range calls {
		wantAPIError(t, who+" "+op, call(), 403, "AccessDeniedException", "not authorized")
	}
}

func clientCreds(c *lambda.Client) aws.Credentials {
	cr, _ := c.Options().Credentials.Retrieve(context.Background())
	return cr
}

// answer is an HTTP answer: its status, Lambda's error type (the
// X-Amzn-Errortype header) and body.
type answer struct {
	StatusCode int
	Type       string
	Body       string
}

// signedDo sends a request to s signed with c (unsigned when c is zero).
func signedDo(t *testing.T, s *server, c aws.Credentials, method, path, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.AccessKeyID != "" {
		if err := v4.NewSigner().SignHTTP(t.Context(), c, req, sha256Hex([]byte(body)), "lambda", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	typ, _, _ := strings.Cut(resp.Header.Get("X-Amzn-Errortype"), ":")
	return answer{resp.StatusCode, typ, string(b)}
}

// authPresigned: a GET presigned with aws-sdk-go-v2's signer works as is,
// and not once tampered with.
func authPresigned(t *testing.T, s *server) {
	t.Helper()
	presign := func(path string, at time.Time) string {
		req, _ := http.NewRequest("GET", "http://"+s.addr+path, nil)
		u, _, err := v4.NewSigner().PresignHTTP(t.Context(), s.creds, req, "UNSIGNED-PAYLOAD", "lambda", "us-east-1", at)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	u := presign("/2015-03-31/functions/team-a-two?Qualifier=%24LATEST&X-Amz-Expires=60", time.Now())
	got := send(t, mustReq(t, "GET", u))
	if got.StatusCode != 200 || !strings.Contains(got.Body, `"FunctionName":"team-a-two"`) {
		t.Errorf("presigned GetFunction: %d %s", got.StatusCode, got.Body)
	}
	got = send(t, mustReq(t, "GET", strings.Replace(u, "team-a-two", "team-b-x", 1)))
	if got.StatusCode != 403 || got.Type != "InvalidSignatureException" {
		t.Errorf("presigned URL for another function: %d %s", got.StatusCode, got.Body)
	}
	got = send(t, mustReq(t, "GET", presign("/2015-03-31/functions/team-a-two?X-Amz-Expires=60", time.Now().Add(-2*time.Minute))))
	if got.StatusCode != 403 || !strings.Contains(got.Body, "Signature expired") {
		t.Errorf("expired presigned URL: %d %s", got.StatusCode, got.Body)
	}
}

func mustReq(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// authFunctionURL: a function URL with AuthType AWS_IAM answers a request
// signed (service lambda) by a key that may invoke the function, and 403
// to an unsigned one or one whose key may not.
func authFunctionURL(t *testing.T, s *server) {
	t.Helper()
	ctx := t.Context()
	cfg, err := s.client().CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{
		FunctionName: aws.String("team-a-one"), AuthType: types.FunctionUrlAuthTypeAwsIam,
	})
	if err != nil {
		t.Fatalf("CreateFunctionUrlConfig AWS_IAM: %v", err)
	}
	u := strings.TrimSuffix(aws.ToString(cfg.FunctionUrl), "/") + "/hello?x=1"
	call := func(c aws.Credentials, body string) answer {
		req, _ := http.NewRequest("POST", u, strings.NewReader(body))
		if c.AccessKeyID != "" {
			if err := v4.NewSigner().SignHTTP(ctx, c, req, sha256Hex([]byte(body)), "lambda", "us-east-1", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		return send(t, req)
	}
	mine := createKey(t, s, "url-a", "invoker", "team-a-one").creds()
	other := createKey(t, s, "url-b", "invoker", "team-b-*").creds()
	if got := call(mine, `{"k":1}`); got.StatusCode != 200 {
		t.Errorf("signed call of an AWS_IAM function URL: %d %s", got.StatusCode, got.Body)
	}
	if got := call(aws.Credentials{}, `{"k":1}`); got.StatusCode != 403 {
		t.Errorf("unsigned call of an AWS_IAM function URL: %d %s", got.StatusCode, got.Body)
	}
	if got := call(other, `{"k":1}`); got.StatusCode != 403 {
		t.Errorf("call by another function's invoker key: %d %s", got.StatusCode, got.Body)
	}
	// The function's policy can grant the other key lambda:InvokeFunctionUrl
	// (with the URL's auth type as its condition, as the AWS CLI writes it);
	// lambda:InvokeFunction does not grant the URL, nor another condition.
	grant := func(sid, action string, mod func(*lambda.AddPermissionInput)) {
		t.Helper()
		in := &lambda.AddPermissionInput{FunctionName: aws.String("team-a-one"), StatementId: aws.String(sid),
			Action: aws.String(action), Principal: aws.String(other.AccessKeyID)}
		if mod != nil {
			mod(in)
		}
		if _, err := s.client().AddPermission(ctx, in); err != nil {
			t.Fatalf("AddPermission %s: %v", sid, err)
		}
	}
	grant("invoke", "lambda:InvokeFunction", nil)
	grant("url-other-account", "lambda:InvokeFunctionUrl", func(in *lambda.AddPermissionInput) { in.SourceAccount = aws.String("111111111111") })
	if got := call(other, `{"k":1}`); got.StatusCode != 403 {
		t.Errorf("call by a key granted InvokeFunction only: %d %s", got.StatusCode, got.Body)
	}
	grant("url", "lambda:InvokeFunctionUrl", func(in *lambda.AddPermissionInput) { in.FunctionUrlAuthType = types.FunctionUrlAuthTypeAwsIam })
	if got := call(other, `{"k":1}`); got.StatusCode != 200 {
		t.Errorf("call by a key granted InvokeFunctionUrl by the function's policy: %d %s", got.StatusCode, got.Body)
	}
}

// authKeysCLI: nimbus keys ls, rotate (the old secret is refused; rotating
// the credentials file's key rewrites the file) and rm.
func authKeysCLI(t *testing.T, s *server) {
	t.Helper()
	ctx := t.Context()
	out, errOut, err := nimbusCLI(t, s, "keys", "ls", "-o", "json")
	if err != nil || !strings.Contains(out, `"dev-a"`) || strings.Contains(out, "SecretAccessKey") {
		t.Errorf("nimbus keys ls: %v %s %s", err, out, errOut)
	}
	k := createKey(t, s, "rot", "developer", "*")
	out, errOut, err = nimbusCLI(t, s, "keys", "rotate", "rot", "-o", "json")
	var rotated key
	if err != nil || json.Unmarshal([]byte(out), &rotated) != nil || rotated.SecretAccessKey == "" {
		t.Fatalf("nimbus keys rotate rot: %v %s %s", err, out, errOut)
	}
	if _, err := clientAs(s, k.creds()).ListFunctions(ctx, nil); err == nil {
		t.Errorf("the key's old secret still works after rotate")
	}
	if _, err := clientAs(s, rotated.creds()).ListFunctions(ctx, nil); err != nil {
		t.Errorf("the rotated key: %v", err)
	}
	if _, errOut, err := nimbusCLI(t, s, "keys", "rm", "rot"); err != nil {
		t.Errorf("nimbus keys rm rot: %v %s", err, errOut)
	}
	_, err = clientAs(s, rotated.creds()).ListFunctions(ctx, nil)
	wantAPIError(t, "a removed key", err, 403, "UnrecognizedClientException", "security token")

	// The admin key of the credentials file: the CLI signs with the file,
	// which is rewritten, so the CLI goes on working.
	old := s.creds
	if _, errOut, err := nimbusCLI(t, s, "keys", "rotate", "admin", "-o", "json"); err != nil {
		t.Fatalf("nimbus keys rotate admin: %v %s", err, errOut)
	}
	_, err = clientAs(s, old).ListFunctions(ctx, nil)
	if err == nil {
		t.Errorf("the admin key's old secret still works after rotate")
	}
	s.creds = loadCreds(t, s.addr, s.dir)
	if s.creds == old {
		t.Fatalf("the credentials file still holds the old key")
	}
	if _, errOut, err := nimbusCLI(t, s, "ls"); err != nil {
		t.Errorf("nimbus ls with the rewritten credentials file: %v %s", err, errOut)
	}
	if out, errOut, err := nimbusCLI(t, s, "keys", "create", "x", "--role", "root", "-o", "json"); err == nil || out != "" || !strings.Contains(errOut, "--role") {
		t.Errorf("nimbus keys create --role root: %v %q %q", err, out, errOut)
	}
}

// TestAuthFailureLimit: after a burst of failed authentications from an
// address, that address gets 429 TooManyRequestsException, even with a
// correct signature, on the API and on function URLs.
func TestAuthFailureLimit(t *testing.T) {
	s := startServer(t, dataDir(t))
	ctx := t.Context()
	create(t, s.client(), "limited", echoSrc)
	cfg, err := s.client().CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{
		FunctionName: aws.String("limited"), AuthType: types.FunctionUrlAuthTypeAwsIam,
	})
	if err != nil {
		t.Fatal(err)
	}
	bad := aws.Credentials{AccessKeyID: s.creds.AccessKeyID, SecretAccessKey: "wrong"}
	limited := false
	for i := 0; i < 200 && !limited; i++ {
		got := signedDo(t, s, bad, "GET", "/2015-03-31/functions/", "")
		switch {
		case got.StatusCode == 429:
			limited = true
		case got.StatusCode != 403:
			t.Fatalf("failed attempt %d: %d %s", i, got.StatusCode, got.Body)
		}
	}
	if !limited {
		t.Fatal("200 failed authentications and no 429")
	}
	got := signedDo(t, s, s.creds, "GET", "/2015-03-31/functions/", "")
	if got.StatusCode != 429 || got.Type != "TooManyRequestsException" {
		t.Errorf("correct signature after the burst: %d %s", got.StatusCode, got.Body)
	}
	req, _ := http.NewRequest("GET", aws.ToString(cfg.FunctionUrl), nil)
	if err := v4.NewSigner().SignHTTP(ctx, s.creds, req, sha256Hex(nil), "lambda", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := send(t, req); got.StatusCode != 429 {
		t.Errorf("function URL after the burst: %d %s", got.StatusCode, got.Body)
	}
	if resp, err := http.Get("http://" + s.addr + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz after the burst: %v %v", resp, err)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
