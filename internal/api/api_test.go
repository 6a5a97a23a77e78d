package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
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
)

func TestMain(m *testing.M) {
	process.MaybeInit()
	os.Exit(m.Run())
}

// client returns an aws-sdk-go-v2 Lambda client for the node; requests are
// SigV4-signed with dummy credentials, as a real user's would be.
func client(n *node.Node) *lambda.Client {
	return lambda.New(lambda.Options{
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

func TestReadyz(t *testing.T) {
	var down error
	srv := httptest.NewServer(api.New(api.Config{Ready: func() error { return down }}))
	defer srv.Close()
	get := func() int {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(); got != 200 {
		t.Fatalf("ready node: %d", got)
	}
	down = errors.New("disk full")
	if got := get(); got != 503 {
		t.Fatalf("unready node: %d, want 503", got)
	}
}
