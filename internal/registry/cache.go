package registry

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// fnCache keeps decoded functions in memory so that an invoke does not read
// the store. It is fed by a watch on the functions bucket (so writes made
// on other nodes arrive within milliseconds), by reads that missed, and by
// this node's own writes. Revisions order everything: an entry never
// replaces a newer one, and after a local write nothing older than it is
// taken, so a node always reads its own writes.
type fnCache struct {
	mu      sync.Mutex
	entries map[string]cached
	floor   map[string]uint64 // ignore anything older than this per key
	live    bool              // the watch is running; otherwise never hit
	// epoch changes whenever the watch starts or stops: a read that began
	// in another epoch may have missed a change, so it is not cached.
	epoch uint64
}

type cached struct {
	fn      *nimbus.Function // nil: deleted
	rev     uint64
	deleted bool
}

func newFnCache() *fnCache {
	return &fnCache{entries: make(map[string]cached), floor: make(map[string]uint64)}
}

// get returns a cached function; found reports a hit (a hit may be a
// deletion: fn nil). On a miss, epoch is what fill needs.
func (c *fnCache) get(name string) (fn *nimbus.Function, found bool, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return nil, false, c.epoch
	}
	e, ok := c.entries[name]
	return e.fn, ok, c.epoch
}

// fill caches what a read that missed found, if the watch ran throughout.
func (c *fnCache) fill(name string, fn *nimbus.Function, rev, epoch uint64) {
	c.mu.Lock()
	ok := c.live && c.epoch == epoch
	c.mu.Unlock()
	if ok {
		c.apply(name, fn, rev)
	}
}

// apply records what revision rev of name holds (fn nil: deleted), unless
// something newer is known.
func (c *fnCache) apply(name string, fn *nimbus.Function, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev < c.floor[name] {
		return
	}
	if e, ok := c.entries[name]; ok && e.rev >= rev {
		return
	}
	c.entries[name] = cached{fn: fn, rev: rev, deleted: fn == nil}
}

// wrote records a local write at rev: nothing older is taken from now on.
func (c *fnCache) wrote(name string, fn *nimbus.Function, rev uint64) {
	c.mu.Lock()
	c.floor[name] = max(c.floor[name], rev)
	c.mu.Unlock()
	c.apply(name, fn, rev)
}

// deletedLocally forgets name after a local delete, whose revision the store
// does not report: anything up to the last known revision is ignored, and
// the watch's deletion marker (newer) settles it.
func (c *fnCache) deletedLocally(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := c.floor[name]
	if e, ok := c.entries[name]; ok {
		last = max(last, e.rev)
	}
	c.floor[name] = last + 1
	delete(c.entries, name)
}

func (c *fnCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	c.epoch++
	clear(c.entries)
}

// watchRetry is how long the registry waits before watching again after the
// watch failed (e.g. a remote NATS restarted).
const watchRetry = time.Second

// watch feeds the cache from the store until ctx ends, and tells listeners
// about changes (including other nodes' writes). While the watch is down
// the cache is bypassed.
func (r *Registry) watch(ctx context.Context) {
	for ctx.Err() == nil {
		ch, err := r.cfg.KV.Watch(ctx)
		if err != nil {
			r.log.Warn("watch functions", nimbus.LogErr, err)
		} else {
			r.cache.setLive(true)
			r.consume(ch)
			r.cache.setLive(false)
		}
		select {
		case <-ctx.Done():
		case <-time.After(watchRetry):
		}
	}
}

func (r *Registry) consume(ch <-chan store.Entry) {
	for e := range ch {
		if e.Deleted {
			r.cache.apply(e.Key, nil, e.Revision)
			r.changed(e.Key)
			continue
		}
		var fn nimbus.Function
		if err := json.Unmarshal(e.Value, &fn); err != nil {
			r.log.Warn("decode watched function", nimbus.LogFunction, e.Key, nimbus.LogErr, err)
			continue
		}
		r.cache.apply(e.Key, &fn, e.Revision)
		r.changed(e.Key)
	}
}
