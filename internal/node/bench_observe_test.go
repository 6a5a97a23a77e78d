package node_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// BenchmarkObservabilityWarmInvoke measures what invocation records,
// usage, durable logs, metrics and traces add to a warm invoke of the
// no-op Go function: three nodes in this process, one with all of it off
// (node.Config.NoObservability), one as shipped (all on but traces, which
// wait for a collector to be configured), one with traces exported over
// OTLP to a collector on loopback that drops them. Each iteration invokes
// the three in turn, so that they see the same load (the machine is
// shared). Reported: each node's p50 and p99, and the p50 of the
// per-iteration differences from the node with it all off (added-p50-us),
// also as a percentage of that node's p50. Target (issue 14): within 5 %.
func BenchmarkObservabilityWarmInvoke(b *testing.B) {
	body := []byte(`{"sleep_ms":0}`)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(collector.Close)
	nodes := []struct {
		name string
		mod  func(*node.Config)
		url  string
	}{
		{name: "off", mod: func(c *node.Config) { c.NoObservability = true }},
		{name: "shipped"},
		{name: "traced", mod: func(c *node.Config) { c.OTLPEndpoint = collector.URL }},
	}
	for i := range nodes {
		n := nodetest.Start(b, nodes[i].mod)
		nodes[i].url = deploy(b, n, lambdaClient(n), goFunction(b, "noop"))
	}
	b.Run("serial", func(b *testing.B) {
		hcs := make([]*http.Client, len(nodes))
		for i := range nodes {
			hcs[i] = httpClient(b, 1)
		}
		for range 100 {
			for i := range nodes {
				timedInvoke(b, hcs[i], nodes[i].url, body, aws.Credentials{})
			}
		}
		took := make([][]time.Duration, len(nodes))
		added := make([][]time.Duration, len(nodes))
		for b.Loop() {
			var off time.Duration
			for i := range nodes {
				d := timedInvoke(b, hcs[i], nodes[i].url, body, aws.Credentials{})
				if i == 0 {
					off = d
				}
				took[i] = append(took[i], d)
				added[i] = append(added[i], d-off)
			}
		}
		base := float64(percentile(took[0], 0.5))
		for i, n := range nodes {
			b.ReportMetric(float64(percentile(took[i], 0.5))/1e3, n.name+"-p50-us")
			b.ReportMetric(float64(percentile(took[i], 0.99))/1e3, n.name+"-p99-us")
			if i > 0 {
				a := float64(percentile(added[i], 0.5))
				b.ReportMetric(a/1e3, n.name+"-added-p50-us")
				b.ReportMetric(100*a/base, n.name+"-added-%")
			}
		}
	})
}
