package engine

// PoolStats are one pool's figures at a moment, for metrics read at scrape
// time (internal/metrics). A function being updated has two pools for a
// while: its current one and the draining one of its older version.
type PoolStats struct {
	Function string
	Draining bool
	// Busy instances have a request in flight; Idle ones none (Frozen of
	// them are frozen); Starting ones are being started.
	Busy, Idle, Frozen, Starting int
	// Waiting is the requests queued for an instance; InFlight those
	// running (more than Busy when an HTTP function takes several
	// requests per instance).
	Waiting, InFlight int
}

// NodeStats are the node-wide figures of the engine.
type NodeStats struct {
	// Instances counts the node's instance slots in use (starting
	// instances included), MemoryMB their memory limits summed.
	Instances, MemoryMB int
	// MaxInstances and MaxMemoryMB are the node's caps (0: no memory cap).
	MaxInstances, MaxMemoryMB int
}

// Snapshot returns the figures of every pool, current and draining (an
// emptied draining pool, which the reaper has yet to forget, is left out),
// taking each pool's lock briefly in turn; no pool is locked while another
// is.
func (e *Engine) Snapshot() []PoolStats {
	pools := e.allPools()
	out := make([]PoolStats, 0, len(pools))
	for _, p := range pools {
		if s := p.stats(); !s.Draining || s != (PoolStats{Function: s.Function, Draining: true}) {
			out = append(out, s)
		}
	}
	return out
}

func (p *pool) stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PoolStats{Function: p.name, Draining: p.draining, Starting: p.starting, Waiting: p.waiters.Len()}
	for inst := range p.all {
		switch {
		case inst.inflight > 0:
			s.Busy++
			s.InFlight += inst.inflight
		case inst.retiring: // stopping: neither busy nor available
		default:
			s.Idle++
			if inst.frozen {
				s.Frozen++
			}
		}
	}
	return s
}

// Node returns the node-wide figures.
func (e *Engine) Node() NodeStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return NodeStats{Instances: e.instances, MemoryMB: e.memoryMB, MaxInstances: e.cfg.MaxInstances, MaxMemoryMB: e.cfg.MaxMemoryMB}
}

// InstanceInfo is one running instance of a function, as ListInstances
// shows it.
type InstanceInfo struct {
	ID string
	// Version is the published version it runs ("" for $LATEST).
	Version string
	// Busy: a request is in flight; Frozen: idle and frozen.
	Busy, Frozen bool
}

// Instances returns the running instances of function name on this node,
// of every pool (its $LATEST and its versions, draining ones too), in no
// order; starting and stopping instances are left out.
func (e *Engine) Instances(name string) []InstanceInfo {
	var out []InstanceInfo
	for _, p := range e.allPools() {
		if p.name == name {
			out = p.instances(out)
		}
	}
	return out
}

func (p *pool) instances(out []InstanceInfo) []InstanceInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	for inst := range p.all {
		if inst.retiring {
			continue
		}
		out = append(out, InstanceInfo{ID: inst.id, Version: inst.fn.Version, Busy: inst.inflight > 0, Frozen: inst.frozen})
	}
	return out
}
