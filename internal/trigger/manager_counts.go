package trigger

import (
	"context"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// How the Manager keeps counts that survive restarts.
//
// A trigger's Sink counts into its run's Status, in memory only, so that
// delivery never waits on the store. Every FlushEvery (and when the Manager
// closes) the Manager takes those counts and adds them to the trigger's key
// in the CountStore; what could not be added (the store is down) is kept
// and added on a later flush. A reader sees the stored total (read at most
// countsCacheTTL ago) plus what this node has not added yet, so its own
// deliveries show at once and other nodes' within a flush and a cache
// period. A node killed without closing loses at most the counts of its
// last FlushEvery.

// DefaultFlushEvery is how often a Manager adds its counts to the store.
const DefaultFlushEvery = 2 * time.Second

// countsCacheTTL is how long stored counts are shown before they are read
// again.
const countsCacheTTL = time.Second

// countsTimeout bounds each read or write of the counts in the store.
const countsTimeout = 2 * time.Second

// countState is what this node knows of one trigger's stored counts.
type countState struct {
	stored Counts // as last read or written
	rev    uint64 // stored's revision
	readAt time.Time
	// unflushed is taken from the run but not yet in the store (including
	// what a flush in progress is adding).
	unflushed Counts
	flushing  bool
	// gen changes when a flush of the key begins, so that a read that may
	// or may not include it is not kept.
	gen uint64
}

// countStateLocked returns key's state, made if needed; m.cmu must be held.
func (m *Manager) countStateLocked(key string) *countState {
	st := m.counts[key]
	if st == nil {
		st = &countState{}
		m.counts[key] = st
	}
	return st
}

// flushLoop flushes every FlushEvery until the Manager closes.
func (m *Manager) flushLoop() {
	t := time.NewTicker(m.cfg.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.FlushEvery+countsTimeout)
			m.flush(ctx)
			cancel()
		}
	}
}

// flush adds the counts of every trigger since the last flush to the store.
// What fails stays in memory for the next flush.
func (m *Manager) flush(ctx context.Context) {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	type pending struct {
		key string
		d   Counts
	}
	m.mu.Lock()
	live := make(map[string]*Status, len(m.runs))
	for k, r := range m.runs {
		live[CountsKey(k.function, &r.trigger)] = r.counts
	}
	m.mu.Unlock()
	var todo []pending
	m.cmu.Lock()
	for key, s := range live {
		st := m.countStateLocked(key)
		st.unflushed = st.unflushed.Add(s.take())
		if !st.unflushed.IsZero() {
			st.flushing = true
			st.gen++
			todo = append(todo, pending{key, st.unflushed})
		}
	}
	m.cmu.Unlock()
	failed := 0
	for _, p := range todo {
		wctx, cancel := context.WithTimeout(ctx, countsTimeout)
		total, rev, err := m.cfg.Counts.Add(wctx, p.key, p.d)
		cancel()
		m.cmu.Lock()
		st := m.countStateLocked(p.key)
		st.flushing = false
		if err == nil {
			st.unflushed = Counts{}
			if rev >= st.rev {
				st.stored, st.rev, st.readAt = total, rev, m.cfg.Now()
			}
		}
		m.cmu.Unlock()
		if err != nil {
			failed++
			if failed == 1 && !m.flushFailing {
				m.log.Warn("trigger: counts not saved to the store; kept in memory and retried", nimbus.LogErr, err)
			}
		}
	}
	if failed == 0 && m.flushFailing {
		m.log.Info("trigger: counts saved to the store again")
	}
	m.flushFailing = failed > 0
}

// countsOf returns the counts of a trigger: the stored total plus what this
// node counted and has not added yet. live is the run's Status, if any.
func (m *Manager) countsOf(function string, t *nimbus.Trigger, live *Status) Counts {
	if m.cfg.Counts == nil {
		if live == nil {
			return Counts{}
		}
		return live.Counts()
	}
	key := CountsKey(function, t)
	m.cmu.Lock()
	st := m.countStateLocked(key)
	stale := m.cfg.Now().Sub(st.readAt) >= countsCacheTTL && !st.flushing
	gen := st.gen
	m.cmu.Unlock()
	if stale {
		ctx, cancel := context.WithTimeout(m.ctx, countsTimeout)
		c, rev, err := m.cfg.Counts.Read(ctx, key)
		cancel()
		m.cmu.Lock()
		st = m.countStateLocked(key)
		st.readAt = m.cfg.Now() // a failing store is not asked again at once
		if err == nil && st.gen == gen && !st.flushing && rev >= st.rev {
			st.stored, st.rev = c, rev
		}
		m.cmu.Unlock()
		if err != nil {
			m.log.Debug("trigger: read counts", nimbus.LogFunction, function, nimbus.LogTrigger, t.Name, nimbus.LogErr, err)
		}
	}
	m.cmu.Lock()
	defer m.cmu.Unlock()
	st = m.countStateLocked(key)
	c := st.stored.Add(st.unflushed)
	if live != nil {
		c = c.Add(live.Counts()) // under cmu: flush takes from it under cmu too
	}
	return c
}

// forgetCounts deletes a deleted trigger's counts, once its run has stopped
// counting; every node does, so a flush another node made meanwhile goes
// too.
func (m *Manager) forgetCounts(ctx context.Context, function string, t *nimbus.Trigger) {
	if m.cfg.Counts == nil {
		return
	}
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	key := CountsKey(function, t)
	m.cmu.Lock()
	delete(m.counts, key)
	m.cmu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, countsTimeout)
	defer cancel()
	if err := m.cfg.Counts.Delete(ctx, key); err != nil {
		m.log.Warn("trigger: deleted, but its counts could not be removed from the store",
			nimbus.LogFunction, function, nimbus.LogTrigger, t.Name, nimbus.LogErr, err)
	}
}
