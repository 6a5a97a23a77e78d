package node_test

// The execution engine's benchmarks, against a real node (the embedded
// store, the process sandbox, real runtimes) on loopback. Each records its
// target's figure and a baseline measured in the same run; docs/BENCHMARKS.md
// has the commands and the latest figures.
//
//   - BenchmarkWarmInvoke: a warm no-op Go function through the Invoke API
//     against a plain net/http echo server (latency with one client,
//     throughput with parallel clients).
//   - BenchmarkColdStart: request to response on a new instance, per runtime,
//     against fork/exec of the same interpreter or binary.
//   - BenchmarkScaleOut: 0 to 100 instances of a Go function in one burst,
//     as a zip and as a container image.
//   - BenchmarkColdStartImage (bench_image_test.go): the Go function's cold
//     start as a container image beside the same binary as a zip.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/image/imagetest"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/process"
	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
)

// exitEnv makes the test binary exit as soon as it has started: the
// "helper" baseline of BenchmarkColdStart, since every instance's sandbox
// helper is this binary re-executed.
const exitEnv = "NIMBUS_BENCH_EXIT"

func TestMain(m *testing.M) {
	process.MaybeInit()
	if os.Getenv(exitEnv) != "" {
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Benchmark shapes.
const (
	// parallelClients is how many clients BenchmarkWarmInvoke's parallel
	// runs use, against both targets.
	parallelClients = 8
	// burstSize is BenchmarkScaleOut's number of concurrent invokes.
	burstSize = 100
	// burstSleep is how long each burst invoke runs, long enough that no
	// instance is free before all of them are started.
	burstSleep = 2 * time.Second
)

// noopBinary compiles testdata/noop once per test binary.
var noopBinary = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "nimbus-bench-noop-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bootstrap")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/noop")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build testdata/noop: %v\n%s", err, out)
	}
	return os.ReadFile(bin)
})

// writeNoop writes the no-op Go function's binary to a temporary file and
// returns its path.
func writeNoop(b *testing.B) string {
	b.Helper()
	bin, err := noopBinary()
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "bootstrap")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		b.Fatal(err)
	}
	return path
}

// function is a function to deploy.
type function struct {
	name, runtime, handler string
	files                  map[string][]byte
	exec                   string // the file to mark executable
	timeout                int32
}

// goFunction is the no-op Go function as a provided.al2023 function.
func goFunction(b *testing.B, name string) function {
	b.Helper()
	bin, err := noopBinary()
	if err != nil {
		b.Fatal(err)
	}
	// A long timeout: a benchmark on a loaded machine should be slow,
	// not fail.
	return function{name: name, runtime: "provided.al2023", files: map[string][]byte{"bootstrap": bin}, exec: "bootstrap", timeout: 30}
}

func zipOf(b *testing.B, f function) []byte {
	b.Helper()
	return nodetest.Zip(b, f.files, f.exec)
}

func lambdaClient(n *node.Node) *lambda.Client {
	return lambda.New(lambda.Options{
		HTTPClient:   sdkhttp.Client(),
		BaseEndpoint: aws.String(nodetest.Endpoint(n)),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
	})
}

// deploy creates f and waits until it is Active; it returns its invoke URL.
func deploy(b *testing.B, n *node.Node, c *lambda.Client, f function) string {
	b.Helper()
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(f.name), Runtime: types.Runtime(f.runtime),
		Role: aws.String("arn:aws:iam::000000000000:role/bench"),
		Code: &types.FunctionCode{ZipFile: zipOf(b, f)},
	}
	if f.handler != "" {
		in.Handler = aws.String(f.handler)
	}
	if f.timeout != 0 {
		in.Timeout = aws.Int32(f.timeout)
	}
	if _, err := c.CreateFunction(b.Context(), in); err != nil {
		b.Fatalf("CreateFunction %s: %v", f.name, err)
	}
	waitUpdated(b, c, f.name)
	return nodetest.Endpoint(n) + "/2015-03-31/functions/" + f.name + "/invocations"
}

// waitUpdated polls until the function is Active and its last update done.
func waitUpdated(b *testing.B, c *lambda.Client, name string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	for {
		out, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		if err != nil {
			b.Fatalf("GetFunctionConfiguration %s: %v", name, err)
		}
		if out.State == types.StateActive && out.LastUpdateStatus == types.LastUpdateStatusSuccessful {
			return
		}
		if out.State == types.StateFailed {
			b.Fatalf("function %s failed: %s", name, aws.ToString(out.StateReason))
		}
		select {
		case <-ctx.Done():
			b.Fatalf("function %s still %s/%s", name, out.State, out.LastUpdateStatus)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// versions numbers the versions newVersion makes.
var versions atomic.Int64

// newVersion changes an environment variable of the function, so that its
// next invoke needs a new pool, and waits until the old version's instances
// have exited. It counts this process's children, so no other function may
// have instances.
func newVersion(b *testing.B, c *lambda.Client, name string) {
	b.Helper()
	newConfig(b, c, name)
	waitChildren(b, 0)
}

// newConfig changes an environment variable of the function, so that its
// next invoke needs a new pool, and waits until the change is applied.
func newConfig(b *testing.B, c *lambda.Client, name string) {
	b.Helper()
	v := strconv.FormatInt(versions.Add(1), 10)
	_, err := c.UpdateFunctionConfiguration(b.Context(), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String(name),
		Environment:  &types.Environment{Variables: map[string]string{"BENCH_VERSION": v}},
	})
	if err != nil {
		b.Fatalf("UpdateFunctionConfiguration %s: %v", name, err)
	}
	waitUpdated(b, c, name)
}

// children counts this process's child processes (instances, zombies
// included), less the sandbox's pre-started helpers and its idle zygotes.
// A zygote (exec'd with _NIMBUS_ZYGOTE=1) looks the same idle and once it
// is an instance; the sandbox keeps process.DefaultZygotesEach idle per
// interpreter, so of the zygotes of one interpreter only those beyond are
// counted (the Go functions these benchmarks count never use one).
func children() (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	self := strconv.Itoa(os.Getpid())
	n := 0
	zygotes := map[string]int{} // by executable
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 || f[1] != self || isIdleHelper(e.Name()) {
			continue
		}
		if isZygote(e.Name()) {
			exe, _ := os.Readlink("/proc/" + e.Name() + "/exe")
			zygotes[exe]++
			continue
		}
		n++
	}
	for _, z := range zygotes {
		n += max(z-process.DefaultZygotesEach, 0)
	}
	return n, nil
}

// describeChildren lists this process's children (pid, command line and
// executable), for a failure's message.
func describeChildren() string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 || f[1] != self {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		exe, _ := os.Readlink("/proc/" + e.Name() + "/exe")
		out = append(out, fmt.Sprintf("%s %q (%s, zygote %t)", e.Name(), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), exe, isZygote(e.Name())))
	}
	return strings.Join(out, "; ")
}

// isIdleHelper reports whether pid is one of the sandbox's pre-started
// helpers waiting for an instance (they are children too).
func isIdleHelper(pid string) bool {
	cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
	return err == nil && bytes.HasPrefix(cmdline, []byte("nimbus-sandbox-init\x00"))
}

// isZygote reports whether pid began as a zygote: a pre-initialised
// interpreter, idle or since given an instance.
func isZygote(pid string) bool {
	environ, err := os.ReadFile("/proc/" + pid + "/environ")
	return err == nil && bytes.Contains(append([]byte{0}, environ...), []byte("\x00_NIMBUS_ZYGOTE=1\x00"))
}

// waitChildren waits until this process has want children.
func waitChildren(b *testing.B, want int) {
	b.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := children()
		if err != nil {
			b.Fatalf("count child processes: %v", err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("child processes = %d after 20s, want %d: %s", got, want, describeChildren())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// httpClient keeps up to conns connections alive per host.
func httpClient(b *testing.B, conns int) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// post sends body to url and reads the whole answer; anything but a 200
// without X-Amz-Function-Error is an error.
func post(hc *http.Client, url string, body []byte) error {
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("POST %s: read answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" {
		return fmt.Errorf("POST %s: status %d, function error %q: %s", url, resp.StatusCode, resp.Header.Get("X-Amz-Function-Error"), got)
	}
	return nil
}

// startEcho serves a plain net/http echo server on a real loopback listener.
func startEcho(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	b.Cleanup(func() {
		_ = hs.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			b.Errorf("echo server: %v", err)
		}
	})
	return "http://" + ln.Addr().String() + "/"
}

// startEchoProcess runs the same echo server as a process of its own (the
// test function's binary in -echo mode): the fair baseline for a function,
// which also answers from another process.
func startEchoProcess(b *testing.B) string {
	b.Helper()
	bin, err := noopBinary()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "echo")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(path, "-echo", addr)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("echo process did not listen on %s", addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return "http://" + addr + "/"
}

// percentile returns the p-th percentile (0 < p <= 1) of ds, by the
// nearest-rank method.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// reportLatency reports the p50 and p99 of ds in unit ("us" or "ms").
func reportLatency(b *testing.B, ds []time.Duration, unit string) {
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond}[unit]
	for _, p := range []struct {
		name string
		p    float64
	}{{"p50", 0.50}, {"p99", 0.99}} {
		b.ReportMetric(float64(percentile(ds, p.p))/float64(scale), p.name+"-"+unit)
	}
}

// warm sends rounds of requests from conns clients at once so that
// connections are open and (for nimbus) instances started before timing.
func warm(b *testing.B, hc *http.Client, url string, body []byte, conns, rounds int) {
	b.Helper()
	for range rounds {
		var wg sync.WaitGroup
		errs := make([]error, conns)
		for i := range conns {
			wg.Go(func() { errs[i] = post(hc, url, body) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWarmInvoke measures a warm invoke of the no-op Go function
// through the Invoke API, beside a plain net/http echo server. Targets: p50
// at most 100 us above the echo server's; parallel throughput at least half
// of the echo server's.
func BenchmarkWarmInvoke(b *testing.B) {
	echoURL, echoProcURL, relayURL := startEcho(b), startEchoProcess(b), startRelay(b, parallelClients)
	// Everything on: records, usage, durable logs, metrics, and traces
	// exported over OTLP to a collector on loopback that takes and drops
	// them (a real collector runs elsewhere: its work is not Nimbus's).
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(collector.Close)
	n := nodetest.Start(b, func(c *node.Config) { c.OTLPEndpoint = collector.URL })
	c := lambdaClient(n)
	invokeURL := deploy(b, n, c, goFunction(b, "noop"))
	// The same node without invocation records, usage, durable logs,
	// metrics and traces: what they cost (issue 14: within 5 %).
	off := nodetest.Start(b, func(c *node.Config) { c.NoObservability = true })
	offURL := deploy(b, off, lambdaClient(off), goFunction(b, "noop"))
	// A node as shipped: everything but traces, which are off until a
	// collector is configured.
	def := nodetest.Start(b, nil)
	defURL := deploy(b, def, lambdaClient(def), goFunction(b, "noop"))
	body := []byte(`{"sleep_ms":0}`)
	targets := []struct{ name, url string }{{"echo-server", echoURL}, {"echo-process", echoProcURL},
		{"relay-floor", relayURL}, {"nimbus-observability-off", offURL}, {"nimbus-default", defURL}, {"nimbus", invokeURL}}

	for _, t := range targets {
		b.Run("serial/"+t.name, func(b *testing.B) {
			hc := httpClient(b, 1)
			warm(b, hc, t.url, body, 1, 50)
			lat := make([]time.Duration, 0, 1024)
			for b.Loop() {
				began := time.Now()
				if err := post(hc, t.url, body); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(began))
			}
			reportLatency(b, lat, "us")
			b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "req/s")
		})
	}
	for _, t := range targets {
		b.Run(fmt.Sprintf("parallel-%d/%s", parallelClients, t.name), func(b *testing.B) {
			hc := httpClient(b, parallelClients)
			// Each client's first requests sleep, so they overlap and
			// start an instance each.
			warm(b, hc, t.url, []byte(`{"sleep_ms":300}`), parallelClients, 1)
			warm(b, hc, t.url, body, parallelClients, 20)
			if t.name == "nimbus" {
				if st := n.Engine().Stats("noop"); st.Instances < parallelClients {
					b.Fatalf("%d instances warm, want %d", st.Instances, parallelClients)
				}
			}
			benchParallel(b, hc, t.url, body)
		})
	}
	// Not a target: the engine alone, without the HTTP API and the
	// registry read, to tell where the time goes.
	b.Run("serial/engine-direct", func(b *testing.B) {
		fn := engineFunction(b, c, "noop")
		var ids atomic.Int64
		invoke := func() {
			id := "bench-" + strconv.FormatInt(ids.Add(1), 10)
			res, err := n.Engine().Invoke(b.Context(), fn, nimbus.Invocation{RequestID: id, Payload: body})
			if err != nil || res.Err != nil {
				b.Fatalf("engine invoke: %v, function error %v", err, res.Err)
			}
		}
		before := n.Engine().Stats("noop").Instances
		for range 50 {
			invoke()
		}
		// A function unlike the registry's would have replaced the API's
		// pool with a new one of a single instance.
		if got := n.Engine().Stats("noop").Instances; before > 1 && got != before {
			b.Fatalf("engine-direct runs in a pool of %d instances, want the API's pool of %d", got, before)
		}
		lat := make([]time.Duration, 0, 1024)
		for b.Loop() {
			began := time.Now()
			invoke()
			lat = append(lat, time.Since(began))
		}
		reportLatency(b, lat, "us")
		b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "req/s")
	})
}

// engineFunction builds the function the registry holds from its
// configuration, for calling the engine directly.
func engineFunction(b *testing.B, c *lambda.Client, name string) *nimbus.Function {
	b.Helper()
	out, err := c.GetFunctionConfiguration(b.Context(), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
	if err != nil {
		b.Fatalf("GetFunctionConfiguration %s: %v", name, err)
	}
	sum, err := base64.StdEncoding.DecodeString(aws.ToString(out.CodeSha256))
	if err != nil {
		b.Fatalf("CodeSha256 %q: %v", aws.ToString(out.CodeSha256), err)
	}
	fn := &nimbus.Function{
		Name: name, Runtime: string(out.Runtime), Handler: aws.ToString(out.Handler),
		MemoryMB: int(aws.ToInt32(out.MemorySize)), Timeout: int(aws.ToInt32(out.Timeout)),
		CodeSHA256: hex.EncodeToString(sum), RevisionID: aws.ToString(out.RevisionId),
		State: string(out.State), LastUpdateStatus: string(out.LastUpdateStatus),
	}
	if out.Environment != nil {
		fn.Environment = out.Environment.Variables
	}
	return fn
}

// benchParallel sends b.N requests from parallelClients clients.
func benchParallel(b *testing.B, hc *http.Client, url string, body []byte) {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	b.ResetTimer()
	for range parallelClients {
		wg.Go(func() {
			mine := make([]time.Duration, 0, b.N/parallelClients+1)
			var err error
			for err == nil && next.Add(1) <= int64(b.N) {
				began := time.Now()
				err = post(hc, url, body)
				mine = append(mine, time.Since(began))
			}
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, mine...)
			if firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	reportLatency(b, lat, "us")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// baseEnv is the environment of the cold-start baselines: like an
// instance's, it has none of this process's variables (some, such as
// NODE_EXTRA_CA_CERTS, slow an interpreter's start).
var baseEnv = []string{"LANG=en_US.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin", "TZ=:UTC"}

// BenchmarkColdStart measures request to response on a new instance, per
// runtime, beside fork/exec of the same binary or interpreter doing nothing.
// Targets (p50): Go (provided.al2023) 10 ms, Python 40 ms, Node 80 ms. Each
// iteration first makes a new version (an environment change, outside the
// timer) and waits until the old version's instance has exited.
func BenchmarkColdStart(b *testing.B) {
	n := nodetest.Start(b, nil)
	c := lambdaClient(n)
	rts := map[string]runtimes.Runtime{} // the first of each kind
	for _, rt := range runtimes.Discover(slog.New(slog.DiscardHandler)) {
		if _, ok := rts[rt.Kind]; !ok {
			rts[rt.Kind] = rt
		}
	}
	goBin := writeNoop(b)
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		fn   function
		base []string // the baseline command
		env  []string
	}{
		{name: "go", fn: goFunction(b, "cold-go"), base: []string{goBin, "-exit"}},
		{name: "python", fn: function{name: "cold-python", runtime: rts[runtimes.KindPython].ID, handler: "app.handler", timeout: 30,
			files: map[string][]byte{"app.py": []byte("def handler(event, context):\n    return event\n")}},
			base: []string{rts[runtimes.KindPython].Interp, "-c", "pass"}},
		{name: "node", fn: function{name: "cold-node", runtime: rts[runtimes.KindNode].ID, handler: "index.handler", timeout: 30,
			files: map[string][]byte{"index.js": []byte("exports.handler = async (event) => event;\n")}},
			base: []string{rts[runtimes.KindNode].Interp, "-e", "0"}},
		// Not a target: what every instance's sandbox helper (this binary,
		// as the nimbus binary in production) costs to exec.
		{name: "helper", base: []string{self}, env: []string{exitEnv + "=1"}},
	}
	urls := map[string]string{}
	for _, tc := range cases {
		if tc.fn.runtime != "" {
			urls[tc.name] = deploy(b, n, c, tc.fn)
		}
	}
	for _, tc := range cases {
		b.Run(tc.name+"/exec", func(b *testing.B) {
			if tc.base[0] == "" {
				b.Skipf("no %s interpreter on this host", tc.name)
			}
			var lat []time.Duration
			for b.Loop() {
				cmd := exec.Command(tc.base[0], tc.base[1:]...)
				cmd.Env = append(slices.Clone(baseEnv), tc.env...)
				began := time.Now()
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%s: %v\n%s", strings.Join(tc.base, " "), err, out)
				}
				lat = append(lat, time.Since(began))
			}
			reportLatency(b, lat, "ms")
		})
		if tc.fn.name == "" {
			continue
		}
		b.Run(tc.name+"/nimbus", func(b *testing.B) {
			url, ok := urls[tc.name]
			if !ok {
				b.Skipf("no %s runtime on this node", tc.name)
			}
			hc := httpClient(b, 1)
			body := []byte(`{"sleep_ms":0}`)
			var lat []time.Duration
			for b.Loop() {
				b.StopTimer()
				newVersion(b, c, tc.fn.name)
				b.StartTimer()
				began := time.Now()
				if err := post(hc, url, body); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(began))
			}
			reportLatency(b, lat, "ms")
			// Leave no instance behind: the next case counts instances.
			newVersion(b, c, tc.fn.name)
		})
	}
}

// BenchmarkScaleOut sends a burst of 100 concurrent invokes to a cold Go
// function that sleeps 2 s, and measures how long until 100 instances are
// running (ms-to-100) and until all answers are in, less the sleep
// (ms-all-answered). Target: 100 instances within 1 s. The baseline execs
// the same binary 100 times at once and waits for all to exit.
func BenchmarkScaleOut(b *testing.B) {
	goBin := writeNoop(b)
	b.Run("exec", func(b *testing.B) {
		var took []time.Duration
		for b.Loop() {
			began := time.Now()
			errs := make([]error, burstSize)
			var wg sync.WaitGroup
			for i := range burstSize {
				wg.Go(func() {
					cmd := exec.Command(goBin, "-exit")
					cmd.Env = baseEnv
					errs[i] = cmd.Run()
				})
			}
			wg.Wait()
			took = append(took, time.Since(began))
			if err := errors.Join(errs...); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(percentile(took, 0.5))/float64(time.Millisecond), "ms-all-exited")
	})
	n := nodetest.Start(b, func(cfg *node.Config) { cfg.MaxInstances = 2 * burstSize })
	c := lambdaClient(n)
	fn := goFunction(b, "burst")
	url := deploy(b, n, c, fn)
	b.Run("nimbus", func(b *testing.B) { benchBurst(b, n, c, fn.name, url) })
	// The same binary as a container image (issue 18), already on the
	// node: its instances' roots are the image's.
	reg := imagetest.NewRegistry(b)
	imgURL := deployImage(b, n, c, reg, "burst-image")
	b.Run("nimbus-image", func(b *testing.B) { benchBurst(b, n, c, "burst-image", imgURL) })
}

// benchBurst times bursts of burstSize invokes of a cold function name at
// url, leaving no instance behind.
func benchBurst(b *testing.B, n *node.Node, c *lambda.Client, name, url string) {
	hc := httpClient(b, burstSize)
	body := []byte(fmt.Sprintf(`{"sleep_ms":%d}`, burstSleep.Milliseconds()))
	var toAll, toAnswered []time.Duration
	for b.Loop() {
		b.StopTimer()
		newVersion(b, c, name)
		b.StartTimer()
		all, answered := burst(b, n, hc, name, url, body)
		toAll = append(toAll, all)
		toAnswered = append(toAnswered, answered-burstSleep)
	}
	b.ReportMetric(float64(percentile(toAll, 0.5))/float64(time.Millisecond), "ms-to-100")
	b.ReportMetric(float64(slices.Max(toAll))/float64(time.Millisecond), "max-ms-to-100")
	b.ReportMetric(float64(percentile(toAnswered, 0.5))/float64(time.Millisecond), "ms-all-answered")
	newVersion(b, c, name) // the next case counts instances
}

// burst sends burstSize invokes at once and returns when burstSize
// instances were running and when every answer had come.
func burst(b *testing.B, n *node.Node, hc *http.Client, name, url string, body []byte) (all, answered time.Duration) {
	b.Helper()
	errs := make([]error, burstSize)
	var wg sync.WaitGroup
	began := time.Now()
	for i := range burstSize {
		wg.Go(func() { errs[i] = post(hc, url, body) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	tick := time.NewTicker(500 * time.Microsecond)
	defer tick.Stop()
	for all == 0 {
		select {
		case <-done:
			b.Fatalf("every answer came before %d instances ran (%+v): %v", burstSize, n.Engine().Stats(name), errors.Join(errs...))
		case <-tick.C:
			if n.Engine().Stats(name).Instances >= burstSize {
				all = time.Since(began)
			}
		}
	}
	<-done
	answered = time.Since(began)
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return all, answered
}
