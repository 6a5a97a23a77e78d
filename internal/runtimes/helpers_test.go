package runtimes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/runtimeapi"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/process"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/sandboxtest"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

func TestMain(m *testing.M) {
	process.MaybeInit()
	goleak.VerifyTestMain(closingM{m})
}

// closingM closes the test sandbox once the tests have run, before goleak
// looks for leaks.
type closingM struct{ m *testing.M }

func (c closingM) Run() int {
	code := c.m.Run()
	if err := closeSandbox(); err != nil {
		fmt.Fprintln(os.Stderr, "close sandbox:", err)
		return 1
	}
	return code
}

// testSandbox is the sandbox every test instance runs in, as in a node.
var testSandbox struct {
	once sync.Once
	b    *process.Backend
	root string
	err  error
}

// sandboxBackend returns the test sandbox, made on first use.
func sandboxBackend(t *testing.T) *process.Backend {
	t.Helper()
	s := &testSandbox
	s.once.Do(func() {
		if s.root, s.err = os.MkdirTemp("", "nimbus-runtimes-test-"); s.err != nil {
			return
		}
		s.b, s.err = process.New(process.Config{Root: s.root, Logger: discardLog})
	})
	if s.err != nil {
		t.Fatalf("sandbox: %v", s.err)
	}
	return s.b
}

func closeSandbox() error {
	s := &testSandbox
	var err error
	if s.b != nil {
		err = s.b.Close(context.Background())
	}
	if s.root != "" {
		err = errors.Join(err, os.RemoveAll(s.root))
	}
	return err
}

var lastID atomic.Int64

var discardLog = slog.New(slog.DiscardHandler)

// discovered is what Discover finds on this host, asked once per test binary.
var discovered = sync.OnceValue(func() []Runtime { return Discover(discardLog) })

// runtimeOf returns the first discovered runtime of kind.
func runtimeOf(t *testing.T, kind string) Runtime {
	t.Helper()
	for _, rt := range discovered() {
		if rt.Kind == kind {
			return rt
		}
	}
	t.Fatalf("no %s runtime on this host: %+v", kind, discovered())
	return Runtime{}
}

// writeFiles writes files (path -> content) into a new code directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := sandboxtest.HostDir(t)
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// instance is a function instance run by a test against its own Runtime API
// server.
type instance struct {
	srv *runtimeapi.Server
	sb  sandbox.Instance
	in  sandbox.Paths // where it sees its code and runtime
	// runtimeHost is the host path of its runtime directory.
	runtimeHost string
	out         testenv.Buffer
	done        chan struct{} // closed when the instance has exited
	err         error         // its exit status, once done is closed
}

// start runs an instance of rt for the code in codeDir in the test sandbox,
// exactly as the engine would: Install, Dir, PathsOf, Command, Env, Start,
// Admit (on the host's network, where the Runtime API listens).
func start(t *testing.T, rt Runtime, codeDir, handler string, userEnv map[string]string) *instance {
	t.Helper()
	bootDir := filepath.Join(sandboxtest.HostDir(t), "runtimes")
	if err := Install(bootDir); err != nil {
		t.Fatalf("Install: %v", err)
	}
	b := sandboxBackend(t)
	in := &instance{done: make(chan struct{})}
	spec := sandbox.Spec{
		ID: fmt.Sprintf("rt%d", lastID.Add(1)), CodeDir: codeDir, RuntimeDir: Dir(rt, bootDir),
		MemoryMB: 1024, Stdout: &in.out, Stderr: &in.out,
		// The Runtime API below is on the host's loopback: these tests
		// are about the bootstraps, network isolation is the sandbox's.
		Network: sandbox.NetworkHost,
	}
	in.in, in.runtimeHost = sandbox.PathsOf(b, spec), spec.RuntimeDir
	var err error
	if spec.Path, spec.Args, err = Command(rt, spec.CodeDir, spec.RuntimeDir, in.in); err != nil {
		t.Fatalf("Command: %v", err)
	}
	if in.srv, err = runtimeapi.ListenPending(discardLog); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	fn := &nimbus.Function{Name: "fn", Handler: handler, MemoryMB: 256, Environment: userEnv}
	spec.Env = Env(fn, rt, in.srv.Addr(), in.in, "eu-west-1")
	if in.sb, err = b.Start(t.Context(), spec); err != nil {
		_ = in.srv.Close()
		t.Fatalf("start %s: %v", spec.Path, err)
	}
	in.srv.Admit(in.sb.UID())
	go func() {
		<-in.sb.Done()
		in.err = in.sb.Err()
		close(in.done)
	}()
	t.Cleanup(func() {
		in.sb.Kill()
		<-in.done
		_ = in.srv.Close()
		if t.Failed() {
			t.Logf("instance output:\n%s", in.out.String())
		}
	})
	return in
}

// invoke sends one invocation and returns the runtime's answer.
func (in *instance) invoke(t *testing.T, inv runtimeapi.Invocation) runtimeapi.Result {
	t.Helper()
	if inv.RequestID == "" {
		inv.RequestID = "req-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	if inv.Deadline.IsZero() {
		inv.Deadline = time.Now().Add(30 * time.Second)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a crashed instance ends the wait
		select {
		case <-in.done:
			cancel()
		case <-stop:
		}
	}()
	res, err := in.srv.Invoke(ctx, inv)
	if err != nil {
		select {
		case <-in.done:
			t.Fatalf("Invoke: %v (instance exited: %v)", err, in.err)
		default:
			t.Fatalf("Invoke: %v", err)
		}
	}
	return res
}

// invokeJSON invokes with payload and returns the response payload, failing
// the test on a function error.
func (in *instance) invokeJSON(t *testing.T, payload string) string {
	t.Helper()
	res := in.invoke(t, runtimeapi.Invocation{Payload: []byte(payload)})
	if res.Err != nil {
		t.Fatalf("function error: %+v", res.Err)
	}
	return string(res.Payload)
}

// initError waits for the instance to report an init error and exit.
func (in *instance) initError(t *testing.T) *nimbus.FunctionError {
	t.Helper()
	select {
	case <-in.srv.InitFailed():
	case <-in.srv.Ready():
		t.Fatal("runtime became ready, want an init error")
	case <-in.done:
		t.Fatalf("runtime exited (%v) without an init error", in.err)
	case <-time.After(15 * time.Second):
		t.Fatal("no init error")
	}
	select {
	case <-in.done:
		if in.err == nil {
			t.Error("runtime exited 0 after its init error, want non-zero")
		}
	case <-time.After(15 * time.Second):
		t.Error("runtime did not exit after its init error")
	}
	return in.srv.InitErr()
}

// waitOutput waits for the instance's output to contain s.
func (in *instance) waitOutput(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(in.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q does not contain %q", in.out.String(), s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// errorCase is an expected function error.
type errorCase struct {
	typ     string
	message string // exact, or a prefix when prefix is set
	prefix  bool
}

func checkError(t *testing.T, got *nimbus.FunctionError, want errorCase) {
	t.Helper()
	if got == nil {
		t.Fatalf("no function error, want %s", want.typ)
	}
	okMsg := got.Message == want.message || (want.prefix && strings.HasPrefix(got.Message, want.message))
	if got.Type != want.typ || !okMsg {
		t.Errorf("error = %s: %q, want %s: %q", got.Type, got.Message, want.typ, want.message)
	}
}

// checkOversized checks that a response over 6 MiB fails the invocation
// with ErrTooLarge and that the instance then serves the next one.
func checkOversized(t *testing.T, in *instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	_, err := in.srv.Invoke(ctx, runtimeapi.Invocation{RequestID: "big", Deadline: time.Now().Add(time.Minute),
		Payload: []byte(`{"size": 7000000}`)})
	if !errors.Is(err, nimbus.ErrTooLarge) {
		t.Fatalf("oversized Invoke error = %v, want ErrTooLarge", err)
	}
	if got := in.invokeJSON(t, `{"size": 3}`); got != `"xxx"` {
		t.Errorf("next payload = %s, want \"xxx\"", got)
	}
}

// invokeCase is one function and event with the answer it must give.
type invokeCase struct {
	name    string
	files   map[string]string
	handler string
	event   string
	want    string     // response payload, when no error
	wantErr *errorCase // function error
}

// runInvokeCases runs each case on a fresh instance of rt.
func runInvokeCases(t *testing.T, rt Runtime, tests []invokeCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := start(t, rt, writeFiles(t, tt.files), tt.handler, nil)
			res := in.invoke(t, runtimeapi.Invocation{Payload: []byte(tt.event)})
			if tt.wantErr != nil {
				checkError(t, res.Err, *tt.wantErr)
				return
			}
			if res.Err != nil {
				t.Fatalf("function error: %+v", res.Err)
			}
			if got := string(res.Payload); got != tt.want {
				t.Errorf("payload = %s, want %s", got, tt.want)
			}
		})
	}
}

// checkWarmReuse invokes a function three times on one instance: its code
// (which prints "init-once" when loaded and "hello from invocation N" and
// returns a call count) must be loaded once and keep its state.
func checkWarmReuse(t *testing.T, rt Runtime, code, handler string) {
	t.Helper()
	in := start(t, rt, code, handler, nil)
	for i, want := range []string{"1", "2", "3"} {
		if got := in.invokeJSON(t, `{}`); got != want {
			t.Errorf("invocation %d = %s, want %s", i, got, want)
		}
	}
	in.waitOutput(t, "hello from invocation 3")
	if n := strings.Count(in.out.String(), "init-once"); n != 1 {
		t.Errorf("code loaded %d times, want once", n)
	}
}

// initErrorCase is a function whose instance must fail its init.
type initErrorCase struct {
	name    string
	files   map[string]string
	handler string
	want    errorCase
}

// runInitErrorCases starts each case and checks the init error it posts,
// which is always unhandled.
func runInitErrorCases(t *testing.T, rt Runtime, tests []initErrorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := start(t, rt, writeFiles(t, tt.files), tt.handler, nil)
			fe := in.initError(t)
			checkError(t, fe, tt.want)
			if !fe.Unhandled {
				t.Errorf("init error Unhandled = false, want true")
			}
		})
	}
}
