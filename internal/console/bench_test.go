package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/records"
)

// BenchmarkConsolePages measures how long each console page takes to
// render server-side (request to last byte, on loopback) with 1,000
// functions and 1,000,000 invocation records in the last 23 hours, the
// records written through the node's records store and folded into the
// statistics by its aggregator, as invocations would be. The baseline,
// in the same run, is the API's ListFunctions of the same 1,000
// functions. The target (issue 15): each page under 200 ms.
func BenchmarkConsolePages(b *testing.B) {
	const functions, total = 1000, 1_000_000
	n := nodetest.Start(b, func(c *node.Config) { c.PrestartedHelpers = 0 })
	base := nodetest.Endpoint(n)
	seedFunctions(b, base, functions)
	seedRecords(b, n, base, functions, total)
	for _, p := range []struct{ name, path string }{
		{"baseline-api-list-functions", "/2015-03-31/functions?MaxItems=10000"},
		{"overview", "/console/"},
		{"functions", "/console/functions"},
		{"functions-sorted-by-invocations", "/console/functions?sort=invocations&dir=desc"},
		{"function-1h", "/console/functions/fn-0007"},
		{"function-24h", "/console/functions/fn-0007?window=24h"},
		{"function-7d", "/console/functions/fn-0007?window=7d"},
		{"usage", "/console/usage"},
		{"usage-csv", "/console/usage.csv"},
	} {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				res, err := http.Get(base + p.path)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || n == 0 {
					b.Fatalf("%s: %d", p.path, res.StatusCode)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
		})
	}
}

func seedFunctions(b *testing.B, base string, count int) {
	b.Helper()
	zip := nodetest.Zip(b, map[string]string{"lambda_function.py": "def handler(event, context):\n    return event\n"})
	for i := range count {
		body, _ := json.Marshal(map[string]any{"FunctionName": fmt.Sprintf("fn-%04d", i), "Runtime": "python3.11",
			"Handler": "lambda_function.handler", "Role": "arn:aws:iam::000000000000:role/x", "Code": map[string]any{"ZipFile": zip}})
		res, err := http.Post(base+"/2015-03-31/functions", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			b.Fatalf("create function %d: %d", i, res.StatusCode)
		}
	}
}

// seedRecords adds total records spread over the functions and the last
// 24 hours, and waits until the statistics hold all of them.
func seedRecords(b *testing.B, n *node.Node, base string, functions, total int) {
	b.Helper()
	st := n.Records()
	now := time.Now()
	statuses := []string{records.StatusSuccess, records.StatusSuccess, records.StatusSuccess, records.StatusFunctionError}
	for i := range total {
		start := now.Add(-time.Duration(i%82_800) * time.Second) // 23 h: inside the 24 h window, whatever its alignment
		r := records.Record{RequestID: fmt.Sprintf("c1b0d3e2-9f8a-4b7c-8d6e-%012d", i), Function: fmt.Sprintf("fn-%04d", i%functions),
			Qualifier: "$LATEST", Trigger: "api", StartTime: start, EndTime: start.Add(3 * time.Millisecond), Duration: float64(1 + i%50),
			BilledDuration: int64(1 + i%50), MemorySize: 128, MaxMemoryUsed: 20, ColdStart: i%100 == 0, Node: "bench",
			Status: statuses[i%len(statuses)]}
		st.Add(&r)
		if i%100_000 == 99_999 {
			if err := st.Flush(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := st.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	if st.Dropped() > 0 {
		b.Fatalf("dropped %d records", st.Dropped())
	}
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	for {
		var rep struct {
			Total struct{ Invocations, Errors int64 }
		}
		res, err := http.Get(base + "/nimbus/v1/stats?window=24h")
		if err != nil {
			b.Fatal(err)
		}
		_ = json.NewDecoder(res.Body).Decode(&rep)
		res.Body.Close()
		if rep.Total.Invocations == int64(total) {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("the statistics hold %d of %d records after 10 minutes", rep.Total.Invocations, total)
		case <-time.After(time.Second):
		}
	}
}
