package node_test

import (
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// BenchmarkColdStartNetwork is a Go function's cold start (request to
// response on a new instance) in each network, host being the baseline:
// what a network namespace of its own costs (docs/BENCHMARKS.md).
func BenchmarkColdStartNetwork(b *testing.B) {
	n := nodetest.Start(b, nil)
	if !n.Isolation().NetworkIsolation {
		b.Skip("the node's sandbox has no network isolation on this host")
	}
	c := lambdaClient(n)
	for _, network := range []string{nimbus.NetworkHost, nimbus.NetworkEgress, nimbus.NetworkNone} {
		fn := goFunction(b, "cold-net-"+network)
		url := deploy(b, n, c, fn)
		setNetwork(b, n, fn.name, network)
		waitUpdated(b, c, fn.name)
		b.Run(network, func(b *testing.B) {
			hc := httpClient(b, 1)
			var lat []time.Duration
			for b.Loop() {
				b.StopTimer()
				newVersion(b, c, fn.name)
				b.StartTimer()
				began := time.Now()
				if err := post(hc, url, []byte(`{}`)); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(began))
			}
			reportLatency(b, lat, "ms")
			newVersion(b, c, fn.name)
		})
	}
}
