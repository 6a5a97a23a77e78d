package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/nimbus-serverless/nimbus"
)

// What the cluster (internal/cluster) needs of the engine: which function
// versions have free warm instances here (advertised in the node's
// heartbeat), and, on a node a peer forwards an invocation to, an
// instance held for it before anything runs.

// ErrNotWarm says a function version has no free warm instance on this node
// (or this node runs another version of it): nothing ran.
var ErrNotWarm = errors.New("no free warm instance of this function version")

// PoolID is the key of fn's pools: the name for $LATEST, name:version for a
// published version.
func PoolID(fn *nimbus.Function) string { return poolID(fn) }

// WarmKey is the name under which a node advertises fn's warm instances:
// its pool and the hash of its version (versionKey), so that two nodes
// agree on it only when they run the same code and configuration.
func (e *Engine) WarmKey(fn *nimbus.Function) (string, error) {
	p, err := e.pool(fn)
	if err != nil {
		return "", err
	}
	return p.id + "@" + p.key, nil
}

// Free reports whether fn's current pool has an instance with a free
// request slot now (a hint: it may be taken the next moment), and the
// pool's WarmKey.
func (e *Engine) Free(fn *nimbus.Function) (key string, free bool, err error) {
	p, err := e.pool(fn)
	if err != nil {
		return "", false, err
	}
	p.mu.Lock()
	free = len(p.free) > 0 && p.busy < p.maxInst
	p.mu.Unlock()
	return p.id + "@" + p.key, free, nil
}

// WarmInstances returns, per WarmKey, how many running instances (idle or
// busy; not starting or stopping) the current pools have; pools with none
// are left out. A busy instance counts: it is free again a moment later,
// and a forward that finds it busy is given back (Hold).
func (e *Engine) WarmInstances() map[string]int {
	pools := e.currentPools()
	var out map[string]int
	for _, p := range pools {
		p.mu.Lock()
		n := 0
		if !p.draining && p.maxInst > 0 {
			n = len(p.all) - p.retiring
		}
		p.mu.Unlock()
		if n > 0 {
			if out == nil {
				out = make(map[string]int)
			}
			out[p.id+"@"+p.key] = n
		}
	}
	return out
}

// Held is a free warm instance taken for one invocation that has not run
// yet: Invoke with a context from WithHeld runs on it. Release gives it back
// if it was not used.
type Held struct {
	e    *Engine
	p    *pool
	inst *instance
	used atomic.Bool
	once sync.Once
}

type heldKey struct{}

// Hold takes a free warm instance of fn's version whose WarmKey is key, or
// fails at once with ErrNotWarm: it never starts an instance nor waits.
func (e *Engine) Hold(fn *nimbus.Function, key string) (*Held, error) {
	p, err := e.pool(fn)
	if err != nil {
		return nil, err
	}
	if p.id+"@"+p.key != key {
		return nil, ErrNotWarm
	}
	p.mu.Lock()
	if fn != p.fn {
		p.setLimitsLocked(fn)
	}
	var inst *instance
	if p.maxInst > 0 && !p.draining {
		inst = p.takeFreeLocked(true)
	}
	p.mu.Unlock()
	if inst == nil {
		return nil, ErrNotWarm
	}
	e.holds.Add(1)
	return &Held{e: e, p: p, inst: inst}, nil
}

// WithHeld returns ctx carrying h: Engine.Invoke of h's version with it runs
// on h's instance.
func WithHeld(ctx context.Context, h *Held) context.Context {
	return context.WithValue(ctx, heldKey{}, h)
}

// Used reports whether an invocation ran (or is running) on h's instance.
func (h *Held) Used() bool { return h.used.Load() }

// Release gives h's instance back if no invocation used it; call it once
// the invocation returned.
func (h *Held) Release() {
	h.once.Do(func() {
		if h.used.CompareAndSwap(false, true) {
			h.p.release(h.inst, false, 0)
		}
		h.e.holds.Add(-1)
	})
}

// takeHeld returns the instance held for this invocation in ctx, if any
// (only looked up while some instance is held: no cost otherwise).
func (e *Engine) takeHeld(ctx context.Context, p *pool) *instance {
	if e.holds.Load() == 0 {
		return nil
	}
	h, _ := ctx.Value(heldKey{}).(*Held)
	if h == nil || h.p != p || !h.used.CompareAndSwap(false, true) {
		return nil
	}
	return h.inst
}

// ReservedUse returns, per function with a reserved concurrency, what this
// node uses of it now (busy instances, and provisioned ones, as the
// reservation counts them); functions using none are left out. The
// cluster's heartbeat carries it to the other nodes.
func (e *Engine) ReservedUse() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out map[string]int
	for name, r := range e.reservations {
		r.mu.Lock()
		if r.limit >= 0 && r.used > 0 {
			if out == nil {
				out = make(map[string]int)
			}
			out[name] = r.used
		}
		r.mu.Unlock()
	}
	return out
}

// SetRemoteUse tells the engine what the other nodes use of each
// function's reserved concurrency (absent: nothing): this node admits only
// the rest. Room it frees goes to the requests waiting for it.
func (e *Engine) SetRemoteUse(use map[string]int) {
	var freed []*reservation
	e.mu.Lock()
	for name := range use {
		e.reservationLocked(name) // a pool made later starts with the figure
	}
	for name, r := range e.reservations {
		n := use[name]
		r.mu.Lock()
		if n < r.remote && len(r.blocked) > 0 {
			freed = append(freed, r)
		}
		r.remote = n
		r.mu.Unlock()
	}
	e.mu.Unlock()
	for _, r := range freed {
		r.wake()
	}
}

// ProvisionShare is the part of a pool's provisioned concurrency (total)
// that this node keeps warm: a cluster spreads it across its live nodes
// (cluster.Share). Without one, the node keeps all of it.
type ProvisionShare func(pool string, total int) int

// SetProvisionShare sets how much of each pool's provisioned concurrency
// this node keeps, and applies it at once: pools start instances up to
// their new share, and instances above a lowered share stop being kept
// (idle, they are reaped like any other).
func (e *Engine) SetProvisionShare(f ProvisionShare) {
	e.share.Store(&f)
	for _, p := range e.currentPools() {
		p.recap()
		p.mu.Lock()
		p.ensureMinLocked()
		p.mu.Unlock()
	}
}

// shareOf is this node's part of a pool's provisioned concurrency.
func (e *Engine) shareOf(pool string, total int) int {
	if f := e.share.Load(); f != nil && *f != nil && total > 0 {
		return (*f)(pool, total)
	}
	return total
}

// currentPools returns the pools of the functions' current versions (not
// those draining).
func (e *Engine) currentPools() []*pool {
	e.mu.Lock()
	defer e.mu.Unlock()
	pools := make([]*pool, 0, len(e.pools))
	for _, p := range e.pools {
		pools = append(pools, p)
	}
	return pools
}
