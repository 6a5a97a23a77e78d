package api_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/recursion"
)

// TestRecursiveLoop: an Invoke whose trace header says the function ran
// 16 times in its chain already is refused with RecursiveInvocationException,
// unless the function's RecursiveLoop is Allow; the function sees the
// lineage with its own count raised in _X_AMZN_TRACE_ID, which the AWS
// SDKs send on with the calls it makes.
func TestRecursiveLoop(t *testing.T) {
	goBin, err := goBootstrap()
	if err != nil {
		t.Fatalf("build Go function: %v", err)
	}
	c := client(nodetest.Start(t, nil))
	deploy(t, c, fixture{name: "loop", runtime: "provided.al2023", zip: nodetest.Zip(t, map[string][]byte{"bootstrap": goBin}, "bootstrap")})
	const root = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"
	self, other := recursion.Key("loop"), recursion.Key("other")
	invoke := func(trace string) (string, error) {
		out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("loop"), Payload: []byte(`{"echo":"x"}`)},
			lambda.WithAPIOptions(smithyhttp.AddHeaderValue("X-Amzn-Trace-Id", trace)))
		if err != nil {
			return "", err
		}
		var res struct{ Trace string }
		if err := json.Unmarshal(out.Payload, &res); err != nil {
			t.Fatalf("answer %s: %v", out.Payload, err)
		}
		return res.Trace, nil
	}
	for trace, want := range map[string]string{
		root: ";Lineage=" + self + ":1",
		root + ";Lineage=" + other + ":16|" + self + ":15": ";Lineage=" + other + ":16|" + self + ":16",
	} {
		got, err := invoke(trace)
		if err != nil || !strings.HasSuffix(got, want) || !strings.HasPrefix(got, "Root=1-5759e988-bd862e3fe1be46a994272793;") {
			t.Fatalf("invoke with %q: the function saw %q (%v), want the root and ...%s", trace, got, err, want)
		}
	}
	_, err = invoke(root + ";Lineage=" + self + ":16")
	var re *types.RecursiveInvocationException
	if !errors.As(err, &re) || !strings.Contains(re.ErrorMessage(), "recursive loop") {
		t.Fatalf("invoke at the limit: %v, want RecursiveInvocationException", err)
	}
	if _, err := c.PutFunctionRecursionConfig(t.Context(), &lambda.PutFunctionRecursionConfigInput{
		FunctionName: aws.String("loop"), RecursiveLoop: types.RecursiveLoopAllow}); err != nil {
		t.Fatal(err)
	}
	if got, err := invoke(root + ";Lineage=" + self + ":16"); err != nil || !strings.HasSuffix(got, ";Lineage="+self+":17") {
		t.Fatalf("invoke at the limit with Allow: the function saw %q (%v)", got, err)
	}
}
