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
// when it is ready for it. p.mu must be held.
func (p *pool) idleLocked(inst *instance) {
	if inst.fz == nil || inst.retiring {
		return
	}
	gen := inst.idleGen
	p.e.wg.Go(func() { p.freezeIdle(inst, gen) })
}

// freezeIdle freezes inst if it is still in the idle period gen once its
// runtime polls for the next invocation and Config.FreezeAfter has passed.
func (p *pool) freezeIdle(inst *instance, gen uint64) {
	if inst.rapi != nil {
		t := time.NewTimer(freezeGrace)
		select {
		case <-inst.rapi.Polling():
		case <-t.C:
		case <-inst.ctx.Done():
		}
		t.Stop()
	}
	if d := p.e.cfg.FreezeAfter; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-inst.ctx.Done():
		}
		t.Stop()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if inst.idleGen != gen || inst.inflight > 0 || inst.retiring || inst.frozen || inst.ctx.Err() != nil {
		return
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
	inst.idleGen++
	if !inst.frozen {
		return
	}
	inst.frozen = false
	if err := inst.fz.Thaw(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		// The request will fail as the instance does; say why.
		p.e.log.Warn("thaw instance", nimbus.LogFunction, p.name, nimbus.LogInstance, inst.id, nimbus.LogErr, err)
	}
}
