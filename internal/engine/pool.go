package engine

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
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
	id   string // the pool's key in the engine: the name, or name:version (poolID)
	fn   *nimbus.Function
	key  string
	rt   runtimes.Runtime
	// memoryMB is the memory limit of the version's instances (part of
	// its key: it does not change).
	memoryMB int
	// keyed is the last function value found to have key (guarded by
	// Engine.mu).
	keyed *nimbus.Function
	// res is the function's reserved concurrency, which all its pools
	// share (reserve.go).
	res *reservation

	mu          sync.Mutex
	all         map[*instance]struct{}
	free        []*instance // instances with spare capacity, most recently used last
	starting    int
	busy        int       // instances with a request in flight: at most maxInst
	retiring    int       // instances of all that are stopping
	waiters     list.List // of *waiter, oldest first
	maxInst     int       // the function's cap on the pool's instances, and on busy ones
	perInstance int       // concurrent requests per instance
	provisioned int       // the version's provisioned concurrency
	minWarm     int       // provisioned, within maxInst
	resUsed     int       // what the pool uses of res (also under res.mu)
	idleTimeout time.Duration
	draining    bool
	// short is how many instances the waiting requests lack for want of
	// a node-wide slot (also under Engine.mu; see evict.go).
	short int
	// held is how many waiting requests wait for a busy instance rather
	// than make another busy (queue.go); avgBusy and hotBusy are moving
	// averages of a request's time on its instance, of all and of those
	// run with more than Config.CPUQueue instances busy; minBusy the
	// fastest, drifting up.
	held                      int
	avgBusy, hotBusy, minBusy time.Duration

	initErr      *initFailure
	initErrUntil time.Time
	initBackoff  time.Duration
}

type waiter struct {
	ch   chan acquired // buffered 1
	el   *list.Element
	held bool // waits for a busy instance's slot (queue.go)
}

type acquired struct {
	inst *instance
	err  error
}

func newPool(e *Engine, fn *nimbus.Function, key string, rt runtimes.Runtime, res *reservation) *pool {
	p := &pool{e: e, name: fn.Name, id: poolID(fn), fn: fn, key: key, rt: rt, memoryMB: fn.MemoryMB, all: make(map[*instance]struct{}), res: res}
	p.limits(fn)
	return p
}

// setLimitsLocked applies the concurrency settings of fn (which do not need
// new instances) at once: idle instances beyond a lowered reserved
// concurrency stop, and a raised one lets waiting requests go.
func (p *pool) setLimitsLocked(fn *nimbus.Function) {
	if p.limits(fn) {
		// A lowered provisioned minimum left room in the reservation
		// for the function's other pools; they are woken without p.mu.
		p.e.wg.Go(p.res.wake)
	}
	p.applyCapLocked()
}

// applyCapLocked applies the pool's cap, after it or the function's
// reservation changed: surplus idle instances stop and waiting requests
// get the room there is.
func (p *pool) applyCapLocked() {
	p.retireSurplusLocked()
	p.serveWaitersLocked()
}

// limits takes the concurrency settings of fn. $LATEST's fn is the
// function's record, which holds the function's reserved concurrency and
// $LATEST's provisioned concurrency; a version's (a snapshot) holds
// neither: its provisioned concurrency comes from Engine.Provision.
func (p *pool) limits(fn *nimbus.Function) (freed bool) {
	if fn.Version == "" {
		p.res.setLimit(fn.ReservedConcurrency)
		p.provisioned = fn.ProvisionedConcurrency
	}
	p.perInstance = 1
	if p.rt.Kind == runtimes.KindHTTP && fn.HTTPConcurrency > 0 {
		p.perInstance = fn.HTTPConcurrency
	}
	p.idleTimeout = p.e.cfg.IdleTimeout
	if fn.IdleTimeout > 0 {
		p.idleTimeout = fn.IdleTimeout
	}
	p.fn = fn
	return p.capLocked()
}

// capLocked takes the function's reserved concurrency (or the node's
// MaxInstances) as the pool's cap, and the provisioned minimum within it.
// It reports whether room was freed in the reservation (see wake).
func (p *pool) capLocked() (freed bool) {
	p.maxInst = p.res.capOr(p.e.cfg.MaxInstances)
	p.minWarm = min(p.e.shareOf(p.id, p.provisioned), p.maxInst)
	return p.syncReservationLocked()
}

// acquire returns an instance with a free slot, starting one or waiting in
// the queue as needed. Errors: *nimbus.FunctionError (init failed),
// nimbus.ErrThrottled, ctx errors; *initFailure when the instance could not
// start.
func (p *pool) acquire(ctx context.Context, fn *nimbus.Function) (inst *instance, waited bool, err error) {
	p.mu.Lock()
	if fn != p.fn {
		p.setLimitsLocked(fn)
	}
	// A reserved concurrency of 0 throttles every request, warm
	// instances or not.
	if p.maxInst == 0 {
		p.mu.Unlock()
		return nil, false, nimbus.Errorf(nimbus.ErrReservedConcurrency, "Rate Exceeded. The function's reserved concurrency is 0.")
	}
	bound, hold := p.holdLocked()
	if inst := p.takeFreeLocked(!hold); inst != nil {
		p.mu.Unlock()
		return inst, false, nil
	}
	if !p.e.fits(p.memoryMB) {
		p.mu.Unlock()
		return nil, false, nimbus.Errorf(nimbus.ErrThrottled, "Rate Exceeded. Function %s's MemorySize of %d MB is more than this node admits (%d MB of instances in all).",
			p.name, p.memoryMB, p.e.cfg.MaxMemoryMB)
	}
	if p.initErr != nil && p.e.cfg.Now().Before(p.initErrUntil) {
		f := p.initErr
		p.mu.Unlock()
		return nil, false, f
	}
	if p.waiters.Len() >= p.e.cfg.QueueDepth {
		p.mu.Unlock()
		return nil, false, nimbus.Errorf(nimbus.ErrThrottled, "Rate Exceeded. Too many requests are waiting for function %s.", p.name)
	}
	w := &waiter{ch: make(chan acquired, 1), held: hold}
	w.el = p.waiters.PushBack(w)
	if hold {
		p.held++
	}
	p.scaleLocked()
	p.mu.Unlock()

	timer := time.NewTimer(p.e.cfg.QueueTimeout)
	defer timer.Stop()
	var unhold <-chan time.Time
	if hold {
		t := time.NewTimer(bound)
		defer t.Stop()
		unhold = t.C
	}
	for {
		select {
		case a := <-w.ch:
			return a.inst, true, a.err
		case <-unhold:
			unhold = nil
			p.unhold(w)
		case <-ctx.Done():
			return nil, true, p.abandon(w, ctx.Err())
		case <-timer.C:
			if p.startServes(w) {
				timer.Reset(p.e.cfg.QueueTimeout)
				continue
			}
			return nil, true, p.abandon(w, p.throttled())
		}
	}
}

// startServes reports whether w is among the waiters that the instances
// being started will take (handOffLocked serves the oldest first). Such a
// waiter is in a cold start, not in the queue: it waits for the start,
// which ends (StartTimeout, InitTimeout) with an instance or an error for
// it; QueueTimeout bounds only a wait for an instance to free.
func (p *pool) startServes(w *waiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.el == nil {
		return true // handed its instance already
	}
	n := p.starting * p.perInstance
	for el := p.waiters.Front(); el != nil && n > 0; el, n = el.Next(), n-1 {
		if el.Value.(*waiter) == w {
			return true
		}
	}
	return false
}

// abandon takes a waiter out of the queue; if it was handed an instance
// meanwhile, the instance goes back.
func (p *pool) abandon(w *waiter, err error) error {
	p.mu.Lock()
	if w.el != nil {
		p.dequeueLocked(w)
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	if a := <-w.ch; a.inst != nil {
		p.release(a.inst, false, 0)
	}
	return err
}

// takeFreeLocked takes a slot on the most recently used instance with one,
// passing over instances that exited while idle (watch removes them) and,
// while the limits allow no more busy instances or idle is false, idle
// ones.
func (p *pool) takeFreeLocked(idle bool) *instance {
	for i := len(p.free) - 1; i >= 0; i-- {
		inst := p.free[i]
		if !idle && inst.inflight == 0 {
			continue
		}
		select {
		case <-inst.sb.Done():
			p.removeFreeLocked(inst)
			continue
		default:
		}
		if p.takeSlotLocked(inst) {
			return inst
		}
	}
	return nil
}

// takeSlotLocked gives one of inst's request slots to a request, and
// reports whether it could: an idle instance becomes busy only within the
// limits (takeBusyLocked).
func (p *pool) takeSlotLocked(inst *instance) bool {
	if inst.inflight == 0 {
		if !p.takeBusyLocked() {
			return false
		}
		p.busyLocked(inst)
	}
	inst.inflight++
	if inst.inflight >= p.perInstance {
		p.removeFreeLocked(inst)
	}
	return true
}

// serveWaitersLocked gives free slots to the waiters, oldest first, within
// the limits, and starts instances for the rest. A held waiter takes only
// a slot on a busy instance while the queue keeps enough busy (queue.go).
func (p *pool) serveWaitersLocked() {
	busyFull := false // no busy instance has a free slot
	for el := p.waiters.Front(); el != nil; {
		w, next := el.Value.(*waiter), el.Next()
		var inst *instance
		if w.held && !p.servesHeldLocked() {
			if !busyFull {
				inst = p.takeFreeLocked(false)
				busyFull = inst == nil
			}
			if inst == nil {
				el = next
				continue
			}
		} else if inst = p.takeFreeLocked(true); inst == nil {
			break
		}
		p.dequeueLocked(w)
		w.ch <- acquired{inst: inst}
		el = next
	}
	p.scaleLocked()
}

// surplusLocked reports whether more instances run than maxInst allows.
func (p *pool) surplusLocked() bool { return len(p.all)-p.retiring > p.maxInst }

// retireSurplusLocked stops idle instances, least recently used first,
// while more run than maxInst allows; busy ones stop when they are done.
func (p *pool) retireSurplusLocked() {
	for _, inst := range slices.Clone(p.free) {
		if !p.surplusLocked() {
			return
		}
		if inst.inflight == 0 {
			p.retireLocked(inst)
		}
	}
}

// scaleLocked starts as many instances as the waiting requests need and the
// limits allow, in parallel; those the node has no room for are made room
// for (evict.go). A draining pool still serves the requests that were
// already waiting in it.
func (p *pool) scaleLocked() {
	need := p.waiters.Len() - p.held + p.heldShortLocked() - p.starting*p.perInstance
	room := p.roomLocked() - p.starting
	if need > 0 && room <= 0 {
		p.blockLocked() // an instance will be started when room is freed
	}
	want := min((need+p.perInstance-1)/p.perInstance, p.maxInst-len(p.all)-p.starting, room)
	if want <= 0 && p.short == 0 {
		return
	}
	for range p.e.reserveSlots(p, max(want, 0)) {
		p.starting++
		go p.start() // counted by reserveSlots
	}
}

// ensureMinLocked starts instances up to the provisioned minimum.
func (p *pool) ensureMinLocked() {
	for !p.draining && len(p.all)+p.starting < p.minWarm && p.e.reserveSlot(p.memoryMB) {
		p.starting++
		go p.start() // counted by reserveSlot
	}
}

// start starts one instance and hands it to waiters.
func (p *pool) start() {
	defer p.e.wg.Done()
	p.mu.Lock()
	fn := p.fn
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(p.e.ctx, p.e.cfg.StartTimeout)
	inst, err := p.e.startInstance(ctx, p, fn)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.As(err, new(*initFailure)) {
		err = fmt.Errorf("the node could not start an instance of %s within %s: %w", fn.Name, p.e.cfg.StartTimeout, err)
	}
	cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting--
	if err != nil {
		p.e.releaseSlot(p.memoryMB, false)
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
	p.e.wg.Go(func() { p.watch(inst) })
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
	keep := p.starting*p.perInstance + p.held // held ones wait for busy instances
	var f *initFailure
	if errors.As(err, &f) {
		keep = 0
	}
	for p.waiters.Len() > keep {
		w := p.waiters.Back().Value.(*waiter)
		p.dequeueLocked(w)
		w.ch <- acquired{err: err}
	}
}

// handOffLocked gives inst's free slots to waiters, oldest first, within
// the limits, and records the rest as free; an idle instance that a
// draining pool or a lowered limit no longer needs stops, and one that
// another pool could use is offered to makeRoom.
func (p *pool) handOffLocked(inst *instance) {
	for inst.inflight < p.perInstance && p.waiters.Len() > 0 && p.takeSlotLocked(inst) {
		w := p.waiters.Front().Value.(*waiter)
		p.dequeueLocked(w)
		w.ch <- acquired{inst: inst}
	}
	if inst.inflight == 0 && (p.draining || p.surplusLocked()) {
		p.retireLocked(inst)
		return
	}
	if !p.draining && inst.inflight < p.perInstance && !inst.inFree {
		inst.inFree = true
		p.free = append(p.free, inst)
	}
	if inst.inflight == 0 {
		p.idleLocked(inst)
		if p.e.hungry.Load() {
			p.e.kick()
		}
	}
}

// release returns a slot of inst, which served a request for took (0: not
// measured); a broken instance is stopped. A slot freed here may let a
// waiter onto another instance, or start one, here or in another pool of
// the function.
func (p *pool) release(inst *instance, broken bool, took time.Duration) {
	p.mu.Lock()
	if !broken {
		p.noteBusyLocked(took)
	}
	freed := p.releaseLocked(inst, broken)
	p.mu.Unlock()
	if freed {
		p.res.wake()
	}
}

// releaseLocked is release under p.mu; it reports whether room was freed
// in the function's reservation (see wake).
func (p *pool) releaseLocked(inst *instance, broken bool) (freed bool) {
	inst.inflight--
	if inst.inflight == 0 {
		p.busy--
		freed = p.syncReservationLocked()
	}
	inst.lastUsed = p.e.cfg.Now()
	_, member := p.all[inst]
	switch {
	case !member || inst.retiring: // died or stopping meanwhile
	case broken:
		inst.broken = true
		p.retireLocked(inst)
	default:
		p.handOffLocked(inst)
	}
	p.serveWaitersLocked()
	return freed
}

// retireLocked stops inst; watch removes it once it has exited.
func (p *pool) retireLocked(inst *instance) {
	if inst.retiring {
		return
	}
	p.removeFreeLocked(inst)
	inst.retiring = true
	p.retiring++
	if inst.frozen { // its preStop hook must run
		inst.frozen = false
		if err := inst.fz.Thaw(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			p.e.log.Warn("thaw instance", nimbus.LogFunction, p.name, nimbus.LogInstance, inst.id, nimbus.LogErr, err)
		}
	}
	inst.stop(inst.broken)
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

// watch waits for inst to exit, ends its requests in flight, forgets it and
// restores the warm minimum.
func (p *pool) watch(inst *instance) {
	<-inst.sb.Done()
	inst.cancel()
	inst.close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.all[inst]; !ok {
		return
	}
	delete(p.all, inst)
	if inst.retiring {
		p.retiring--
	}
	p.removeFreeLocked(inst)
	p.e.releaseSlot(p.memoryMB, inst.evicted)
	if !inst.retiring {
		p.e.log.Warn("instance exited", nimbus.LogFunction, p.name, nimbus.LogInstance, inst.id, nimbus.LogErr, inst.sb.Err())
	}
	p.ensureMinLocked()
	p.scaleLocked()
}

// reap stops instances idle past the timeout beyond the warm minimum, and
// reports whether a draining pool is now empty (requests still waiting in
// it will have instances).
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
	return p.draining && len(p.all) == 0 && p.starting == 0 && p.waiters.Len() == 0
}

// drain retires the pool: idle instances stop now, busy ones once they
// have served the requests already queued here. New requests go to the
// function's new pool.
func (p *pool) drain() {
	p.mu.Lock()
	p.draining = true
	for inst := range p.all {
		if inst.inflight == 0 {
			p.retireLocked(inst)
		}
	}
	freed := p.syncReservationLocked() // its provisioned minimum no longer counts
	p.mu.Unlock()
	if freed {
		p.res.wake()
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
