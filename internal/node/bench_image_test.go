package node_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nimbus-serverless/nimbus/internal/image/imagetest"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// deployImage pushes the no-op Go function as an image (the binary as
// /bootstrap, its ENTRYPOINT) to reg, creates function name from it, waits
// until it is Active (the image pulled and unpacked on n) and returns its
// invoke URL.
func deployImage(b *testing.B, n *node.Node, c *lambda.Client, reg *imagetest.Registry, name string) string {
	b.Helper()
	bin, err := noopBinary()
	if err != nil {
		b.Fatal(err)
	}
	ref, _, _ := reg.Push(b, "noop:bench", map[string][]byte{"bootstrap": bin}, v1.Config{Entrypoint: []string{"/bootstrap"}})
	_, err = c.CreateFunction(b.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Role: aws.String("arn:aws:iam::000000000000:role/bench"),
		PackageType: types.PackageTypeImage, Code: &types.FunctionCode{ImageUri: aws.String(ref)}, Timeout: aws.Int32(30),
	})
	if err != nil {
		b.Fatalf("CreateFunction %s: %v", name, err)
	}
	waitUpdated(b, c, name)
	return nodetest.Endpoint(n) + "/2015-03-31/functions/" + name + "/invocations"
}

// BenchmarkColdStartImage times one invoke on a new instance of the no-op
// Go function as a container image already on the node, and of the same
// binary as a zip (provided.al2023), alternately in one loop so that both
// see the same machine. Target (issue 18): the image's p50 within 2 ms of
// the zip's. Each iteration first makes a new version of both (outside the
// timer) and waits until their old instances have exited.
func BenchmarkColdStartImage(b *testing.B) {
	n := nodetest.Start(b, nil)
	c := lambdaClient(n)
	reg := imagetest.NewRegistry(b)
	zipFn := goFunction(b, "cold-zip")
	urls := map[string]string{"zip": deploy(b, n, c, zipFn), "image": deployImage(b, n, c, reg, "cold-image")}
	names := map[string]string{"zip": zipFn.name, "image": "cold-image"}
	hc := httpClient(b, 1)
	body := []byte(`{"sleep_ms":0}`)
	lat := map[string][]time.Duration{}
	i := 0
	for b.Loop() {
		b.StopTimer()
		for _, name := range names {
			newConfig(b, c, name)
		}
		waitChildren(b, 0)
		b.StartTimer()
		order := []string{"zip", "image"}
		if i%2 == 1 {
			order = []string{"image", "zip"}
		}
		i++
		for _, k := range order {
			began := time.Now()
			if err := post(hc, urls[k], body); err != nil {
				b.Fatal(err)
			}
			lat[k] = append(lat[k], time.Since(began))
		}
	}
	for _, k := range []string{"zip", "image"} {
		b.ReportMetric(float64(percentile(lat[k], 0.5))/float64(time.Millisecond), k+"-p50-ms")
		b.ReportMetric(float64(percentile(lat[k], 0.99))/float64(time.Millisecond), k+"-p99-ms")
	}
	b.ReportMetric(float64(percentile(lat["image"], 0.5)-percentile(lat["zip"], 0.5))/float64(time.Millisecond), "image-minus-zip-p50-ms")
	for _, name := range names {
		newConfig(b, c, name)
	}
	waitChildren(b, 0)
}
