package node_test

// Benchmarks of the costs that grow with the number of functions (issue
// 11), against a real node. docs/BENCHMARKS.md has the commands and the
// latest figures.
//
//   - BenchmarkListFunctions: one ListFunctions page through the API
//     (MaxItems 50 and 1000, from the start and from a marker in the
//     middle), at 1,000 and 10,000 functions.
//   - BenchmarkStartStop: node.Open until the API answers, and Shutdown,
//     with 10 (the baseline) and 10,000 functions.
//
// The functions share one small Python package; every 10th has a function
// URL (an http trigger) and every 100th a timer trigger. Creating 10,000
// takes a minute or two, so each set's data directory is kept under
// $TMPDIR/nimbus-bench-scale-* and reused by later runs (delete it to start
// over).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// scaleSetVersion names the layout of a kept data directory; change it
// when the set's functions change.
const scaleSetVersion = 1

// scaleCreators is how many clients create a set's functions at once.
const scaleCreators = 32

// scaleConfig is the config of a node on a kept data directory.
func scaleConfig(dir string) node.Config {
	cfg := node.Defaults()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.ShutdownGrace = 10 * time.Second
	cfg.Auth = node.AuthNone // start and stop are measured, not signing
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

// runningNode is a node serving on a kept data directory.
type runningNode struct {
	n    *node.Node
	done chan error
}

func openScaleNode(b *testing.B, dir string) *runningNode {
	b.Helper()
	return serveNode(b, scaleConfig(dir))
}

// serveNode opens a node with cfg and serves it until stop.
func serveNode(tb testing.TB, cfg node.Config) *runningNode {
	tb.Helper()
	n, err := node.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open node: %v", err)
	}
	rn := &runningNode{n: n, done: make(chan error, 1)}
	go func() { rn.done <- n.Serve() }()
	return rn
}

func (rn *runningNode) stop(tb testing.TB) {
	tb.Helper()
	if err := rn.n.Shutdown(context.Background()); err != nil {
		tb.Errorf("shutdown: %v", err)
	}
	if err := <-rn.done; err != nil {
		tb.Errorf("serve: %v", err)
	}
}

// scaleSet returns a data directory holding count functions, making it
// (once) if needed.
func scaleSet(b *testing.B, count int) string {
	b.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("nimbus-bench-scale-v%d-%d", scaleSetVersion, count))
	ready := filepath.Join(dir, "bench-ready")
	if _, err := os.Stat(ready); err == nil {
		return dir
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	rn := openScaleNode(b, dir)
	createSet(b, rn.n, count)
	rn.stop(b)
	b.Logf("made %d functions in %s (%s)", count, time.Since(start).Round(time.Millisecond), dir)
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

// scaleName is the name of the set's i-th function.
func scaleName(i int) string { return fmt.Sprintf("fn-%05d", i) }

// createSet creates count functions on n, scaleCreators at a time.
func createSet(b *testing.B, n *node.Node, count int) {
	b.Helper()
	c := lambdaClient(n)
	zip := nodetest.Zip(b, map[string]string{"app.py": "def handler(event, context):\n    return event\n"})
	work := make(chan int)
	errs := make(chan error, scaleCreators)
	var wg sync.WaitGroup
	for range scaleCreators {
		wg.Go(func() {
			for i := range work {
				if err := createOne(b.Context(), n, c, zip, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	go func() {
		defer close(work)
		for i := range count {
			select {
			case work <- i:
			case err := <-errs:
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// createOne creates the set's i-th function and its triggers.
func createOne(ctx context.Context, n *node.Node, c *lambda.Client, zip []byte, i int) error {
	name := scaleName(i)
	_, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.RuntimePython311, Handler: aws.String("app.handler"),
		Role: aws.String("arn:aws:iam::000000000000:role/bench"), Code: &types.FunctionCode{ZipFile: zip},
	})
	if err != nil {
		return fmt.Errorf("CreateFunction %s: %w", name, err)
	}
	if i%10 == 0 {
		if err := postTrigger(n, name, `{"name":"url","type":"http","config":{"authType":"NONE"}}`); err != nil {
			return err
		}
	}
	if i%100 == 0 {
		return postTrigger(n, name, `{"name":"hourly","type":"timer","config":{"schedule":"@hourly"}}`)
	}
	return nil
}

func postTrigger(n *node.Node, function, body string) error {
	resp, err := http.Post(nodetest.Endpoint(n)+"/nimbus/v1/functions/"+function+"/triggers", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("create trigger on %s: %d %s", function, resp.StatusCode, msg)
	}
	return nil
}

// listPage is one ListFunctions answer.
type listPage struct {
	Functions []struct {
		FunctionName string
	}
	NextMarker *string
}

// pageURL is the URL of a ListFunctions page.
func pageURL(base string, maxItems int, marker string) string {
	url := fmt.Sprintf("%s/2015-03-31/functions/?MaxItems=%d", base, maxItems)
	if marker != "" {
		url += "&Marker=" + marker
	}
	return url
}

// getRaw fetches a ListFunctions answer without decoding it.
func getRaw(hc *http.Client, url string) ([]byte, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ListFunctions: %d %s", resp.StatusCode, body)
	}
	return body, nil
}

// getPage fetches and decodes one ListFunctions page.
func getPage(hc *http.Client, base string, maxItems int, marker string) (listPage, error) {
	var p listPage
	body, err := getRaw(hc, pageURL(base, maxItems, marker))
	if err != nil {
		return p, err
	}
	err = json.Unmarshal(body, &p)
	return p, err
}

// BenchmarkListFunctions times one ListFunctions page through the API (the
// whole HTTP round trip, with decoding the answer) at 1,000 and 10,000
// functions. Target: under 10 ms a page, whatever the total.
func BenchmarkListFunctions(b *testing.B) {
	for _, count := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("functions-%d", count), func(b *testing.B) {
			dir := scaleSet(b, count)
			rn := openScaleNode(b, dir)
			defer rn.stop(b)
			base := nodetest.Endpoint(rn.n)
			hc := httpClient(b, 1)
			for _, maxItems := range []int{50, 1000} {
				for _, from := range []string{"first", "middle"} {
					marker, first := "", 0
					if from == "middle" {
						marker, first = scaleName(count/2), count/2+1
					}
					b.Run(fmt.Sprintf("max-%d/%s", maxItems, from), func(b *testing.B) {
						benchPage(b, hc, base, maxItems, marker, first, count-first)
					})
				}
			}
		})
	}
}

// benchPage fetches the same page b.N times: the names from the one after
// the marker (first is its index), left of them in all. The first answer
// is decoded and checked; the timed ones are only read and counted, as a
// client decoding a 1,000-function answer (~1 MB of JSON) with
// encoding/json spends more than the server does.
func benchPage(b *testing.B, hc *http.Client, base string, maxItems int, marker string, first, left int) {
	want, more := min(maxItems, left), left > maxItems
	p, err := getPage(hc, base, maxItems, marker)
	if err != nil {
		b.Fatal(err)
	}
	if len(p.Functions) != want || (p.NextMarker != nil) != more {
		b.Fatalf("page of %d functions (next marker %v), want %d (a next marker: %t)", len(p.Functions), p.NextMarker, want, more)
	}
	for i, f := range p.Functions {
		if f.FunctionName != scaleName(first+i) {
			b.Fatalf("function %d of the page is %s, want %s", i, f.FunctionName, scaleName(first+i))
		}
	}
	if more && *p.NextMarker != scaleName(first+want-1) {
		b.Fatalf("next marker %s, want %s", *p.NextMarker, scaleName(first+want-1))
	}
	url := pageURL(base, maxItems, marker)
	size := 0
	for b.Loop() {
		body, err := getRaw(hc, url)
		if err != nil {
			b.Fatal(err)
		}
		if n := bytes.Count(body, []byte(`"FunctionName":`)); n != want {
			b.Fatalf("page of %d functions, want %d", n, want)
		}
		size = len(body)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
	b.ReportMetric(float64(size)/1024, "KiB/page")
}

// BenchmarkStartStop times node.Open until the API answers a ListFunctions,
// and Shutdown, with 10 and 10,000 functions. Targets at 10,000: ready in
// under 3 s, stopped in under 2 s.
func BenchmarkStartStop(b *testing.B) {
	for _, count := range []int{10, 10000} {
		b.Run(fmt.Sprintf("functions-%d", count), func(b *testing.B) {
			dir := scaleSet(b, count)
			var open, stop time.Duration
			for b.Loop() {
				t0 := time.Now()
				rn := openScaleNode(b, dir)
				if _, err := getPage(http.DefaultClient, nodetest.Endpoint(rn.n), 1, ""); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				rn.stop(b)
				open += t1.Sub(t0)
				stop += time.Since(t1)
			}
			b.ReportMetric(float64(open.Milliseconds())/float64(b.N), "ms-open")
			b.ReportMetric(float64(stop.Milliseconds())/float64(b.N), "ms-stop")
		})
	}
}
