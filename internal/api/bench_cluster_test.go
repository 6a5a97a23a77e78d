package api_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/seal"
)

// BenchmarkClusterForward: the added latency of a forwarded invoke. Two
// nodes share the NATS server; a Python function is warm on B only.
// "local" invokes it on B (a warm hit), "forwarded" on A, which forwards
// it to B's instance. Each reports its p50 and p99 in microseconds; the
// difference of the p50s is what a forward adds (docs/BENCHMARKS.md).
func BenchmarkClusterForward(b *testing.B) {
	prefix, key := nodetest.SharedNATSPrefix(b), seal.Generate()
	mod := func(c *node.Config) {
		c.NATSURL, c.NATSPrefix, c.NodeKey = nodetest.SharedNATS, prefix, key
		c.NoObservability = true
	}
	na, nb := nodetest.Start(b, mod), nodetest.Start(b, mod)
	cb := client(nb)
	if _, err := cb.CreateFunction(b.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String("bench"), Runtime: types.RuntimePython311, Handler: aws.String("app.handler"), Role: aws.String("r"),
		Code: &types.FunctionCode{ZipFile: pyZip(b)},
	}); err != nil {
		b.Fatal(err)
	}
	post := func(n *node.Node) {
		resp, err := http.Post(nodetest.Endpoint(n)+"/2015-03-31/functions/bench/invocations", "application/json", strings.NewReader(`{"k":1}`))
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "echo") {
			b.Fatalf("invoke: %s %s", resp.Status, body)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Post(nodetest.Endpoint(nb)+"/2015-03-31/functions/bench/invocations", "application/json", strings.NewReader(`{}`))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the function never ran: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for !na.Members().PeersWarm("bench") {
		if time.Now().After(deadline) {
			b.Fatal("A never saw B's warm instance")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		name string
		n    *node.Node
	}{{"local", nb}, {"forwarded", na}} {
		n := c.n
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				post(n)
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
	if s := na.Engine().Stats("bench"); s.Instances != 0 {
		b.Errorf("A started %d instances: the forwarded runs were not all forwarded", s.Instances)
	}
}
