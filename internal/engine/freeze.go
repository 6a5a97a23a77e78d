package engine

import (
	"errors"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// freezeGrace bounds how long an idle instance may run before it is
// frozen when its runtime does not come back to /invocation/next.
const freezeGrace = time.Second

// An idle instance is frozen (sandbox.Freezer), as Lambda freezes an idle
// environment, so that what it left running burns no CPU: a Runtime-API
// instance once its runtime waits in /next again (or after freezeGrace),
// an HTTP instance once its last request has been answered. It is thawed
// when a request takes it. Kill works on a frozen instance, so the reaper,
// eviction and draining need nothing more.

// idleLocked notes that inst has no request in flight and has it frozen
// once it has stayed idle for Config.FreezeAfter and, for a Runtime-API
// instance, its runtime polls for the next invocation (within
// freezeGrace). One timer per instance, set again at each idle period,
// rather than a goroutine and a timer per period: an instance serving
// back-to-back requests goes idle thousands of times a second. p.mu must
// be held.
func (p *pool) idleLocked(inst *instance) {
	if inst.fz == nil || inst.retiring {
		return
	}
	inst.idleAt = time.Now()
	d := p.e.cfg.FreezeAfter
	if inst.freezeT == nil {
		inst.freezeT = time.AfterFunc(d, func() { p.freezeDue(inst) })
		return
	}
	inst.freezeT.Reset(d)
}

// freezePoll is how often freezeDue looks again for a Runtime-API
// instance's runtime to poll /next, once FreezeAfter has passed without.
const freezePoll = time.Millisecond

// freezeDue freezes inst when its timer fires, if it is still idle, has
// been for FreezeAfter, and its runtime (if it speaks the Runtime API)
// polls /next or has not within freezeGrace. A request that took it
// meanwhile set the timer again when it left.
func (p *pool) freezeDue(inst *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if inst.inflight > 0 || inst.retiring || inst.frozen || inst.ctx.Err() != nil {
		return
	}
	idle := time.Since(inst.idleAt)
	if d := p.e.cfg.FreezeAfter; idle < d {
		return // idle again since the timer fired: it fires again then
	}
	if inst.rapi != nil && idle < p.e.cfg.FreezeAfter+freezeGrace {
		select {
		case <-inst.rapi.Polling():
		default:
			inst.freezeT.Reset(freezePoll)
			return
		}
	}
	if err := inst.fz.Freeze(); err != nil {
		p.e.log.Warn("freeze idle instance", nimbus.LogFunction, p.name, nimbus.LogInstance, inst.id, nimbus.LogErr, err)
		return
	}
	inst.frozen = true
}

// busyLocked thaws inst, which a request takes after an idle period.
// p.mu must be held.
func (p *pool) busyLocked(inst *instance) {
	if !inst.frozen {
		return
	}
	inst.frozen = false
	if err := inst.fz.Thaw(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		// The request will fail as the instance does; say why.
		p.e.log.Warn("thaw instance", nimbus.LogFunction, p.name, nimbus.LogInstance, inst.id, nimbus.LogErr, err)
	}
}
