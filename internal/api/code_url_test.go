package api_test

import (
	"bytes"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
)

// TestCodeLinkPresigned: on a node with authentication, GetFunction's
// Code.Location is a link presigned by the caller's key, which a plain GET
// downloads (as Lambda's S3 link); a link changed, or without its
// signature, is refused. (Function Compute's GetFunctionCode url is checked
// the same way in the SDK's test, fc.test.js.)
func TestCodeLinkPresigned(t *testing.T) {
	var data string
	n := nodetest.Start(t, func(c *node.Config) { c.Auth, data = node.AuthSigV4, c.DataDir })
	id, secret := nodetest.Credentials(t, filepath.Join(data, "credentials"))
	c := lambda.New(lambda.Options{HTTPClient: sdkhttp.Client(), BaseEndpoint: aws.String(nodetest.Endpoint(n)), Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), RetryMaxAttempts: 1})
	zip := pyZip(t)
	createPy(t, c, "linked", zip)
	got, err := c.GetFunction(t.Context(), &lambda.GetFunctionInput{FunctionName: aws.String("linked")})
	if err != nil {
		t.Fatal(err)
	}
	link := aws.ToString(got.Code.Location)
	if !strings.Contains(link, "X-Amz-Signature=") || !strings.Contains(link, "X-Amz-Expires=600") {
		t.Fatalf("Code.Location %q, want a presigned link", link)
	}
	get := func(u string) (int, []byte) {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	if status, body := get(link); status != 200 || !bytes.Equal(body, zip) {
		t.Errorf("GET of Code.Location: %d, %d bytes; want the %d-byte package", status, len(body), len(zip))
	}
	for name, u := range map[string]string{
		"another function": strings.Replace(link, "/functions/linked/", "/functions/other/", 1),
		"unsigned":         strings.Split(link, "?")[0],
		"longer life":      strings.Replace(link, "X-Amz-Expires=600", "X-Amz-Expires=6000", 1),
	} {
		if status, _ := get(u); status != http.StatusForbidden && status != http.StatusNotFound {
			t.Errorf("%s: GET = %d, want it refused", name, status)
		}
	}
}
