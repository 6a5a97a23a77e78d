package engine

import (
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Making room on a full node. A pool whose waiting requests need instances
// that the node has no slot for (MaxInstances) or no memory for
// (MaxMemoryMB: the sum of the instances' memory limits) is starved: it notes itself
// in Engine.starved, with what it lacks in pool.short, and kicks makeRoom.
// makeRoom, a goroutine of its own, lets the starved pools take the slots
// that are free and evicts, for what they still lack, the least recently
// used idle instances of other pools node-wide, one per missing instance.
// An eviction frees the evicted instance's memory, which may be less than
// the starved pool's instances need: makeRoom then evicts again once it
// has exited, until the instance fits or nothing idle is left.
// It runs again when an instance exits and frees its slot (releaseSlot) and
// when an instance goes idle while pools are starved.
//
// Provisioned instances are never evicted, as Lambda never takes back
// provisioned concurrency: a pool keeps at least minWarm instances. With
// nothing idle to evict, requests wait as before, and get 429 after the
// queue timeout unless room appears first.
//
// Lock order: a pool's mu before Engine.mu, and never two pools' at once.
// A starved pool notes itself holding its own mu (then Engine.mu);
// makeRoom holds no lock when it takes one pool's mu at a time, so no pool
// waits for another's lock.

// reserveSlots takes up to want slots for instances that p starts (the
// caller holds p.mu), as reserveSlot does, and notes what p lacks: p is
// starved while it lacks slots. A pool that lacks more than before kicks
// makeRoom.
func (e *Engine) reserveSlots(p *pool, want int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	got := e.takeSlotsLocked(want, p.memoryMB)
	short := want - got
	if e.closed {
		short = 0
	}
	if short > p.short {
		e.kickLocked()
	}
	p.short = short
	if short > 0 {
		e.starved[p] = struct{}{}
	} else {
		delete(e.starved, p)
	}
	e.hungry.Store(len(e.starved) > 0)
	return got
}

// kick runs makeRoom if pools are starved.
func (e *Engine) kick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.starved) > 0 {
		e.kickLocked()
	}
}

// kickLocked starts makeRoom, or tells the running one to look again.
func (e *Engine) kickLocked() {
	e.rekick = true
	if e.rebalancing || e.closed {
		return
	}
	e.rebalancing = true
	e.wg.Go(e.makeRoom)
}

// makeRoom gives the starved pools the free slots and evicts idle
// instances of other pools for what they still lack, until nothing changes.
func (e *Engine) makeRoom() {
	for {
		starved := e.roomRound()
		if starved == nil {
			return
		}
		short := 0
		for p := range starved {
			short += p.rescale()
		}
		e.mu.Lock()
		short -= e.evicting // their slots are coming
		e.mu.Unlock()
		if short > 0 && e.evictLRU(starved) {
			e.kick() // look again: one eviction per round
		}
	}
}

// roomRound returns the starved pools if makeRoom is to look (again), or
// nil when it ends.
func (e *Engine) roomRound() map[*pool]bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || len(e.starved) == 0 || !e.rekick {
		e.rebalancing = false
		return nil
	}
	e.rekick = false
	starved := make(map[*pool]bool, len(e.starved))
	for p := range e.starved {
		starved[p] = true
	}
	return starved
}

// evictLRU evicts the least recently used idle instance of the pools other
// than skip, keeping each pool's provisioned minimum, and reports whether
// it found one (which a request may have taken meanwhile).
func (e *Engine) evictLRU(skip map[*pool]bool) bool {
	var (
		victim *instance
		owner  *pool
		at     time.Time
	)
	for _, p := range e.allPools() {
		if skip[p] {
			continue
		}
		p.mu.Lock()
		if inst := p.evictableLocked(); inst != nil && (victim == nil || inst.lastUsed.Before(at)) {
			victim, owner, at = inst, p, inst.lastUsed
		}
		p.mu.Unlock()
	}
	if victim == nil {
		return false
	}
	owner.evict(victim, at)
	return true
}

// rescale starts the instances that p's waiting requests need, now that
// the node may have room, and returns how many it still lacks.
func (p *pool) rescale() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.scaleLocked()
	return p.short
}

// evictableLocked returns p's least recently used idle instance, if p may
// lose one: never below its provisioned minimum.
func (p *pool) evictableLocked() *instance {
	if p.draining || len(p.all)-p.retiring <= p.minWarm {
		return nil
	}
	var lru *instance
	for _, inst := range p.free {
		if inst.inflight == 0 && !inst.retiring && (lru == nil || inst.lastUsed.Before(lru.lastUsed)) {
			lru = inst
		}
	}
	return lru
}

// evict stops inst to make room for another pool, unless it was used since
// at or p may no longer lose it. Its slot is freed when it has exited.
func (p *pool) evict(inst *instance, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.all[inst]; !ok || inst.inflight > 0 || inst.retiring || !inst.lastUsed.Equal(at) ||
		p.draining || len(p.all)-p.retiring <= p.minWarm {
		return
	}
	inst.evicted = true
	p.e.mu.Lock()
	p.e.evicting++
	p.e.mu.Unlock()
	p.retireLocked(inst)
	p.e.log.Debug("instance evicted to make room", nimbus.LogFunction, p.name, nimbus.LogInstance, inst.id)
}
