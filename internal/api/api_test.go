package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/process"
	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
	"github.com/nimbus-serverless/nimbus/internal/version"
)

func TestMain(m *testing.M) {
	process.MaybeInit()
	os.Exit(m.Run())
}

// client returns an aws-sdk-go-v2 Lambda client for the node; requests are
// SigV4-signed with dummy credentials, as a real user's would be.
func client(n *node.Node) *lambda.Client {
	return lambda.New(lambda.Options{
		HTTPClient:   sdkhttp.Client(),
		BaseEndpoint: aws.String(nodetest.Endpoint(n)),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
	})
}

const pyEcho = "def handler(event, context):\n    return {'echo': event}\n"

func pyZip(t testing.TB) []byte { return nodetest.Zip(t, map[string]string{"app.py": pyEcho}) }

func createPy(t *testing.T, c *lambda.Client, name string, zip []byte) *lambda.CreateFunctionOutput {
	t.Helper()
	out, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name),
		Runtime:      types.RuntimePython311,
		Role:         aws.String("arn:aws:iam::000000000000:role/nimbus"),
		Handler:      aws.String("app.handler"),
		Code:         &types.FunctionCode{ZipFile: zip},
	})
	if err != nil {
		t.Fatalf("CreateFunction %s: %v", name, err)
	}
	return out
}

// waitActive polls until the function is Active and its last update done.
func waitActive(t *testing.T, c *lambda.Client, name string) *lambda.GetFunctionConfigurationOutput {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		out, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		if err != nil {
			t.Fatalf("GetFunctionConfiguration %s: %v", name, err)
		}
		if out.State == types.StateActive && out.LastUpdateStatus == types.LastUpdateStatusSuccessful {
			return out
		}
		if out.State == types.StateFailed {
			t.Fatalf("function %s failed: %s", name, aws.ToString(out.StateReason))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("function %s still %s/%s", name, out.State, out.LastUpdateStatus)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func lambdaSHA(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestReadyz: /readyz answers 200 when every check passes and 503 naming
// each failing check otherwise, in text (first line "ready" or "not
// ready", then the version) or JSON; no check is always ready.
func TestReadyz(t *testing.T) {
	var storeErr, sandboxErr error
	srv := httptest.NewServer(api.New(api.Config{Ready: []api.ReadyCheck{
		{Name: "store", Check: func() error { return storeErr }},
		{Name: "sandbox", Check: func() error { return sandboxErr }},
	}}))
	defer srv.Close()
	get := func(url, accept string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("X-Nimbus-Version") != version.String() {
			t.Errorf("X-Nimbus-Version %q", resp.Header.Get("X-Nimbus-Version"))
		}
		return resp.StatusCode, string(b)
	}
	v := version.String()
	tests := []struct {
		name           string
		store, sandbox error
		code           int
		text           string
		status         string
		storeAt, sbAt  string
	}{
		{"ready", nil, nil, 200, "ready\nversion " + v + "\nstore: ok\nsandbox: ok\n", "ok", "ok", "ok"},
		{"store down", errors.New("store: disk full\nno space"), nil, 503,
			"not ready\nversion " + v + "\nstore: store: disk full; no space\nsandbox: ok\n", "unavailable", "store: disk full; no space", "ok"},
		{"sandbox failing", nil, errors.New("sandbox: pre-starting a helper failed: boom"), 503,
			"not ready\nversion " + v + "\nstore: ok\nsandbox: sandbox: pre-starting a helper failed: boom\n", "unavailable", "ok", "sandbox: pre-starting a helper failed: boom"},
		{"both", errors.New("s1"), errors.New("s2"), 503,
			"not ready\nversion " + v + "\nstore: s1\nsandbox: s2\n", "unavailable", "s1", "s2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			storeErr, sandboxErr = tc.store, tc.sandbox
			if code, body := get(srv.URL+"/readyz", ""); code != tc.code || body != tc.text {
				t.Errorf("text: %d %q, want %d %q", code, body, tc.code, tc.text)
			}
			for _, u := range []struct{ url, accept string }{{srv.URL + "/readyz", "application/json"}, {srv.URL + "/readyz?format=json", ""}} {
				code, body := get(u.url, u.accept)
				var got struct {
					Status, Version string
					Checks          map[string]string
				}
				if err := json.Unmarshal([]byte(body), &got); err != nil || code != tc.code || got.Status != tc.status ||
					got.Version != v || got.Checks["store"] != tc.storeAt || got.Checks["sandbox"] != tc.sbAt || len(got.Checks) != 2 {
					t.Errorf("JSON (%s %q): %d %s (%v)", u.url, u.accept, code, body, err)
				}
			}
		})
	}

	none := httptest.NewServer(api.New(api.Config{}))
	defer none.Close()
	if code, body := get(none.URL+"/readyz", ""); code != 200 || body != "ready\nversion "+v+"\n" {
		t.Errorf("no checks: %d %q", code, body)
	}
}
