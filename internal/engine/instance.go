package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/recursion"
	"github.com/nimbus-serverless/nimbus/internal/runtimeapi"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// pidsMax caps an instance's processes and threads.
const pidsMax = 1024

// instance is one running copy of a function version.
type instance struct {
	id   string
	pool *pool
	fn   *nimbus.Function // the configuration it was started with
	sb   sandbox.Instance
	rapi *runtimeapi.Server // Runtime-API functions
	http *httpTarget        // HTTP functions
	out  *output
	// net is the instance's network, where rapi listens and http dials.
	net      sandbox.Net
	kindHTTP bool
	// fcTarget is http for a custom function with Function Compute's
	// conventions, read by its lifecycle hooks (fccustom.go) without the
	// pool's lock while closeServers may clear http.
	fcTarget atomic.Pointer[httpTarget]
	// port is the port an HTTP image serves on in its own network (0: the
	// http runtime's, privateHTTPPort).
	port int
	// release lets the image of an image function be collected again (nil
	// for a zip function).
	release func()

	ctx    context.Context // ends when the instance exits (watch)
	cancel context.CancelFunc

	initDuration time.Duration // the function's init (boot.functionInit)
	initReported atomic.Bool   // Init Duration goes on the first REPORT only
	boot         boot          // the start's phases, for its "cold start" span (trace.go)
	coldTraced   atomic.Bool   // the first request recorded that span
	servedOnce   atomic.Bool   // the sandbox was told the first request was answered

	fz sandbox.Freezer // nil when the sandbox cannot freeze (freeze.go)

	// Guarded by pool.mu.
	frozen   bool
	idleAt   time.Time   // when it last went idle (freeze.go)
	freezeT  *time.Timer // freezes it once idle long enough (freeze.go)
	inflight int
	inFree   bool
	retiring bool
	broken   bool // retired for a failure: no preStop hook
	evicted  bool // retired to make room for another pool
	lastUsed time.Time
}

func newID(name string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return name + "-" + hex.EncodeToString(b[:])
}

// startInstance starts an instance of p's version and waits until it is
// ready for its first request. ctx bounds the node's part (Config.
// StartTimeout); the function's init has Config.InitTimeout from its
// sandbox's start. Init failures come back as *nimbus.FunctionError.
func (e *Engine) startInstance(ctx context.Context, p *pool, fn *nimbus.Function) (*instance, error) {
	rt := p.rt
	began := time.Now()
	b := boot{began: began}
	sys := newSysLog(fn, e.arn(fn.Name))
	if fn.IsImage() {
		return e.startImage(ctx, p, fn, b, sys)
	}
	codeDir, err := e.cfg.Code.Ensure(ctx, fn.CodeSHA256)
	if err != nil {
		return nil, fmt.Errorf("prepare code: %w", err)
	}
	optDir, err := e.layersDir(ctx, fn)
	if err != nil {
		return nil, fmt.Errorf("prepare layers: %w", err)
	}
	runtimeDir := runtimes.Dir(rt, e.cfg.BootstrapDir)
	seen := sandbox.PathsOf(e.cfg.Sandbox, sandbox.Spec{CodeDir: codeDir, RuntimeDir: runtimeDir, OptDir: optDir})
	// Function Compute's conventions: the code at /code as well.
	codeAlso := ""
	if fc := fn.FC; fc != nil && fc.Conventions && sandbox.IsolationOf(e.cfg.Sandbox).MinimalRoot {
		codeAlso = fcCodeRoot
	}
	path, args, custom := fcCommand(fn, seen.TaskRoot, codeAlso != "")
	if !custom {
		path, args, err = runtimes.Command(rt, codeDir, runtimeDir, seen)
	}
	if err != nil {
		return nil, &initFailure{fe: &nimbus.FunctionError{Type: "Runtime.InvalidEntrypoint", Message: err.Error(), Unhandled: true},
			sys: sys, took: time.Since(began), boot: b}
	}
	inst := &instance{id: newID(fn.Name), pool: p, fn: fn, kindHTTP: rt.Kind == runtimes.KindHTTP}
	inst.ctx, inst.cancel = context.WithCancel(context.Background())
	inst.out, err = newOutput(e.cfg.Logs, fn.Name, sys, newLogLimiter(e.cfg.LogRate), &e.wg)
	if err != nil {
		inst.close()
		return nil, err
	}
	// AWS_LAMBDA_RUNTIME_API (or PORT) comes from prepare, once the
	// instance's network is known.
	env := runtimes.Env(fn, rt, "", seen, e.cfg.Region)
	if codeAlso != "" && rt.Kind != runtimes.KindHTTP {
		env = append(env, "FC_FUNC_CODE_PATH="+codeAlso)
	}
	env = lastWins(append(env, logEnv(fn)...))
	b.sandboxStarted = time.Now()
	return e.runInstance(ctx, inst, sandbox.Spec{
		ID: inst.id, Path: path, Args: args, Env: env, CodeDir: codeDir, CodeAlso: codeAlso, RuntimeDir: runtimeDir, OptDir: optDir,
		MemoryMB: fn.MemoryMB, PidsMax: pidsMax, TmpMB: fn.TmpMB(),
		Stdout: inst.out.w, Stderr: inst.out.w,
		Network: e.network(fn), Prepare: inst.prepare, TakeOutput: true,
		Zygote: runtimes.ZygoteFor(rt, runtimeDir, seen, env),
	}, b, sys)
}

// startImage starts an instance of image function fn (see startInstance):
// its image's root, from the node's images, is the instance's; its
// command, working directory, user and environment come from the image's
// config and the function's ImageConfig (runtimes.ImageCommand,
// runtimes.ImageEnv). The image is kept from collection while the
// instance lives.
func (e *Engine) startImage(ctx context.Context, p *pool, fn *nimbus.Function, b boot, sys sysLog) (*instance, error) {
	if e.cfg.Images == nil || fn.Image == nil {
		return nil, nimbus.Errorf(nimbus.ErrUnavailable, "function %s runs an image, and this node has no image store", fn.Name)
	}
	if !sandbox.IsolationOf(e.cfg.Sandbox).ImageRoot {
		return nil, nimbus.Errorf(nimbus.ErrUnavailable, "function %s runs an image, and this node's sandbox cannot (%s)", fn.Name, e.cfg.Sandbox.Describe())
	}
	release := e.cfg.Images.Use(fn.Image.Digest())
	img, err := e.cfg.Images.Ensure(ctx, fn.Image.Resolved)
	if err != nil {
		release()
		return nil, fmt.Errorf("prepare image: %w", err)
	}
	path, args, dir, err := runtimes.ImageCommand(fn, img.Config)
	if err != nil {
		release()
		return nil, &initFailure{fe: &nimbus.FunctionError{Type: "Runtime.InvalidEntrypoint", Message: err.Error(), Unhandled: true},
			sys: sys, took: time.Since(b.began), boot: b}
	}
	rt := p.rt
	inst := &instance{id: newID(fn.Name), pool: p, fn: fn, kindHTTP: rt.Kind == runtimes.KindHTTP, release: sync.OnceFunc(release)}
	if inst.kindHTTP {
		inst.port = runtimes.ImagePort(fn)
	}
	inst.ctx, inst.cancel = context.WithCancel(context.Background())
	inst.out, err = newOutput(e.cfg.Logs, fn.Name, sys, newLogLimiter(e.cfg.LogRate), &e.wg)
	if err != nil {
		inst.close()
		return nil, err
	}
	// As in Lambda's base images (the image may have nothing there).
	seen := sandbox.Paths{TaskRoot: sandbox.TaskRoot, RuntimeDir: sandbox.RuntimeRoot}
	env := lastWins(append(runtimes.ImageEnv(fn, rt, img.Config, seen, e.cfg.Region), logEnv(fn)...))
	b.sandboxStarted = time.Now()
	return e.runInstance(ctx, inst, sandbox.Spec{
		ID: inst.id, Path: path, Args: args, Env: env,
		RootFS: img.Root, WorkDir: dir, User: img.Config.User,
		MemoryMB: fn.MemoryMB, PidsMax: pidsMax, TmpMB: fn.TmpMB(),
		Stdout: inst.out.w, Stderr: inst.out.w,
		Network: e.network(fn), Prepare: inst.prepare,
	}, b, sys)
}

// runInstance starts inst's sandbox with spec and waits until it is ready
// for its first request (see startInstance).
func (e *Engine) runInstance(ctx context.Context, inst *instance, spec sandbox.Spec, b boot, sys sysLog) (*instance, error) {
	began, fn := b.began, inst.fn
	var err error
	inst.sb, err = e.cfg.Sandbox.Start(ctx, spec)
	inst.out.closeWriter()
	b.sandboxReady = time.Now()
	if err == nil {
		if err = inst.out.start(sandbox.OutputOf(inst.sb)); err != nil {
			inst.sb.Kill()
			<-inst.sb.Done()
		}
	}
	if err != nil {
		inst.close()
		return nil, fmt.Errorf("start instance: %w", err)
	}
	if inst.rapi != nil {
		// Only the instance's user may use its Runtime API; in a network of
		// its own, only the instance can reach it at all.
		uid := inst.sb.UID()
		if inst.net.Private() {
			uid = -1
		}
		inst.rapi.Admit(uid)
	}
	if sandbox.IsolationOf(e.cfg.Sandbox).Freeze {
		inst.fz = sandbox.FreezerOf(inst.sb)
	}
	if took := b.sandboxReady.Sub(b.sandboxStarted); took > slowSandboxStart {
		e.log.Warn("slow sandbox start: the host took long to make the instance's sandbox", nimbus.LogFunction, fn.Name,
			nimbus.LogInstance, inst.id, "took", took)
	}
	// The function's init has its own time, from now: the node's part
	// (ctx, StartTimeout) is not the function's.
	initCtx, cancel := context.WithTimeout(e.ctx, e.cfg.InitTimeout+fcInitializerTimeout(fn))
	err = inst.waitReady(initCtx)
	if err == nil {
		err = inst.fcInitialize(initCtx) // a custom function's initializer: POST /initialize
	}
	cancel()
	b.ready = time.Now()
	if err != nil {
		inst.sb.Kill()
		<-inst.sb.Done()
		inst.out.drain()
		var fe *nimbus.FunctionError
		if errors.As(err, &fe) {
			inst.out.close()
			err = &initFailure{fe: fe, tail: inst.out.takeTail(), sys: sys, took: b.functionInit(), boot: b}
		}
		inst.close()
		return nil, err
	}
	if in := sandbox.InitializerOf(inst.sb); in != nil {
		// Init ran at one CPU's weight; invocations run at the memory's.
		if err := in.InitDone(); err != nil {
			e.log.Warn("set the CPU weight of a started instance", nimbus.LogInstance, inst.id, nimbus.LogErr, err)
		}
	}
	inst.initDuration = b.functionInit()
	inst.boot = b
	e.log.Debug("instance started", nimbus.LogFunction, fn.Name, nimbus.LogInstance, inst.id, "took", b.ready.Sub(began),
		"prepare", b.sandboxStarted.Sub(began), "sandbox_start", b.sandboxReady.Sub(b.sandboxStarted), "runtime_init", b.ready.Sub(b.sandboxReady))
	return inst, nil
}

// network is the network of fn's instances: its own, or the node's default.
// The registry validated fn's.
func (e *Engine) network(fn *nimbus.Function) sandbox.Network {
	if fn.NimbusNetwork != "" {
		return sandbox.Network(fn.NimbusNetwork)
	}
	return e.cfg.Network
}

// The Runtime API's address and an HTTP function's port in an instance's
// own network (sandbox.Net.Private), as on Lambda; on the host's network
// they are free loopback ports.
const (
	privateRuntimeAPI = "127.0.0.1:9001"
	privateHTTPPort   = 8080
)

// prepare is the instance's sandbox.Spec.Prepare: it makes the instance's
// Runtime API server in its network n (or, for an HTTP function, picks
// its port there) and returns the variables that tell the instance.
func (inst *instance) prepare(n sandbox.Net) ([]string, error) {
	inst.closeServers() // made for an earlier helper that failed
	inst.net = n
	if inst.kindHTTP {
		fc := fcCustom(inst.fn)
		port := cmp.Or(inst.port, privateHTTPPort)
		if fc != nil {
			port = fc.port
		}
		if !n.Private() {
			var err error
			if port, err = freePort(); err != nil {
				return nil, fmt.Errorf("pick port: %w", err)
			}
		}
		inst.http = newHTTPTarget(port, n)
		if fc != nil {
			inst.http.fc = fc.headers(inst.fn, inst.pool.e.cfg, inst.id)
			inst.fcTarget.Store(inst.http)
			p := strconv.Itoa(port)
			return []string{"PORT=" + p, "FC_SERVER_PORT=" + p, "FC_CUSTOM_LISTEN_PORT=" + p}, nil
		}
		return []string{"PORT=" + strconv.Itoa(port)}, nil
	}
	addr := privateRuntimeAPI
	if !n.Private() {
		addr = "127.0.0.1:0"
	}
	ln, err := n.Listen("tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("runtime api: listen: %w", err)
	}
	// Connections wait until the instance's user is known (Admit).
	inst.rapi = runtimeapi.ServePending(ln, inst.pool.e.log.With(nimbus.LogFunction, inst.fn.Name, nimbus.LogInstance, inst.id))
	return []string{"AWS_LAMBDA_RUNTIME_API=" + inst.rapi.Addr()}, nil
}

// initFailure is a function whose instance could not start: the error,
// what the instance printed before it failed, how its platform lines are
// written and how long the init took.
type initFailure struct {
	fe   *nimbus.FunctionError
	tail []byte
	sys  sysLog
	took time.Duration
	boot boot
	// claimed: a request took this start as its cold start. The waiters
	// a failed start fails, and the requests handed its error during the
	// back-off, share one start: only one of them bills and reports it.
	claimed atomic.Bool
}

func (f *initFailure) Error() string { return "init: " + f.fe.Error() }

// logTail is what the caller of a failed init sees as its log.
func (f *initFailure) logTail() []byte {
	out := append([]byte(nil), f.tail...)
	if line := f.sys.initFailed(f.fe, f.took); line != "" {
		out = append(append(out, line...), '\n')
	}
	if over := len(out) - tailBytes; over > 0 {
		out = out[over:]
	}
	return out
}

// logEnv is the environment that tells a runtime how to write the
// function's own log lines: AWS_LAMBDA_LOG_FORMAT (Text or JSON) and, for
// JSON, AWS_LAMBDA_LOG_LEVEL (the least application level kept).
func logEnv(fn *nimbus.Function) []string {
	if !fn.JSONLogs() {
		return []string{"AWS_LAMBDA_LOG_FORMAT=" + nimbus.LogFormatText}
	}
	level := "INFO"
	if fn.Logging.ApplicationLogLevel != "" {
		level = strings.ToUpper(fn.Logging.ApplicationLogLevel)
	}
	return []string{"AWS_LAMBDA_LOG_FORMAT=" + nimbus.LogFormatJSON, "AWS_LAMBDA_LOG_LEVEL=" + level}
}

// lastWins drops the earlier of repeated variables in env, so that the
// engine's own (appended last) win over a function's of the same name.
func lastWins(env []string) []string {
	seen := make(map[string]bool, len(env))
	out := make([]string, len(env))
	n := len(env)
	for i := len(env) - 1; i >= 0; i-- {
		name, _, _ := strings.Cut(env[i], "=")
		if !seen[name] {
			seen[name] = true
			n--
			out[n] = env[i]
		}
	}
	return out[n:]
}

// waitReady waits for the runtime's first /next (or, for an HTTP function,
// for its port to accept connections).
func (inst *instance) waitReady(ctx context.Context) error {
	if inst.http != nil {
		return inst.http.waitReady(ctx, inst.sb.Done(), inst.exitError)
	}
	select {
	case <-inst.rapi.Ready():
		return nil
	case <-inst.rapi.InitFailed():
		fe := *inst.rapi.InitErr()
		fe.Unhandled = true
		return &fe
	case <-inst.sb.Done():
		// The runtime may have posted /init/error just before exiting.
		select {
		case <-inst.rapi.InitFailed():
			fe := *inst.rapi.InitErr()
			fe.Unhandled = true
			return &fe
		default:
		}
		return inst.exitError("")
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &nimbus.FunctionError{Type: "Runtime.InitTimeout", Unhandled: true,
				Message: "The function did not finish its initialization within the init timeout"}
		}
		return ctx.Err()
	}
}

// exitError describes an instance that exited on its own.
func (inst *instance) exitError(requestID string) *nimbus.FunctionError {
	prefix := ""
	if requestID != "" {
		prefix = "RequestId: " + requestID + " Error: "
	}
	err := inst.sb.Err()
	if errors.Is(err, sandbox.ErrOutOfMemory) {
		return &nimbus.FunctionError{Type: "Runtime.OutOfMemory", Unhandled: true,
			Message: fmt.Sprintf("%sRuntime exited with error: out of memory (limit %d MB)", prefix, inst.fn.MemoryMB)}
	}
	reason := "exit status 0"
	if err != nil {
		reason = err.Error()
	}
	return &nimbus.FunctionError{Type: "Runtime.ExitError", Unhandled: true,
		Message: prefix + "Runtime exited with error: " + reason}
}

// invoke runs one request. broken reports that the instance must not be
// reused (it crashed, timed out, or its caller stopped it mid-request).
//
// A caller that leaves (ctx ends: callerLeft) does not break the instance:
// an HTTP function's request is cancelled (its connection may be dropped),
// a Runtime-API function's invocation runs on to its answer, within the
// function's timeout. The answer is dropped: the result is a
// Runtime.Abandoned error with the run's real duration.
func (inst *instance) invoke(ctx context.Context, req nimbus.Invocation) (res nimbus.Result, broken bool) {
	p := inst.pool
	fn := inst.fn
	started := time.Now()
	deadline := started.Add(time.Duration(fn.Timeout) * time.Second)
	ictx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	stopInst := context.AfterFunc(inst.ctx, cancel)
	stopCaller := context.AfterFunc(ctx, func() {
		if inst.http != nil || !callerLeft(ctx) {
			cancel()
		}
	})
	inst.out.begin(req.RequestID)

	var err error
	if inst.http != nil {
		res, err = inst.http.forward(ictx, withRespondTo(ctx, req))
	} else {
		var r runtimeapi.Result
		r, err = inst.rapi.Invoke(ictx, runtimeapi.Invocation{
			RequestID: req.RequestID, Payload: req.Payload, Deadline: deadline,
			FunctionARN: p.e.arn(fn.Name),
			TraceID:     recursion.Header(req.TraceID, req.Lineage), ClientContext: req.ClientContext,
			Stream: streamTo(ctx, req.Stream),
		})
		res.Payload, res.Err = r.Payload, r.Err
		if r.Err != nil {
			r.Err.Unhandled = true
		}
	}
	stopCaller()
	stopInst()
	cancel()
	switch {
	case err != nil:
		res, broken = inst.failure(ctx, req.RequestID, deadline, err)
	case ctx.Err() != nil:
		res = abandoned(req.RequestID)
	}
	duration := time.Since(started)
	if broken {
		inst.sb.Kill()
		<-inst.sb.Done()
	}
	inst.out.drain()
	r := inst.report(res.Err, duration)
	res.LogTail = inst.out.end(req.RequestID, r)
	res.Report = nimbus.Report{InstanceID: inst.id, ColdStart: r.init > 0, Init: r.init, Duration: duration,
		MemoryMB: r.memoryMB, MaxMemoryUsedMB: r.maxUsedMB}
	return res, broken
}

// failure turns an invoke error into the caller's result.
func (inst *instance) failure(ctx context.Context, requestID string, deadline time.Time, err error) (nimbus.Result, bool) {
	fn := inst.fn
	select {
	case <-inst.sb.Done():
		return nimbus.Result{Err: inst.exitError(requestID)}, true
	default:
	}
	switch {
	case errors.Is(err, nimbus.ErrTooLarge):
		// Runtimes usually exit when their response is refused: replace
		// the instance rather than hand it the next request.
		return nimbus.Result{Err: &nimbus.FunctionError{Type: "Function.ResponseSizeTooLarge", Unhandled: true,
			Message: "Response payload size exceeded maximum allowed payload size (6291456 bytes)."}}, true
	case !time.Now().Before(deadline):
		msg := fmt.Sprintf("RequestId: %s Error: Task timed out after %d.00 seconds", requestID, fn.Timeout)
		inst.out.timedOut(requestID, fn.Timeout)
		return nimbus.Result{Err: &nimbus.FunctionError{Type: "Sandbox.Timedout", Message: msg, Unhandled: true}}, true
	case ctx.Err() != nil && callerLeft(ctx):
		// An HTTP function's request, cancelled: the instance serves on.
		return abandoned(requestID), false
	case ctx.Err() != nil:
		// Stopped mid-request; the function may still be running, so
		// this instance cannot take another request.
		return nimbus.Result{Err: &nimbus.FunctionError{Type: abandonedType, Unhandled: true,
			Message: "RequestId: " + requestID + " Error: the invocation was stopped: " + context.Cause(ctx).Error()}}, true
	}
	return nimbus.Result{Err: &nimbus.FunctionError{Type: "Runtime.ProtocolError", Unhandled: true,
		Message: "RequestId: " + requestID + " Error: " + err.Error()}}, true
}

// served tells the sandbox, once, that the instance has answered its first
// request (sandbox.Initializer's Served).
func (inst *instance) served() {
	if inst.servedOnce.CompareAndSwap(false, true) {
		if in := sandbox.InitializerOf(inst.sb); in != nil {
			in.Served()
		}
	}
}

// report describes an invocation for its END and REPORT lines.
func (inst *instance) report(fe *nimbus.FunctionError, d time.Duration) invokeReport {
	r := reportOf(fe, d)
	r.memoryMB = inst.fn.MemoryMB
	r.maxUsedMB = (inst.sb.MaxMemoryBytes() + (1 << 20) - 1) >> 20
	if inst.initReported.CompareAndSwap(false, true) {
		r.init = inst.initDuration
	}
	return r
}

// stop kills the instance; watch cleans up after it exits. A function
// with Function Compute's preStop hook that is not broken runs it first
// (fcRunPreStop), on a goroutine of the engine's, and is killed once it
// is done or its timeout passes, whichever is first.
func (inst *instance) stop(broken bool) {
	if inst.sb == nil {
		return
	}
	d := inst.fcPreStop()
	if d == 0 || broken {
		inst.sb.Kill()
		return
	}
	inst.pool.e.wg.Go(func() {
		defer inst.sb.Kill()
		if err := inst.fcRunPreStop(d); err != nil {
			inst.pool.e.log.Warn("preStop hook", nimbus.LogFunction, inst.fn.Name, nimbus.LogInstance, inst.id, nimbus.LogErr, err)
		}
	})
}

// closeServers closes the instance's Runtime API server or HTTP client.
func (inst *instance) closeServers() {
	if inst.rapi != nil {
		_ = inst.rapi.Close()
		inst.rapi = nil
	}
	if inst.http != nil {
		inst.http.close()
		inst.http = nil
	}
}

// close releases the instance's servers and pipes.
func (inst *instance) close() {
	if inst.release != nil {
		inst.release()
	}
	inst.closeServers()
	if inst.out != nil {
		inst.out.close()
	}
	inst.cancel()
}
