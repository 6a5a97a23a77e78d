package engine

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
)

// initBackoff bounds how often a function whose init fails is started again:
// requests within the window get the same init error at once, so a broken
// function cannot cause a restart storm.
const (
	initBackoffMin = 500 * time.Millisecond
	initBackoffMax = 30 * time.Second
)

// pool holds the instances of one function version.
type pool struct {
	e    *Engine
	name string // the function's; fn may change, the name does not
	fn   *nimbus.Function
	key  string
	rt   runtimes.Runtime
	// keyed is the last function value found to have key (guarded by
	// Engine.mu).
	keyed *nimbus.Function

	mu          sync.Mutex
	all         map[*instance]struct{}
	free        []*instance // instances with spare capacity, most recently used last
	starting    int
	waiters     list.List // of *waiter, oldest first
	maxInst     int       // per-function cap
	perInstance int       // concurrent requests per instance
	minWarm     int
	idleTimeout time.Duration
	draining    bool

	initErr      *initFailure
	initErrUntil time.Time
	initBackoff  time.Duration
}

type waiter struct {
	ch chan acquired // buffered 1
	el *list.Element
}

type acquired struct {
	inst *instance
	err  error
}

func newPool(e *Engine, fn *nimbus.Function, key string, rt runtimes.Runtime) *pool {
	p := &pool{e: e, name: fn.Name, fn: fn, key: key, rt: rt, all: make(map[*instance]struct{})}
	p.setLimits(fn)
	return p
}

// setLimits applies the concurrency settings of fn (which do not need new
// instances). Called with mu held, or before the pool is shared.
func (p *pool) setLimits(fn *nimbus.Function) {
	p.maxInst = p.e.cfg.MaxInstances
	if fn.ReservedConcurrency != nil {
		p.maxInst = *fn.ReservedConcurrency
	}
	p.perInstance = 1
	if p.rt.Kind == runtimes.KindHTTP && fn.HTTPConcurrency > 0 {
		p.perInstance = fn.HTTPConcurrency
	}
	p.minWarm = min(fn.ProvisionedConcurrency, p.maxInst)
	p.idleTimeout = p.e.cfg.IdleTimeout
	if fn.IdleTimeout > 0 {
		p.idleTimeout = fn.IdleTimeout
	}
	p.fn = fn
}

// acquire returns an instance with a free slot, starting one or waiting in
// the queue as needed. Errors: *nimbus.FunctionError (init failed),
// nimbus.ErrThrottled, ctx errors; *initFailure when the instance could not
// start.
func (p *pool) acquire(ctx context.Context, fn *nimbus.Function) (*instance, error) {
	p.mu.Lock()
	if fn != p.fn {
		p.setLimits(fn)
	}
	// A reserved concurrency of 0 throttles every request, warm
	// instances or not.
	if p.maxInst == 0 {
		p.mu.Unlock()
		return nil, nimbus.Errorf(nimbus.ErrThrottled, "Rate Exceeded. The function's reserved concurrency is 0.")
	}
	if inst := p.takeFreeLocked(); inst != nil {
		p.mu.Unlock()
		return inst, nil
	}
	if p.initErr != nil && p.e.cfg.Now().Before(p.initErrUntil) {
		f := p.initErr
		p.mu.Unlock()
		return nil, f
	}
	if p.waiters.Len() >= p.e.cfg.QueueDepth {
		p.mu.Unlock()
		return nil, nimbus.Errorf(nimbus.ErrThrottled, "Rate Exceeded. Too many requests are waiting for function %s.", p.name)
	}
	w := &waiter{ch: make(chan acquired, 1)}
	w.el = p.waiters.PushBack(w)
	p.scaleLocked()
	p.mu.Unlock()

	timer := time.NewTimer(p.e.cfg.QueueTimeout)
	defer timer.Stop()
	select {
	case a := <-w.ch:
		return a.inst, a.err
	case <-ctx.Done():
		return nil, p.abandon(w, ctx.Err())
	case <-timer.C:
		return nil, p.abandon(w, nimbus.Errorf(nimbus.ErrThrottled,
			"Rate Exceeded. No instance of function %s became free within %s.", p.name, p.e.cfg.QueueTimeout))
	}
}

// abandon takes a waiter out of the queue; if it was handed an instance
// meanwhile, the instance goes back.
func (p *pool) abandon(w *waiter, err error) error {
	p.mu.Lock()
	if w.el != nil {
		p.waiters.Remove(w.el)
		w.el = nil
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	if a := <-w.ch; a.inst != nil {
		p.release(a.inst, false)
	}
	return err
}

// takeFreeLocked takes a slot on the most recently used instance with one,
// passing over instances that exited while idle (watch removes them).
func (p *pool) takeFreeLocked() *instance {
	var inst *instance
	for inst == nil {
		n := len(p.free)
		if n == 0 {
			return nil
		}
		inst = p.free[n-1]
		select {
		case <-inst.sb.Done():
			p.free = p.free[:n-1]
			inst.inFree = false
			inst = nil
			continue
		default:
		}
	}
	n := len(p.free)
	inst.inflight++
	if inst.inflight >= p.perInstance {
		p.free = p.free[:n-1]
		inst.inFree = false
	}
	return inst
}

// scaleLocked starts as many instances as the waiting requests need and the
// limits allow, in parallel. A draining pool still serves the requests that
// were already waiting in it.
func (p *pool) scaleLocked() {
	need := p.waiters.Len() - p.starting*p.perInstance
	for need > 0 && len(p.all)+p.starting < p.maxInst && p.e.reserveSlot() {
		p.starting++
		need -= p.perInstance
		p.e.wg.Add(1)
		go p.start()
	}
}

// ensureMinLocked starts instances up to the provisioned minimum.
func (p *pool) ensureMinLocked() {
	for !p.draining && len(p.all)+p.starting < p.minWarm && p.e.reserveSlot() {
		p.starting++
		p.e.wg.Add(1)
		go p.start()
	}
}

// start starts one instance and hands it to waiters.
func (p *pool) start() {
	defer p.e.wg.Done()
	ctx, cancel := context.WithTimeout(p.e.ctx, p.e.cfg.InitTimeout)
	p.mu.Lock()
	fn := p.fn
	p.mu.Unlock()
	inst, err := p.e.startInstance(ctx, p, fn)
	cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting--
	if err != nil {
		p.e.releaseSlot()
		var f *initFailure
		if errors.As(err, &f) {
			p.noteInitErrorLocked(f)
		}
		p.failWaitersLocked(err)
		return
	}
	p.initErr, p.initBackoff = nil, 0
	p.all[inst] = struct{}{}
	inst.lastUsed = p.e.cfg.Now()
	p.e.wg.Add(1)
	go p.watch(inst)
	p.handOffLocked(inst)
}

func (p *pool) noteInitErrorLocked(f *initFailure) {
	p.initBackoff = min(max(2*p.initBackoff, initBackoffMin), initBackoffMax)
	p.initErr = f
	p.initErrUntil = p.e.cfg.Now().Add(p.initBackoff)
}

// failWaitersLocked answers the waiters no instance can serve now: after an
// init error every waiter gets it, rather than each starting its own
// instance; after another failure the waiters beyond what the starting
// instances will serve get it.
func (p *pool) failWaitersLocked(err error) {
	keep := p.starting * p.perInstance
	var f *initFailure
	if errors.As(err, &f) {
		keep = 0
	}
	for p.waiters.Len() > keep {
		w := p.waiters.Remove(p.waiters.Back()).(*waiter)
		w.el = nil
		w.ch <- acquired{err: err}
	}
}

// handOffLocked gives inst's free slots to waiters, oldest first, and
// records the rest as free; an instance of a draining pool that nobody
// waits for stops.
func (p *pool) handOffLocked(inst *instance) {
	for inst.inflight < p.perInstance && p.waiters.Len() > 0 {
		w := p.waiters.Remove(p.waiters.Front()).(*waiter)
		w.el = nil
		inst.inflight++
		w.ch <- acquired{inst: inst}
	}
	if p.draining {
		if inst.inflight == 0 {
			p.retireLocked(inst)
		}
		return
	}
	if inst.inflight < p.perInstance && !inst.inFree {
		inst.inFree = true
		p.free = append(p.free, inst)
	}
}

// release returns a slot of inst; a broken instance is stopped.
func (p *pool) release(inst *instance, broken bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	inst.inflight--
	inst.lastUsed = p.e.cfg.Now()
	if _, ok := p.all[inst]; !ok {
		return // died meanwhile
	}
	if broken {
		p.retireLocked(inst)
		p.scaleLocked() // waiters it would have served need another
		return
	}
	p.handOffLocked(inst)
}

// retireLocked stops inst; watch removes it once it has exited.
func (p *pool) retireLocked(inst *instance) {
	p.removeFreeLocked(inst)
	inst.retiring = true
	inst.stop()
}

func (p *pool) removeFreeLocked(inst *instance) {
	if !inst.inFree {
		return
	}
	inst.inFree = false
	for i, x := range p.free {
		if x == inst {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return
		}
	}
}

// watch waits for inst to exit, forgets it and restores the warm minimum.
func (p *pool) watch(inst *instance) {
	defer p.e.wg.Done()
	<-inst.sb.Done()
	inst.close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.all[inst]; !ok {
		return
	}
	delete(p.all, inst)
	p.removeFreeLocked(inst)
	p.e.releaseSlot()
	if !inst.retiring {
		p.e.log.Warn("instance exited", nimbus.LogFunction, p.name, nimbus.LogInstance, inst.id, nimbus.LogErr, inst.sb.Err())
	}
	p.ensureMinLocked()
	p.scaleLocked()
}

// reap stops instances idle past the timeout beyond the warm minimum, and
// reports whether a draining pool is now empty.
func (p *pool) reap(now time.Time) (gone bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := len(p.all) - p.minWarm
	for inst := range p.all {
		if keep <= 0 && !p.draining {
			break
		}
		if inst.inflight == 0 && !inst.retiring && now.Sub(inst.lastUsed) >= p.idleTimeout {
			p.retireLocked(inst)
			keep--
		}
	}
	return p.draining && len(p.all) == 0 && p.starting == 0
}

// drain retires the pool: idle instances stop now, busy ones once they
// have served the requests already queued here. New requests go to the
// function's new pool.
func (p *pool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draining = true
	for inst := range p.all {
		if inst.inflight == 0 {
			p.retireLocked(inst)
		}
	}
}

// stopAll kills every instance (engine shutdown).
func (p *pool) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draining = true
	for inst := range p.all {
		p.retireLocked(inst)
	}
	p.failWaitersLocked(nimbus.Errorf(nimbus.ErrConflict, "Nimbus is shutting down"))
}
