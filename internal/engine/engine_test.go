package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"go.uber.org/goleak"
)

// behaveDir holds the compiled test function (testdata/behave) as bootstrap.
var behaveDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nimbus-engine-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	behaveDir = filepath.Join(dir, "code")
	out, err := exec.Command("go", "build", "-o", filepath.Join(behaveDir, "bootstrap"), "./testdata/behave").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build test function: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// execBackend runs instances as plain child processes: the engine's logic
// is under test here, not isolation (internal/sandbox/process has its own).
type execBackend struct {
	starts atomic.Int32
	closed atomic.Bool
	mu     sync.Mutex
	live   []*execInstance
	specs  []sandbox.Spec // of every start
}

// lastSpec is the spec of the latest start.
func (b *execBackend) lastSpec() sandbox.Spec {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.specs[len(b.specs)-1]
}

var _ sandbox.Backend = (*execBackend)(nil)

func (b *execBackend) Describe() string            { return "exec (test)" }
func (b *execBackend) Close(context.Context) error { b.closed.Store(true); return nil }

func (b *execBackend) Start(_ context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	b.starts.Add(1)
	if spec.Prepare != nil {
		env, err := spec.Prepare(sandbox.HostNet{})
		if err != nil {
			return nil, err
		}
		spec.Env = sandbox.WithEnv(spec.Env, env...)
	}
	b.mu.Lock()
	b.specs = append(b.specs, spec)
	b.mu.Unlock()
	cmd := exec.Command(spec.Path, spec.Args[1:]...)
	cmd.Env, cmd.Dir = spec.Env, spec.CodeDir
	cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	inst := &execInstance{cmd: cmd, done: make(chan struct{})}
	go func() {
		inst.err = cmd.Wait()
		close(inst.done)
	}()
	b.mu.Lock()
	b.live = append(b.live, inst)
	b.mu.Unlock()
	return inst, nil
}

type execInstance struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	// inits and serves count InitDone and Served (sandbox.Initializer).
	inits, serves atomic.Int32
}

func (i *execInstance) InitDone() error { i.inits.Add(1); return nil }
func (i *execInstance) Served()         { i.serves.Add(1) }

func (i *execInstance) Done() <-chan struct{} { return i.done }
func (i *execInstance) Err() error            { return i.err }
func (i *execInstance) Kill()                 { _ = syscall.Kill(-i.cmd.Process.Pid, syscall.SIGKILL) }
func (i *execInstance) MaxMemoryBytes() int64 { return 0 }
func (i *execInstance) TmpDir() string        { return os.TempDir() }
func (i *execInstance) UID() int              { return -1 }

// dirCache maps every digest to one directory.
type dirCache struct{ dirs map[string]string }

func (c dirCache) Ensure(_ context.Context, digest string) (string, error) {
	if d, ok := c.dirs[digest]; ok {
		return d, nil
	}
	return "", nimbus.ErrNotFound
}

// clock is an injectable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type harness struct {
	e     *Engine
	sb    *execBackend
	clock *clock
	fn    *nimbus.Function
}

const (
	goodDigest    = "1111111111111111111111111111111111111111111111111111111111111111"
	noBootDigest  = "2222222222222222222222222222222222222222222222222222222222222222"
	behaveRuntime = "provided.al2023"
)

var testRuntimes = []runtimes.Runtime{{ID: behaveRuntime, Kind: runtimes.KindProvided}, {ID: "http", Kind: runtimes.KindHTTP}}

// newHarness starts an engine that the test's cleanup closes, checking
// that it leaves no goroutine behind.
func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last
	h := &harness{sb: &execBackend{}, clock: &clock{now: time.Unix(1_700_000_000, 0)}}
	cfg := Config{
		Sandbox:      h.sb,
		Code:         dirCache{dirs: map[string]string{goodDigest: behaveDir, noBootDigest: t.TempDir()}},
		Runtimes:     testRuntimes,
		BootstrapDir: t.TempDir(),
		IdleTimeout:  time.Minute,
		QueueTimeout: 5 * time.Second,
		Now:          h.clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	t.Cleanup(func() {
		if err := e.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	h.fn = &nimbus.Function{Name: "behave", Runtime: behaveRuntime, MemoryMB: 128, Timeout: 5, CodeSHA256: goodDigest, RevisionID: "r1"}
	return h
}

var reqSeq atomic.Int64

func (h *harness) invoke(t *testing.T, fn *nimbus.Function, payload string) (nimbus.Result, error) {
	t.Helper()
	id := fmt.Sprintf("req-%d", reqSeq.Add(1))
	return h.e.Invoke(t.Context(), fn, nimbus.Invocation{RequestID: id, Payload: []byte(payload)})
}

// ok invokes and requires a successful answer, returning the echo's pid.
func (h *harness) ok(t *testing.T, fn *nimbus.Function, payload string) (pid int, version string) {
	t.Helper()
	res, err := h.invoke(t, fn, payload)
	if err != nil {
		t.Fatalf("Invoke(%s): %v", payload, err)
	}
	if res.Err != nil {
		t.Fatalf("Invoke(%s): function error %v", payload, res.Err)
	}
	var out struct {
		Pid     int
		Version string
	}
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("Invoke(%s) = %q: %v", payload, res.Payload, err)
	}
	return out.Pid, out.Version
}

func TestWarmReuse(t *testing.T) {
	h := newHarness(t, nil)
	pid1, _ := h.ok(t, h.fn, `{}`)
	// The sandbox heard that the instance was ready, then that it had
	// answered its first request; each once.
	h.sb.mu.Lock()
	inst := h.sb.live[0]
	h.sb.mu.Unlock()
	if in, sv := inst.inits.Load(), inst.serves.Load(); in != 1 || sv != 1 {
		t.Errorf("after the first request: InitDone %d times, Served %d; want 1 and 1", in, sv)
	}
	res, err := h.invoke(t, h.fn, `{"echo":"again"}`)
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	var out struct{ Pid int }
	_ = json.Unmarshal(res.Payload, &out)
	if out.Pid != pid1 {
		t.Errorf("second invoke ran in pid %d, want the warm instance %d", out.Pid, pid1)
	}
	if got := h.sb.starts.Load(); got != 1 {
		t.Errorf("instances started = %d, want 1", got)
	}
	if in, sv := inst.inits.Load(), inst.serves.Load(); in != 1 || sv != 1 {
		t.Errorf("after the second request: InitDone %d times, Served %d; want still 1 and 1", in, sv)
	}
	tail := string(res.LogTail)
	if !strings.Contains(tail, "START RequestId:") || !strings.Contains(tail, "END RequestId:") ||
		!strings.Contains(tail, "REPORT RequestId:") || !strings.Contains(tail, "Billed Duration:") {
		t.Errorf("log tail lacks START/END/REPORT:\n%s", tail)
	}
	if strings.Contains(tail, "Init Duration") {
		t.Errorf("warm invoke reported an Init Duration:\n%s", tail)
	}
	if !strings.Contains(tail, "handling in pid") {
		t.Errorf("log tail lacks the function's own output:\n%s", tail)
	}
}

func TestColdStartReportsInitDuration(t *testing.T) {
	h := newHarness(t, nil)
	res, err := h.invoke(t, h.fn, `{}`)
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	if !strings.Contains(string(res.LogTail), "Init Duration:") {
		t.Errorf("cold start's REPORT lacks Init Duration:\n%s", res.LogTail)
	}
}

// TestScaleOut: concurrent requests on busy instances start more instances,
// in parallel, up to the reserved concurrency.
func TestScaleOut(t *testing.T) {
	h := newHarness(t, nil)
	reserved := 4
	h.fn.ReservedConcurrency = &reserved
	const n = 8
	var wg sync.WaitGroup
	pids := make(chan int, n)
	began := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pid, _ := h.ok(t, h.fn, `{"sleep_ms":300}`)
			pids <- pid
		}()
	}
	wg.Wait()
	close(pids)
	distinct := map[int]bool{}
	for p := range pids {
		distinct[p] = true
	}
	if len(distinct) != reserved {
		t.Errorf("%d requests ran on %d instances, want %d (the reserved concurrency)", n, len(distinct), reserved)
	}
	if got := h.sb.starts.Load(); got != int32(reserved) {
		t.Errorf("started %d instances, want %d", got, reserved)
	}
	// 8 requests of 300 ms on 4 instances in parallel take ~600 ms, not 2.4 s.
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("burst took %s: instances were not started in parallel", took)
	}
}

// TestSequentialUsesOneInstance: no more instances than needed.
func TestSequentialUsesOneInstance(t *testing.T) {
	h := newHarness(t, nil)
	for range 10 {
		h.ok(t, h.fn, `{}`)
	}
	if got := h.sb.starts.Load(); got != 1 {
		t.Errorf("10 sequential invokes started %d instances, want 1", got)
	}
}

func TestThrottling(t *testing.T) {
	t.Run("reserved zero", func(t *testing.T) {
		h := newHarness(t, nil)
		h.ok(t, h.fn, `{}`) // a warm instance does not serve a throttled function either
		fn := *h.fn
		zero := 0
		fn.ReservedConcurrency = &zero
		_, err := h.invoke(t, &fn, `{}`)
		if !errors.Is(err, nimbus.ErrThrottled) {
			t.Errorf("err = %v, want ErrThrottled", err)
		}
	})
	t.Run("queue full", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.QueueDepth = 1 })
		one := 1
		h.fn.ReservedConcurrency = &one
		h.ok(t, h.fn, `{}`) // warm
		running := make(chan struct{})
		go func() {
			defer close(running)
			h.ok(t, h.fn, `{"sleep_ms":800}`)
		}()
		waitFor(t, func() bool { return h.e.Stats("behave").Idle == 0 })
		queued := make(chan error, 1)
		go func() {
			_, err := h.invoke(t, h.fn, `{}`)
			queued <- err
		}()
		waitFor(t, func() bool { return h.e.Stats("behave").Waiting == 1 })
		_, err := h.invoke(t, h.fn, `{}`)
		if !errors.Is(err, nimbus.ErrThrottled) {
			t.Errorf("third request: err = %v, want ErrThrottled (queue full)", err)
		}
		if err := <-queued; err != nil {
			t.Errorf("queued request: %v, want it served once the instance was free", err)
		}
		<-running
	})
	t.Run("queue timeout", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.QueueTimeout = 100 * time.Millisecond })
		one := 1
		h.fn.ReservedConcurrency = &one
		h.ok(t, h.fn, `{}`)
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.ok(t, h.fn, `{"sleep_ms":1000}`)
		}()
		waitFor(t, func() bool { return h.e.Stats("behave").Idle == 0 })
		_, err := h.invoke(t, h.fn, `{}`)
		if !errors.Is(err, nimbus.ErrThrottled) {
			t.Errorf("err = %v, want ErrThrottled after the queue timeout", err)
		}
		<-done
	})
	// The node-wide cap: evict_test.go.
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestIdleInstancesStop uses the injected clock: no sleeping for minutes.
func TestIdleInstancesStop(t *testing.T) {
	h := newHarness(t, nil)
	h.ok(t, h.fn, `{}`)
	h.clock.Add(59 * time.Second)
	h.e.Reap()
	if got := h.e.Stats("behave").Instances; got != 1 {
		t.Fatalf("before the idle timeout: %d instances, want 1", got)
	}
	h.clock.Add(2 * time.Second)
	h.e.Reap()
	waitFor(t, func() bool { return h.e.Stats("behave").Instances == 0 })
	// The next request cold-starts.
	h.ok(t, h.fn, `{}`)
	if got := h.sb.starts.Load(); got != 2 {
		t.Errorf("starts = %d, want 2", got)
	}
}

func TestPerFunctionIdleTimeout(t *testing.T) {
	h := newHarness(t, nil)
	h.fn.IdleTimeout = 5 * time.Second
	h.ok(t, h.fn, `{}`)
	h.clock.Add(6 * time.Second)
	h.e.Reap()
	waitFor(t, func() bool { return h.e.Stats("behave").Instances == 0 })
}

// TestProvisionedMinimum: warm instances are kept past the idle timeout and
// replaced when one dies.
func TestProvisionedMinimum(t *testing.T) {
	h := newHarness(t, nil)
	h.fn.ProvisionedConcurrency = 2
	h.e.Refresh(h.fn.Name, h.fn)
	waitFor(t, func() bool { return h.e.Stats("behave").Instances == 2 })
	h.clock.Add(time.Hour)
	h.e.Reap()
	if got := h.e.Stats("behave").Instances; got != 2 {
		t.Errorf("after the idle timeout: %d instances, want the provisioned 2", got)
	}
	h.sb.mu.Lock()
	victim := h.sb.live[0]
	h.sb.mu.Unlock()
	victim.Kill()
	waitFor(t, func() bool { return h.sb.starts.Load() == 3 && h.e.Stats("behave").Instances == 2 })
}

// TestUpdateDrainsOldVersion: after an update new requests go to new
// instances while a request on the old one finishes.
func TestUpdateDrainsOldVersion(t *testing.T) {
	h := newHarness(t, nil)
	h.fn.Environment = map[string]string{"VERSION": "v1"}
	slow := make(chan string, 1)
	go func() {
		_, v := h.ok(t, h.fn, `{"sleep_ms":500}`)
		slow <- v
	}()
	waitFor(t, func() bool { s := h.e.Stats("behave"); return s.Instances == 1 && s.Idle == 0 })
	v2 := *h.fn
	v2.Environment = map[string]string{"VERSION": "v2"}
	v2.RevisionID = "r2"
	h.e.Refresh(v2.Name, &v2)
	if _, v := h.ok(t, &v2, `{}`); v != "v2" {
		t.Errorf("request after the update ran version %q, want v2", v)
	}
	if v := <-slow; v != "v1" {
		t.Errorf("in-flight request finished on %q, want v1", v)
	}
	waitFor(t, func() bool {
		h.e.Reap()
		h.e.mu.Lock()
		defer h.e.mu.Unlock()
		return len(h.e.draining) == 0
	})
}

func TestFaults(t *testing.T) {
	h := newHarness(t, nil)
	h.fn.Timeout = 1
	t.Run("timeout", func(t *testing.T) {
		pid, _ := h.ok(t, h.fn, `{}`)
		res, err := h.invoke(t, h.fn, `{"sleep_ms":3000}`)
		if err != nil {
			t.Fatal(err)
		}
		if res.Err == nil || res.Err.Type != "Sandbox.Timedout" || !strings.Contains(res.Err.Message, "Task timed out after 1.00 seconds") {
			t.Fatalf("function error = %+v, want Sandbox.Timedout", res.Err)
		}
		if pid2, _ := h.ok(t, h.fn, `{}`); pid2 == pid {
			t.Errorf("request after a timeout ran on the killed instance %d", pid)
		}
	})
	t.Run("exit mid-request", func(t *testing.T) {
		res, err := h.invoke(t, h.fn, `{"exit":3}`)
		if err != nil {
			t.Fatal(err)
		}
		if res.Err == nil || res.Err.Type != "Runtime.ExitError" || !strings.Contains(res.Err.Message, "exit status 3") {
			t.Fatalf("function error = %+v, want Runtime.ExitError with exit status 3", res.Err)
		}
		h.ok(t, h.fn, `{}`)
	})
	t.Run("function error", func(t *testing.T) {
		res, err := h.invoke(t, h.fn, `{"error":"boom"}`)
		if err != nil {
			t.Fatal(err)
		}
		if res.Err == nil || res.Err.Message != "boom" || res.Err.Type != "errorString" {
			t.Fatalf("function error = %+v, want errorString boom", res.Err)
		}
	})
	t.Run("response too large", func(t *testing.T) {
		// Its own timeout: writing 7 MB must not race the 1 s one on a
		// loaded machine.
		big := *h.fn
		big.Timeout = 30
		res, err := h.invoke(t, &big, `{"big_response":7000000}`)
		if err != nil {
			t.Fatal(err)
		}
		if res.Err == nil || res.Err.Type != "Function.ResponseSizeTooLarge" {
			t.Fatalf("function error = %+v, want Function.ResponseSizeTooLarge", res.Err)
		}
		h.ok(t, h.fn, `{}`)
	})
	t.Run("megabytes of logs", func(t *testing.T) {
		chatty := *h.fn
		chatty.Timeout = 60
		res, err := h.invoke(t, &chatty, `{"print_bytes":5000000}`)
		if err != nil || res.Err != nil {
			t.Fatal(err, res.Err)
		}
		if len(res.LogTail) > tailBytes {
			t.Errorf("log tail is %d bytes, want at most %d", len(res.LogTail), tailBytes)
		}
		if !strings.Contains(string(res.LogTail), "last line\n") || !strings.Contains(string(res.LogTail), "REPORT") {
			t.Errorf("log tail lacks the last output line and REPORT:\n%s", res.LogTail)
		}
	})
}

func TestInitErrorNoRestartStorm(t *testing.T) {
	h := newHarness(t, nil)
	h.fn.CodeSHA256 = noBootDigest
	for range 5 {
		res, err := h.invoke(t, h.fn, `{}`)
		if err != nil {
			t.Fatal(err)
		}
		if res.Err == nil || res.Err.Type != "Runtime.InvalidEntrypoint" {
			t.Fatalf("function error = %+v, want Runtime.InvalidEntrypoint", res.Err)
		}
	}
	// The bootstrap is missing, so no process was ever started.
	if got := h.sb.starts.Load(); got != 0 {
		t.Errorf("sandbox starts = %d, want 0", got)
	}
}

// TestInitCrashBackoff: a runtime that dies during init is not restarted
// for every request.
func TestInitCrashBackoff(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\necho init failing >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const crashDigest = "3333333333333333333333333333333333333333333333333333333333333333"
	h := newHarness(t, func(c *Config) {
		c.Code = dirCache{dirs: map[string]string{crashDigest: dir}}
	})
	h.fn.CodeSHA256 = crashDigest
	colds := 0
	for range 5 {
		res, err := h.invoke(t, h.fn, `{}`)
		if err != nil {
			t.Fatal(err)
		}
		if res.Err == nil || res.Err.Type != "Runtime.ExitError" {
			t.Fatalf("function error = %+v, want Runtime.ExitError", res.Err)
		}
		if res.Report.ColdStart {
			colds++
			if res.Report.Init <= 0 {
				t.Errorf("the failed start's report has no init: %+v", res.Report)
			}
		} else if res.Report.Init != 0 {
			t.Errorf("a request handed the failed start's error reports an init: %+v", res.Report)
		}
	}
	if got := h.sb.starts.Load(); got != 1 {
		t.Errorf("5 requests within the backoff started %d instances, want 1", got)
	}
	if colds != 1 {
		t.Errorf("%d requests report the one failed start as their cold start (and would bill it), want 1", colds)
	}
	h.clock.Add(time.Minute)
	_, _ = h.invoke(t, h.fn, `{}`)
	if got := h.sb.starts.Load(); got != 2 {
		t.Errorf("after the backoff: %d starts, want 2", got)
	}
}

func TestLogStore(t *testing.T) {
	h := newHarness(t, nil)
	ch, cancel := h.e.cfg.Logs.Follow("behave")
	defer cancel()
	h.ok(t, h.fn, `{}`)
	recs := h.e.cfg.Logs.Read("behave", -1)
	if got := h.e.cfg.Logs.Read("behave", 0); len(got) != 0 {
		t.Errorf("Read(limit 0) = %d records, want none", len(got))
	}
	if len(recs) < 4 {
		t.Fatalf("log has %d records, want START, output, END, REPORT", len(recs))
	}
	var withID int
	for _, r := range recs {
		if r.RequestID != "" {
			withID++
		}
	}
	if withID != len(recs) {
		t.Errorf("%d of %d records carry the request id", withID, len(recs))
	}
	select {
	case r := <-ch:
		if !strings.HasPrefix(r.Line, "START") {
			t.Errorf("first followed line = %q, want START", r.Line)
		}
	case <-time.After(5 * time.Second):
		t.Error("follower got nothing")
	}
}

func TestCodeInUse(t *testing.T) {
	h := newHarness(t, nil)
	h.ok(t, h.fn, `{}`)
	inUse := map[string]bool{}
	h.e.CodeInUse(inUse)
	if !inUse[goodDigest] || len(inUse) != 1 {
		t.Errorf("CodeInUse = %v, want just the running function's digest", inUse)
	}
}

// TestClose: Close stops the reaper and every instance, fails the requests
// in flight and waiting, leaves the sandbox backend open (the caller made
// it), and may be called again; the harness checks that no goroutine is
// left.
func TestClose(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ReapInterval = time.Millisecond })
	h.fn.Timeout = 60
	h.ok(t, withReserved(h.fn, 1), `{}`)
	g := newGate(t)
	held := make(chan nimbus.Result, 1)
	go func() {
		res, _ := h.e.Invoke(t.Context(), withReserved(h.fn, 1), nimbus.Invocation{RequestID: "held", Payload: []byte(g.payload())})
		held <- res
	}()
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 1 })
	queued := make(chan error, 1)
	go func() {
		_, err := h.e.Invoke(t.Context(), withReserved(h.fn, 1), nimbus.Invocation{RequestID: "queued", Payload: []byte(`{}`)})
		queued <- err
	}()
	waitFor(t, func() bool { return h.e.Stats("behave").Waiting == 1 })

	if err := h.e.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-queued; !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("a waiting request got %v, want ErrConflict (shutting down)", err)
	}
	if res := <-held; res.Err == nil || res.Err.Type != "Runtime.ExitError" {
		t.Errorf("the request in flight got %+v, want Runtime.ExitError (its instance was killed)", res.Err)
	}
	if h.sb.closed.Load() {
		t.Error("the engine closed the sandbox backend it was given")
	}
	if _, err := h.invoke(t, h.fn, `{}`); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("Invoke after Close: %v, want ErrConflict", err)
	}
	if err := h.e.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
