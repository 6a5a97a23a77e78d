package node_test

// BenchmarkAsyncManyFunctions (issue 11.9): asynchronous dispatch across
// more functions than the previous design's cap of one JetStream consumer
// per function allowed.

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
)

// fanoutFns is how many functions BenchmarkAsyncManyFunctions deploys.
const fanoutFns = 2000

// fanoutIdle is the node's instance idle timeout in that benchmark: an
// instance exits soon after its one invoke, so that the node does not hold
// 2,000 idle instances (memory) and each run starts cold.
const fanoutIdle = 2 * time.Second

// BenchmarkAsyncManyFunctions submits one asynchronous event to each of
// 2,000 Python functions at once (64 clients) and measures the time until
// every one has succeeded ("async", s-all-ran; s-submitted: until the last
// submit was answered). Each run of a function sends its request id (the
// task id) in a UDP datagram to the benchmark, which reports how many runs
// there were beyond one per event (extra-runs: events run more than once)
// and events whose run it did not hear of (unheard: a lost datagram, or an
// event that succeeded without running). Every function starts cold: it is a new instance per
// function, so the figure is bounded by 2,000 cold starts on this machine.
// Baselines in the same run: "sync-baseline" invokes the same 2,000
// functions synchronously, once each, from 64 clients (the node's async
// concurrency), cold again (the engine's floor for this work);
// "async-one-function" submits 2,000 events to one function (dispatch
// without 2,000 cold starts). Before each run the benchmark waits until no
// instance is left (idle timeout 2 s). Run with -benchtime 1x: each
// -count deploys the 2,000 functions again (~1 minute).
func BenchmarkAsyncManyFunctions(b *testing.B) {
	n := nodetest.Start(b, func(c *node.Config) { c.IdleTimeout = fanoutIdle })
	c := lambdaClient(n)
	runs := countRuns(b)
	py := pythonFunction(b, "")
	env := map[string]string{"BENCH_UDP_PORT": strconv.Itoa(runs.port)}
	names := make([]string, fanoutFns)
	for i := range names {
		names[i] = fmt.Sprintf("many-%04d", i)
	}
	createAll(b, c, py, env, append(names, "one"))
	hc := httpClient(b, submitClients)
	url := func(fn string) string { return nodetest.Endpoint(n) + "/2015-03-31/functions/" + fn + "/invocations" }
	b.Run("async", func(b *testing.B) {
		var ran, submitted []time.Duration
		extra, unheard := 0, 0
		for b.Loop() {
			b.StopTimer()
			waitNoInstances(b, n, names)
			runs.reset()
			b.StartTimer()
			sub, all, ids := fanout(b, hc, n.Async(), names, url)
			submitted, ran = append(submitted, sub), append(ran, all)
			b.StopTimer()
			e, u := runs.check(ids)
			extra, unheard = extra+e, unheard+u
			b.StartTimer()
		}
		reportSeconds(b, ran, "s-all-ran")
		reportSeconds(b, submitted, "s-submitted")
		b.ReportMetric(float64(extra), "extra-runs")
		b.ReportMetric(float64(unheard), "unheard")
	})
	b.Run("sync-baseline", func(b *testing.B) {
		var took []time.Duration
		for b.Loop() {
			b.StopTimer()
			waitNoInstances(b, n, names)
			b.StartTimer()
			began := time.Now()
			var next atomic.Int64
			eachClient(b, func() error {
				for i := next.Add(1) - 1; i < fanoutFns; i = next.Add(1) - 1 {
					if err := post(hc, url(names[i]), []byte(`{}`)); err != nil {
						return err
					}
				}
				return nil
			})
			took = append(took, time.Since(began))
		}
		reportSeconds(b, took, "s-all-ran")
	})
	b.Run("async-one-function", func(b *testing.B) {
		one := make([]string, fanoutFns)
		for i := range one {
			one[i] = "one"
		}
		var ran []time.Duration
		for b.Loop() {
			b.StopTimer()
			waitNoInstances(b, n, []string{"one"})
			b.StartTimer()
			_, all, _ := fanout(b, hc, n.Async(), one, url)
			ran = append(ran, all)
		}
		reportSeconds(b, ran, "s-all-ran")
	})
}

// pyHandler answers at once, after sending its request id in a UDP
// datagram to 127.0.0.1:$BENCH_UDP_PORT (_socket: the socket module's
// imports would cost the cold start a few milliseconds).
const pyHandler = `import os, _socket
sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
port = int(os.environ.get("BENCH_UDP_PORT", "0"))

def handler(event, context):
    if port:
        sock.sendto(context.aws_request_id.encode(), ("127.0.0.1", port))
    return {"statusCode": 200}
`

// pythonFunction is a Python function that answers at once.
func pythonFunction(b *testing.B, name string) function {
	b.Helper()
	for _, rt := range runtimes.Discover(slog.New(slog.DiscardHandler)) {
		if rt.Kind == runtimes.KindPython {
			return function{name: name, runtime: rt.ID, handler: "app.handler", timeout: 30,
				files: map[string][]byte{"app.py": []byte(pyHandler)}}
		}
	}
	b.Skip("no Python runtime on this host")
	return function{}
}

// createAll creates a function f with environment env named each of names,
// from 8 clients, and waits until every one is Active.
func createAll(b *testing.B, c *lambda.Client, f function, env map[string]string, names []string) {
	b.Helper()
	zip := zipOf(b, f)
	var next atomic.Int64
	create := func() error {
		for i := next.Add(1) - 1; i < int64(len(names)); i = next.Add(1) - 1 {
			_, err := c.CreateFunction(b.Context(), &lambda.CreateFunctionInput{
				FunctionName: aws.String(names[i]), Runtime: types.Runtime(f.runtime), Handler: aws.String(f.handler),
				Role: aws.String("arn:aws:iam::000000000000:role/bench"), Timeout: aws.Int32(f.timeout),
				Code: &types.FunctionCode{ZipFile: zip}, Environment: &types.Environment{Variables: env},
			})
			if err != nil {
				return fmt.Errorf("CreateFunction %s: %w", names[i], err)
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = create() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	for _, name := range names {
		waitUpdated(b, c, name)
	}
}

// eachClient runs do from submitClients goroutines and fails on the first
// error.
func eachClient(b *testing.B, do func() error) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make([]error, submitClients)
	for i := range errs {
		wg.Go(func() { errs[i] = do() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
}

// fanout submits one event to each of fns (a name may repeat) from
// submitClients clients and returns the time until the last submit was
// answered and until every task had succeeded, and the task ids.
func fanout(b *testing.B, hc *http.Client, svc *async.Service, fns []string, url func(string) string) (submitted, all time.Duration, ids []string) {
	b.Helper()
	began := time.Now()
	ids = make([]string, len(fns))
	var next atomic.Int64
	eachClient(b, func() error {
		for i := next.Add(1) - 1; i < int64(len(fns)); i = next.Add(1) - 1 {
			id, err := submitTask(hc, url(fns[i]))
			if err != nil {
				return err
			}
			ids[i] = id
		}
		return nil
	})
	submitted = time.Since(began)
	waitSucceeded(b, svc, fns, ids)
	return submitted, time.Since(began), ids
}

// runCounter counts the datagrams the functions send, by request id.
type runCounter struct {
	port int
	mu   sync.Mutex
	runs map[string]int
}

// countRuns listens for the functions' datagrams on a free 127.0.0.1 port.
func countRuns(b *testing.B) *runCounter {
	b.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pc.Close() })
	rc := &runCounter{port: pc.LocalAddr().(*net.UDPAddr).Port, runs: map[string]int{}}
	go func() {
		buf := make([]byte, 256)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			rc.mu.Lock()
			rc.runs[string(buf[:n])]++
			rc.mu.Unlock()
		}
	}()
	return rc
}

func (rc *runCounter) reset() {
	rc.mu.Lock()
	rc.runs = map[string]int{}
	rc.mu.Unlock()
}

// check waits a moment for datagrams in flight, then returns the runs
// beyond one per task of ids, and the tasks it heard no run of.
func (rc *runCounter) check(ids []string) (extra, unheard int) {
	time.Sleep(500 * time.Millisecond)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, id := range ids {
		switch n := rc.runs[id]; {
		case n == 0:
			unheard++
		default:
			extra += n - 1
		}
	}
	return extra, unheard
}

// submitTask posts an asynchronous invoke and returns its task id.
func submitTask(hc *http.Client, url string) (string, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader(`{}`))
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	id := resp.Header.Get("X-Nimbus-Task-Id")
	if resp.StatusCode != http.StatusAccepted || id == "" {
		return "", fmt.Errorf("async invoke %s: status %d, task id %q", url, resp.StatusCode, id)
	}
	return id, nil
}

// waitSucceeded polls every 10 ms until each task (of fns[i], id ids[i])
// has succeeded; a task that ends otherwise fails the benchmark.
func waitSucceeded(b *testing.B, svc *async.Service, fns, ids []string) {
	b.Helper()
	left := make([]int, len(ids))
	for i := range left {
		left[i] = i
	}
	deadline := time.Now().Add(10 * time.Minute)
	for len(left) > 0 {
		rest := left[:0]
		for _, i := range left {
			t, err := svc.Task(fns[i], ids[i])
			switch {
			case err == nil && t.Status == nimbus.TaskSucceeded:
			case err == nil && nimbus.TaskFinal(t.Status):
				b.Fatalf("task %s of %s: %+v", ids[i], fns[i], t)
			default:
				rest = append(rest, i)
			}
		}
		left = rest
		if len(left) > 0 && time.Now().After(deadline) {
			t, err := svc.Task(fns[left[0]], ids[left[0]])
			b.Fatalf("%d tasks not done after 10 minutes, one of them: %+v %v", len(left), t, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitNoInstances waits until none of fns has an instance.
func waitNoInstances(b *testing.B, n *node.Node, fns []string) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		busy := ""
		for _, fn := range fns {
			if n.Engine().Stats(fn).Instances > 0 {
				busy = fn
				break
			}
		}
		if busy == "" {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s still has instances (%+v) after 2 minutes", busy, n.Engine().Stats(busy))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reportSeconds reports the median of ds in seconds as unit.
func reportSeconds(b *testing.B, ds []time.Duration, unit string) {
	b.ReportMetric(percentile(ds, 0.5).Seconds(), unit)
}
