package api_test

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// TestTwoNodes: two nodes share one NATS cluster. A function deployed
// through one runs on the other (which fetches its code from the object
// store), and an update made on one is what the other runs next.
func TestTwoNodes(t *testing.T) {
	prefix := nodetest.SharedNATSPrefix(t)
	shared := func(c *node.Config) { c.NATSURL, c.NATSPrefix = nodetest.SharedNATS, prefix }
	a, b := nodetest.Start(t, shared), nodetest.Start(t, shared)
	ca, cb := client(a), client(b)

	deploy(t, ca, fixture{name: "shared", runtime: "python3.11", handler: "app.handler",
		zip: nodetest.Zip(t, map[string]string{"app.py": "def handler(e, c):\n    return 'v1'\n"})})
	waitActive(t, ca, "shared")
	if out := invoke(t, cb, "shared", `{}`); string(out.Payload) != `"v1"` {
		t.Fatalf("node B ran %s (%s), want v1", out.Payload, aws.ToString(out.FunctionError))
	}
	if _, err := ca.UpdateFunctionCode(t.Context(), &lambda.UpdateFunctionCodeInput{
		FunctionName: aws.String("shared"),
		ZipFile:      nodetest.Zip(t, map[string]string{"app.py": "def handler(e, c):\n    return 'v2'\n"}),
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := invoke(t, cb, "shared", `{}`)
		if string(out.Payload) == `"v2"` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B still runs %s after the update on node A", out.Payload)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := cb.DeleteFunction(t.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String("shared")}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := ca.GetFunction(t.Context(), &lambda.GetFunctionInput{FunctionName: aws.String("shared")})
		var nfe *types.ResourceNotFoundException
		if errors.As(err, &nfe) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node A still has the function node B deleted: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
