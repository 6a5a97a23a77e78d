package engine

import (
	"sync"

	"github.com/nimbus-serverless/nimbus"
)

// reservation is a function's reserved concurrency: one count shared by
// all its pools ($LATEST's, each published version's, and those
// draining), as Lambda's reservation is the function's, not a version's.
// A pool uses the larger of its busy instances and its provisioned
// minimum: provisioned concurrency is carved out of the reservation, busy
// or not, and a pool's provisioned instances can always take requests.
//
// Lock order: a pool's mu, then the reservation's; Engine.mu, then the
// reservation's.
type reservation struct {
	mu    sync.Mutex
	limit int // the reserved concurrency; -1: none
	used  int // the pools' uses (pool.resUsed), summed
	// remote is what the other nodes of the cluster use of the
	// reservation, as their last heartbeats said (cluster.go): the
	// reserved concurrency is the cluster's, not each node's.
	remote int
	// blocked are the pools with requests waiting for room in the
	// reservation; room freed in another pool is offered to them (wake).
	blocked map[*pool]struct{}
}

func newReservation() *reservation {
	return &reservation{limit: -1, blocked: make(map[*pool]struct{})}
}

// reservationLocked returns the reservation of the function name, made on
// first use. e.mu must be held.
func (e *Engine) reservationLocked(name string) *reservation {
	r := e.reservations[name]
	if r == nil {
		r = newReservation()
		e.reservations[name] = r
	}
	return r
}

// setLimit takes the function's reserved concurrency (nil: none) and
// reports whether it changed.
func (r *reservation) setLimit(reserved *int) bool {
	limit := -1
	if reserved != nil {
		limit = *reserved
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := limit != r.limit
	r.limit = limit
	return changed
}

// localLimitLocked is what this node may use of the reservation: the
// reserved concurrency less what the other nodes use. r.mu must be held
// and r.limit be set.
func (r *reservation) localLimitLocked() int { return max(r.limit-r.remote, 0) }

// capOr is the reserved concurrency, or def when there is none.
func (r *reservation) capOr(def int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.limit < 0 {
		return def
	}
	return r.limit
}

// recap applies a changed reservation to p, one of the function's
// versions' pools (Engine.Refresh).
func (p *pool) recap() {
	p.mu.Lock()
	freed := p.capLocked()
	p.applyCapLocked()
	p.mu.Unlock()
	if freed {
		p.res.wake()
	}
}

// wake offers the room in the reservation to the pools blocked on it. No
// pool lock may be held.
func (r *reservation) wake() {
	r.mu.Lock()
	blocked := r.blocked
	r.blocked = make(map[*pool]struct{})
	r.mu.Unlock()
	for p := range blocked {
		p.mu.Lock()
		p.serveWaitersLocked()
		p.mu.Unlock()
	}
}

// useLocked is what p would use of its function's reservation with busy
// instances busy.
func (p *pool) useLocked(busy int) int {
	if p.draining {
		return busy
	}
	return max(busy, p.minWarm)
}

// syncReservationLocked brings p's use of the reservation up to date after
// its busy instances, its provisioned minimum or its draining changed, and
// reports whether room was freed that blocked pools wait for (the caller
// then calls wake, without p.mu).
func (p *pool) syncReservationLocked() (freed bool) {
	u := p.useLocked(p.busy)
	r := p.res
	r.mu.Lock()
	defer r.mu.Unlock()
	r.used += u - p.resUsed
	freed = u < p.resUsed && len(r.blocked) > 0
	p.resUsed = u
	return freed
}

// roomLocked is how many more of p's instances may become busy now: within
// the pool's cap and the function's reservation.
func (p *pool) roomLocked() int {
	room := p.maxInst - p.busy
	r := p.res
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.limit >= 0 {
		room = min(room, max(r.localLimitLocked()-(r.used-p.resUsed), p.useLocked(0))-p.busy)
	}
	return room
}

// takeBusyLocked makes one more of p's instances busy if the limits allow
// it; if not, p waits for room (wake) while it has requests waiting.
func (p *pool) takeBusyLocked() bool {
	if p.busy >= p.maxInst {
		return false
	}
	u := p.useLocked(p.busy + 1)
	r := p.res
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.limit >= 0 && u > p.resUsed && r.used+u-p.resUsed > r.localLimitLocked() {
		if p.waiters.Len() > 0 {
			r.blocked[p] = struct{}{} // blockLocked, under r.mu
		}
		return false
	}
	r.used += u - p.resUsed
	p.resUsed = u
	p.busy++
	return true
}

// blockLocked has p woken when room is freed in the reservation.
func (p *pool) blockLocked() {
	p.res.mu.Lock()
	p.res.blocked[p] = struct{}{}
	p.res.mu.Unlock()
}

// throttled is the error of a request that waited in vain: the function's
// reserved concurrency was all in use, or the node had no instance for it.
func (p *pool) throttled() error {
	p.mu.Lock()
	full := p.res.capOr(-1) >= 0 && p.roomLocked() <= 0
	p.mu.Unlock()
	if full {
		return nimbus.Errorf(nimbus.ErrReservedConcurrency,
			"Rate Exceeded. Function %s's reserved concurrency is in use: no instance became free within %s.", p.name, p.e.cfg.QueueTimeout)
	}
	return nimbus.Errorf(nimbus.ErrThrottled, "Rate Exceeded. No instance of function %s became free within %s.", p.name, p.e.cfg.QueueTimeout)
}
