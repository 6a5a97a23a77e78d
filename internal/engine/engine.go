// Package engine turns invocations into running functions. It keeps a pool of
// instances per function version: a cold start on demand, warm reuse,
// scale-out while every instance is busy (bounded per function and per
// node), a bounded wait queue in front of each pool, idle instances stopped
// after a timeout or evicted to make room on a full node (evict.go), a
// minimum of warm instances kept, and draining of old versions after an
// update. Instances are started through a sandbox.Backend
// and speak the Lambda Runtime API (internal/runtimeapi) or, for HTTP
// functions, plain HTTP.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/tracing"
)

// CodeCache gives the directory of a code digest on this node.
type CodeCache interface {
	Ensure(ctx context.Context, hexDigest string) (dir string, err error)
}

// Images gives the engine the roots of image functions' images on this
// node (the node's internal/image.Store).
type Images interface {
	// Ensure returns the image resolved ("host/repo@sha256:<hex>"),
	// flattened on this node: pulled first if it is not there (the
	// registry has it pulled when the function is created or updated, so
	// a start finds it).
	Ensure(ctx context.Context, resolved string) (Image, error)
	// Use keeps the image of digest from being collected until release.
	Use(digest string) (release func())
}

// Image is an image on this node: its digest, the host directory of its
// flattened root and what its config says.
type Image struct {
	Digest string
	Root   string
	Config runtimes.ImageConfig
}

// Config wires an Engine.
type Config struct {
	Sandbox sandbox.Backend
	Code    CodeCache
	// Images are the node's images; nil fails every image function's start.
	Images       Images
	Runtimes     []runtimes.Runtime
	BootstrapDir string // where runtimes.Install put the bootstraps
	Logs         *LogStore
	// LogRate bounds the bytes per second of output each instance writes
	// to its log (0: DefaultLogRate; negative: no bound), with a burst of
	// twice as many; lines over it are dropped and counted in a marker
	// line (logs.go).
	LogRate float64
	Region  string
	Account string
	// MaxInstances caps instances on this node, all functions together.
	MaxInstances int
	// MaxMemoryMB caps the sum of the memory limits (MemorySize) of the
	// instances on this node, starting ones included (0: no cap). A start
	// beyond it is made room for as one beyond MaxInstances is (evict.go).
	MaxMemoryMB int
	// IdleTimeout stops instances unused this long (a function may override it).
	IdleTimeout time.Duration
	// QueueDepth bounds the requests waiting per function; QueueTimeout is
	// how long one may wait for an instance before it gets a 429.
	QueueDepth   int
	QueueTimeout time.Duration
	// CPUQueue is the queue in front of scale-out (queue.go): once this
	// many instances of a function version are busy, a request that
	// would make another instance busy (an idle one, or a new one) waits
	// instead for a busy instance to free, when the wait it can expect
	// from the version's recent busy time per request is within
	// CPUQueueWait, and for at most that long (and the function's
	// timeout); then it takes an idle instance or starts one as before.
	// 0: off (every request that finds no free slot starts an instance).
	CPUQueue     int
	CPUQueueWait time.Duration
	// InitTimeout bounds the function's init (Lambda's init phase: 10 s):
	// from its sandbox's start, its process running, until its runtime is
	// ready (its first /next, or its port accepting). A start that runs
	// out of it fails with Runtime.InitTimeout.
	InitTimeout time.Duration
	// StartTimeout bounds the node's part of an instance's start, before
	// the function runs: its code and layers (or image) made ready on this
	// node and its sandbox started. It is not the function's time: a host
	// slow to make namespaces, cgroups or network links (seconds, under a
	// burst of them) delays the start without failing the function's
	// init. A start that runs out of it fails with the node's error (500).
	// Default DefaultStartTimeout.
	StartTimeout time.Duration
	// ReapInterval is how often idle instances are looked for; 0 disables
	// the background reaper (tests call Reap).
	ReapInterval time.Duration
	// FreezeAfter is how long an idle instance (its runtime back in
	// /invocation/next) runs before it is frozen (freeze.go); 0 freezes
	// it at once, as Lambda does. A thaw costs about a millisecond on
	// cgroup v1 (docs/BENCHMARKS.md), so requests that follow each other
	// closer than this do not pay it.
	FreezeAfter time.Duration
	// Network is the network of instances of functions that do not choose
	// one (nimbus.Function.NimbusNetwork); "" is sandbox.NetworkEgress.
	Network sandbox.Network
	// TracerProvider makes the engine's spans (queue, cold start, run:
	// trace.go) under the invocation's span; nil is the no-op provider.
	TracerProvider trace.TracerProvider
	// Now is the clock; tests inject one.
	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultStartTimeout bounds the node's part of an instance's start when
// Config.StartTimeout is not set: ample for code or an image fetched from
// the cluster's store, and for a sandbox start that the host delays.
const DefaultStartTimeout = time.Minute

// slowSandboxStart is a sandbox start long enough to tell the operator
// about: one takes milliseconds (docs/BENCHMARKS.md); seconds mean a host
// short of something (CPU, or the kernel busy making or tearing down
// namespaces).
const slowSandboxStart = time.Second

// Validate fills defaults and checks the config.
func (c *Config) validate() error {
	if c.Sandbox == nil || c.Code == nil {
		return errors.New("engine: Sandbox and Code are required")
	}
	if c.Logs == nil {
		c.Logs = NewLogStore(0, 0)
	}
	if c.MaxInstances <= 0 {
		c.MaxInstances = 1000
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.QueueDepth <= 0 {
		c.QueueDepth = 1000
	}
	if c.QueueTimeout <= 0 {
		c.QueueTimeout = 10 * time.Second
	}
	if c.CPUQueue < 0 {
		c.CPUQueue = 0
	}
	if c.CPUQueue > 0 && c.CPUQueueWait <= 0 {
		c.CPUQueueWait = DefaultCPUQueueWait
	}
	if c.InitTimeout <= 0 {
		c.InitTimeout = 10 * time.Second
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	n, err := sandbox.ParseNetwork(string(c.Network))
	if err != nil {
		return fmt.Errorf("engine: Network: %w", err)
	}
	c.Network = n
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Account == "" {
		c.Account = "000000000000"
	}
	return nil
}

// Engine runs invocations. New starts it, Close stops it.
type Engine struct {
	cfg      Config
	log      *slog.Logger
	tracer   trace.Tracer
	runtimes map[string]runtimes.Runtime

	mu        sync.Mutex
	pools     map[string]*pool // current pool per function name
	draining  map[*pool]struct{}
	instances int // on this node, all pools, including starting ones
	memoryMB  int // the memory limits of those instances, summed
	closed    bool
	// reservations are the functions' reserved concurrencies, by name:
	// one for all the pools of a function (reserve.go).
	reservations map[string]*reservation
	// starved are the pools whose waiting requests need instances that
	// the node has no slot for (see evict.go); evicting counts the
	// instances evicted for them that have not exited yet.
	starved  map[*pool]struct{}
	evicting int
	// rebalancing: a makeRoom goroutine runs; rekick: something changed
	// since it last looked.
	rebalancing, rekick bool
	// hungry is len(starved) > 0, for the request path to read without mu.
	hungry atomic.Bool
	// holds counts the instances held for forwarded invocations
	// (cluster.go).
	holds atomic.Int32
	// share is this node's part of provisioned concurrency (cluster.go).
	share atomic.Pointer[ProvisionShare]

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	// wg counts every goroutine the engine starts: the reaper, instance
	// starts, instance watches and log readers. Close waits for them.
	wg sync.WaitGroup
}

// New returns a running Engine, with its background reaper if
// cfg.ReapInterval is set. The caller must Close it.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger,
		tracer:   cfg.TracerProvider.Tracer(tracerName),
		runtimes: make(map[string]runtimes.Runtime),
		pools:    make(map[string]*pool),
		draining: make(map[*pool]struct{}),
		starved:  make(map[*pool]struct{}),

		reservations: make(map[string]*reservation),
	}
	for _, rt := range cfg.Runtimes {
		e.runtimes[rt.ID] = rt
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if cfg.ReapInterval > 0 {
		e.wg.Go(e.reapLoop)
	}
	return e, nil
}

// Invoke runs req on fn, starting an instance if none is free. Errors:
// nimbus.ErrThrottled (no capacity within the queue timeout), nimbus.ErrNotFound
// (code missing), nimbus.ErrConflict (engine closed), ctx errors.
func (e *Engine) Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error) {
	p, err := e.pool(fn)
	if err != nil {
		return nimbus.Result{}, err
	}
	began := time.Now()
	inst, waited := e.takeHeld(ctx, p), false
	if inst == nil {
		inst, waited, err = p.acquire(ctx, fn)
	}
	if waited || err != nil {
		// Only a request that waited for an instance (or was refused) has
		// a queue span: a warm hit does not queue.
		_, queue := e.span(ctx, "queue", trace.WithTimestamp(began))
		endSpan(queue, nil, err)
	}
	if err != nil {
		var f *initFailure
		if errors.As(err, &f) {
			rep := nimbus.Report{Queued: time.Since(began), MemoryMB: fn.MemoryMB}
			if f.claimed.CompareAndSwap(false, true) {
				// The failed start is the cold start of the first request
				// it fails (Lambda bills an init that failed); the others
				// it fails share it.
				e.traceColdStart(ctx, f.boot, "", f.fe)
				rep.ColdStart, rep.Init = true, f.took
			}
			return nimbus.Result{Err: f.fe, LogTail: f.logTail(), Report: rep}, nil
		}
		return nimbus.Result{}, err
	}
	acquired := time.Now()
	queued := acquired.Sub(began)
	if inst.coldTraced.CompareAndSwap(false, true) {
		e.traceColdStart(ctx, inst.boot, inst.id, nil)
	}
	rctx, run := e.span(ctx, "run")
	if run != nil {
		req.TraceID = tracing.XRay(run.SpanContext())
	}
	res, broken := inst.invoke(rctx, req)
	inst.served()
	endSpan(run, res.Err, nil)
	res.Report.Queued = queued
	p.release(inst, broken, time.Since(acquired))
	return res, nil
}

// Warm reports how many instances of the function's current version are
// running.
func (e *Engine) Warm(name string) int {
	e.mu.Lock()
	p := e.pools[name]
	e.mu.Unlock()
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.all)
}

// CodeInUse adds to inUse the code digests that this node's pools and
// instances (including draining ones) run, so that the code cache keeps them.
func (e *Engine) CodeInUse(inUse map[string]bool) {
	pools := e.allPools()
	for _, p := range pools {
		p.mu.Lock()
		inUse[p.fn.CodeSHA256] = true
		layersInUse(inUse, p.fn)
		for inst := range p.all {
			inUse[inst.fn.CodeSHA256] = true
			layersInUse(inUse, inst.fn)
		}
		p.mu.Unlock()
	}
}

// allPools returns the current and the draining pools.
func (e *Engine) allPools() []*pool {
	e.mu.Lock()
	defer e.mu.Unlock()
	pools := make([]*pool, 0, len(e.pools)+len(e.draining))
	for _, p := range e.pools {
		pools = append(pools, p)
	}
	for p := range e.draining {
		pools = append(pools, p)
	}
	return pools
}

// Stats describes a pool, for tests and the API.
type Stats struct {
	Instances, Idle, Starting, Waiting int
	// Held are the waiting requests the queue in front of scale-out
	// holds for a busy instance (queue.go).
	Held int
	// Provisioned is how many instances the pool keeps warm: its
	// provisioned concurrency, or this node's share of it in a cluster
	// (SetProvisionShare), within its cap.
	Provisioned int
}

// Stats returns the current pool's figures for a function.
func (e *Engine) Stats(name string) Stats {
	e.mu.Lock()
	p := e.pools[name]
	e.mu.Unlock()
	if p == nil {
		return Stats{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	idle := 0
	for inst := range p.all {
		if inst.inflight == 0 {
			idle++
		}
	}
	return Stats{Instances: len(p.all), Idle: idle, Starting: p.starting, Waiting: p.waiters.Len(), Held: p.held, Provisioned: p.minWarm}
}

// versionKey identifies what instances run: everything that changes how an
// instance starts or writes its log. Concurrency settings are not part of
// it.
func versionKey(fn *nimbus.Function) string {
	h := sha256.New()
	env := make([]string, 0, len(fn.Environment))
	for k, v := range fn.Environment {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	sys := newSysLog(fn, "")
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00%d\x00%d\x00%v\x00%d\x00%s\x00%s\x00%s", fn.CodeSHA256, fn.Runtime, fn.Handler,
		fn.MemoryMB, fn.Timeout, fn.TmpMB(), sys.json, sys.level, strings.Join(logEnv(fn), "\x00"), strings.Join(env, "\x00"), fn.NimbusNetwork)
	if im := fn.Image; im != nil {
		fmt.Fprintf(h, "\x00image\x00%s\x00%q\x00%q\x00%s\x00%d", im.Resolved, im.EntryPoint, im.Command, im.WorkingDirectory, im.Port)
	}
	if fc := fn.FC; fc != nil && fc.Conventions { // Function Compute's conventions: their settings are in the environment
		fmt.Fprintf(h, "\x00fc")
		if i := fc.Initializer; i != nil {
			fmt.Fprintf(h, "\x00%s\x00%d", i.Handler, i.Timeout)
		}
		if p := fc.PreStop; p != nil {
			fmt.Fprintf(h, "\x00preStop\x00%d", p.Timeout)
		}
		if c := fcCustom(fn); c != nil {
			fmt.Fprintf(h, "\x00%d", c.port)
			if r := fc.CustomRuntime; r != nil {
				fmt.Fprintf(h, "\x00%q\x00%q", r.Command, r.Args)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// published reports whether version v of fn exists.
func published(fn *nimbus.Function, v string) bool {
	for _, r := range fn.Versions {
		if strconv.Itoa(r.Number) == v {
			return true
		}
	}
	return false
}

// poolID is the key of fn's pools: each published version (and $LATEST,
// the bare name) has pools of its own.
func poolID(fn *nimbus.Function) string {
	if fn.Version == "" {
		return fn.Name
	}
	return fn.Name + ":" + fn.Version
}

// pool returns the pool of fn's current version, replacing (and draining)
// one of an older version.
func (e *Engine) pool(fn *nimbus.Function) (*pool, error) {
	e.mu.Lock()
	// The registry's cache hands out one value per version of a function:
	// the same pointer needs no hashing.
	if p := e.pools[poolID(fn)]; p != nil && p.keyed == fn && !e.closed {
		e.mu.Unlock()
		return p, nil
	}
	e.mu.Unlock()
	key := versionKey(fn)
	p, old, err := e.swapPool(fn, key)
	if old != nil {
		old.drain()
	}
	return p, err
}

// swapPool returns the pool of fn's version key, making a new one if the
// current pool runs another version (old, which the caller drains).
func (e *Engine) swapPool(fn *nimbus.Function, key string) (p, old *pool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, nil, nimbus.Errorf(nimbus.ErrConflict, "Nimbus is shutting down")
	}
	p = e.pools[poolID(fn)]
	if p != nil && p.key == key {
		p.keyed = fn
		return p, nil, nil
	}
	rt, ok := e.runtimes[fn.Runtime]
	if fn.IsImage() {
		rt, ok = runtimes.ImageRuntime(fn), true
	}
	if !ok {
		return nil, nil, nimbus.Invalidf("The runtime %s of function %s is not offered by this node", fn.Runtime, fn.Name)
	}
	if p != nil {
		e.retirePoolLocked(p)
	}
	old = p
	p = newPool(e, fn, key, rt, e.reservationLocked(fn.Name))
	p.keyed = fn
	e.pools[p.id] = p
	return p, old, nil
}

// retirePoolLocked takes p out of service: no new requests reach it. The
// caller then drains it (p.drain, without e.mu: pool locks come first).
func (e *Engine) retirePoolLocked(p *pool) {
	delete(e.pools, p.id)
	e.draining[p] = struct{}{}
}

// Refresh tells the engine that a function changed or was deleted (fn nil):
// an older version's instances drain, and warm instances are started for a
// provisioned minimum. A deleted function's log goes with it.
func (e *Engine) Refresh(name string, fn *nimbus.Function) {
	if fn == nil || fn.State == nimbus.StateFailed {
		e.mu.Lock()
		var gone []*pool // $LATEST's pool; and a deleted function's versions'
		for id, p := range e.pools {
			if id == name || fn == nil && p.name == name {
				e.retirePoolLocked(p)
				gone = append(gone, p)
			}
		}
		if fn == nil {
			delete(e.reservations, name) // its draining pools keep theirs
		}
		e.mu.Unlock()
		for _, p := range gone {
			p.drain()
		}
		if fn == nil {
			e.cfg.Logs.Forget(name)
		}
		return
	}
	e.mu.Lock()
	running := e.pools[name] != nil
	var gone, versions []*pool // the pools of versions deleted, and kept
	for id, p := range e.pools {
		// A version's pool is keyed name:version (its id never changes;
		// p.fn is the pool's to guard).
		if v, ok := strings.CutPrefix(id, name+":"); ok && p.name == name {
			if published(fn, v) {
				versions = append(versions, p)
			} else {
				e.retirePoolLocked(p)
				gone = append(gone, p)
			}
		}
	}
	reserved := e.reservationLocked(name).setLimit(fn.ReservedConcurrency)
	e.mu.Unlock()
	for _, p := range gone {
		p.drain()
	}
	if reserved {
		for _, p := range versions {
			p.recap()
		}
	}
	if !running && fn.ProvisionedConcurrency == 0 {
		return // nothing runs and nothing is to be kept warm
	}
	p, err := e.pool(fn) // the current version's pool; an older one drains
	if err != nil {
		e.log.Warn("refresh pool", nimbus.LogFunction, name, nimbus.LogErr, err)
		return
	}
	p.mu.Lock()
	p.setLimitsLocked(fn)
	p.ensureMinLocked()
	p.mu.Unlock()
}

// arn is a function's ARN.
func (e *Engine) arn(name string) string {
	return "arn:aws:lambda:" + e.cfg.Region + ":" + e.cfg.Account + ":function:" + name
}

// reserveSlot takes a node-wide instance slot, and memoryMB of the node's
// memory, for an instance that the caller starts in a new goroutine,
// counted here in wg (under mu, so that Close never waits while a start is
// being added).
func (e *Engine) reserveSlot(memoryMB int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.takeSlotsLocked(1, memoryMB) == 1
}

// takeSlotsLocked takes up to n slots of memoryMB each, as reserveSlot
// does, and returns how many it took.
func (e *Engine) takeSlotsLocked(n, memoryMB int) int {
	if e.closed {
		return 0
	}
	n = min(n, e.cfg.MaxInstances-e.instances)
	if e.cfg.MaxMemoryMB > 0 && memoryMB > 0 {
		n = min(n, (e.cfg.MaxMemoryMB-e.memoryMB)/memoryMB)
	}
	n = max(n, 0)
	e.instances += n
	e.memoryMB += n * memoryMB
	e.wg.Add(n)
	return n
}

// fits reports whether an instance of memoryMB can ever start on this
// node: whether it is within MaxMemoryMB.
func (e *Engine) fits(memoryMB int) bool {
	return e.cfg.MaxMemoryMB <= 0 || memoryMB <= e.cfg.MaxMemoryMB
}

// releaseSlot gives back the slot, and the memory, of an instance that
// exited (or failed to start); evicted says it was evicted to make room.
// Pools waiting for room get it.
func (e *Engine) releaseSlot(memoryMB int, evicted bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.instances--
	e.memoryMB -= memoryMB
	if evicted {
		e.evicting--
	}
	if len(e.starved) > 0 {
		e.kickLocked()
	}
}

// reapLoop reaps idle instances every ReapInterval until Close.
func (e *Engine) reapLoop() {
	t := time.NewTicker(e.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			e.Reap()
		}
	}
}

// Reap stops instances idle past their timeout (keeping the provisioned
// minimum) and forgets emptied draining pools.
func (e *Engine) Reap() {
	now := e.cfg.Now()
	pools := e.allPools()
	for _, p := range pools {
		if p.reap(now) {
			e.mu.Lock()
			delete(e.draining, p)
			e.mu.Unlock()
		}
	}
}

// Close stops the reaper and every instance (requests in flight fail,
// waiting ones get nimbus.ErrConflict) and waits, within ctx, for every
// goroutine the engine started. It leaves the sandbox backend, which the
// caller made, open. Errors: ctx's, when it ends first (the goroutines
// still end, without being waited for). Calling Close again waits again.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	pools := make([]*pool, 0, len(e.pools)+len(e.draining))
	for _, p := range e.pools {
		pools = append(pools, p)
	}
	for p := range e.draining {
		pools = append(pools, p)
	}
	e.pools = map[string]*pool{}
	e.draining = map[*pool]struct{}{}
	e.mu.Unlock()
	e.cancel()
	for _, p := range pools {
		p.stopAll()
	}
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close engine: %w", ctx.Err())
	}
}

// Provision keeps min warm instances of version fn (a published version's
// snapshot), or with 0 no longer: provisioned concurrency of a version or
// an alias. Errors: those of starting the version's pool.
func (e *Engine) Provision(fn *nimbus.Function, min int) error {
	c := *fn
	c.ProvisionedConcurrency = min
	p, err := e.pool(&c)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.provisioned = min
	p.setLimitsLocked(&c)
	p.ensureMinLocked()
	p.mu.Unlock()
	return nil
}
