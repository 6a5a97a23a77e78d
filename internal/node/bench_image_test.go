package node_test

import (
	"fmt"
	"maps"
	"slices"
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
	return deployImageFiles(b, n, c, reg, name, nil)
}

// distroFiles is the layout of a distribution's base image (debian:12's
// top-level directories, 60 entries in /etc) with one small file in each:
// each top-level entry and each of /etc's costs the instance's root its
// own mounts.
func distroFiles() map[string][]byte {
	files := map[string][]byte{}
	for _, d := range []string{"bin", "boot", "home", "lib", "lib64", "media", "mnt", "opt", "root", "run", "sbin", "srv", "usr", "var"} {
		files[d+"/.keep"] = []byte("x")
	}
	for i := range 60 {
		files[fmt.Sprintf("etc/file%02d", i)] = []byte("x")
	}
	return files
}

// deployImageFiles is deployImage with more files in the image.
func deployImageFiles(b *testing.B, n *node.Node, c *lambda.Client, reg *imagetest.Registry, name string, more map[string][]byte) string {
	b.Helper()
	bin, err := noopBinary()
	if err != nil {
		b.Fatal(err)
	}
	files := map[string][]byte{"bootstrap": bin}
	maps.Copy(files, more)
	ref, _, _ := reg.Push(b, name+":bench", files, v1.Config{Entrypoint: []string{"/bootstrap"}})
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
// binary as a zip (provided.al2023), alternately in one loop so that all
// see the same machine: "image" holds the binary alone, "image-distro" a
// distribution's layout around it (distroFiles). Target (issue 18): the image's p50 within 2 ms of
// the zip's. Each iteration first makes a new version of both (outside the
// timer) and waits until their old instances have exited.
func BenchmarkColdStartImage(b *testing.B) {
	n := nodetest.Start(b, nil)
	c := lambdaClient(n)
	reg := imagetest.NewRegistry(b)
	zipFn := goFunction(b, "cold-zip")
	urls := map[string]string{"zip": deploy(b, n, c, zipFn), "image": deployImage(b, n, c, reg, "cold-image"),
		"image-distro": deployImageFiles(b, n, c, reg, "cold-image-distro", distroFiles())}
	names := map[string]string{"zip": zipFn.name, "image": "cold-image", "image-distro": "cold-image-distro"}
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
		order := []string{"zip", "image", "image-distro"}
		if i%2 == 1 {
			slices.Reverse(order)
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
	for _, k := range []string{"zip", "image", "image-distro"} {
		b.ReportMetric(float64(percentile(lat[k], 0.5))/float64(time.Millisecond), k+"-p50-ms")
		b.ReportMetric(float64(percentile(lat[k], 0.99))/float64(time.Millisecond), k+"-p99-ms")
	}
	for _, k := range []string{"image", "image-distro"} {
		b.ReportMetric(float64(percentile(lat[k], 0.5)-percentile(lat["zip"], 0.5))/float64(time.Millisecond), k+"-minus-zip-p50-ms")
	}
	for _, name := range names {
		newConfig(b, c, name)
	}
	waitChildren(b, 0)
}
