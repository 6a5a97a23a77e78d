package registry

import (
	"sync"

	"github.com/google/btree"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
)

// fnCache keeps every function decoded in memory, so that an invoke does
// not read the store and a listing costs its page, not the total. It is
// filled by a load of the whole bucket when the watch starts, then fed by
// the watch (so writes made on other nodes arrive within milliseconds), by
// reads that missed and by this node's own writes. Revisions order
// everything: an entry never replaces a newer one, and after a local write
// nothing older than it is taken, so a node always reads its own writes.
//
// An epoch is one run of the watch. While the watch is down (live false)
// the cache is bypassed; when it starts again, a new load confirms or
// replaces each entry, and the entries it did not confirm are dropped as
// deleted meanwhile. Until that load ends (loaded false) only the entries
// confirmed in the current epoch are served, and the index (names, code)
// is not used.
type fnCache struct {
	mu      sync.Mutex
	entries map[string]cached
	floor   map[string]uint64 // ignore anything older than this per key
	// names indexes the functions that exist (entries with fn set), in
	// name order; code counts the functions using each code digest, and
	// layers those ($LATEST) using each layer version (by its key).
	names  *btree.BTreeG[string]
	code   map[string]int
	layers map[string]int
	live   bool
	loaded bool
	epoch  uint64
}

type cached struct {
	fn    *nimbus.Function // nil: deleted
	rev   uint64
	epoch uint64 // when it was last written or confirmed
}

// btreeDegree suits short string keys (google/btree's suggestion for
// small items is a low double-digit degree).
const btreeDegree = 32

func newFnCache() *fnCache {
	return &fnCache{
		entries: make(map[string]cached), floor: make(map[string]uint64),
		names: btree.NewOrderedG[string](btreeDegree), code: make(map[string]int), layers: make(map[string]int),
	}
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
	if !ok || (!c.loaded && e.epoch != c.epoch) {
		return nil, false, c.epoch
	}
	return e.fn, true, c.epoch
}

// fill caches what a read that missed found, if the watch ran throughout.
// It reports whether that changed an entry while a load is under way: the
// load then finds the entry as the read left it, unchanged, so the caller
// tells the listeners instead.
func (c *fnCache) fill(name string, fn *nimbus.Function, rev, epoch uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live && c.epoch == epoch {
		return c.applyLocked(name, fn, rev) && !c.loaded
	}
	return false
}

// apply records what revision rev of name holds (fn nil: deleted), unless
// something newer is known.
func (c *fnCache) apply(name string, fn *nimbus.Function, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyLocked(name, fn, rev)
}

// applyLocked is apply; it reports whether the entry changed.
func (c *fnCache) applyLocked(name string, fn *nimbus.Function, rev uint64) bool {
	if rev < c.floor[name] {
		return false
	}
	e, ok := c.entries[name]
	if ok && e.rev >= rev {
		if e.rev == rev {
			e.epoch = c.epoch // still current
			c.entries[name] = e
		}
		return false
	}
	c.unindex(name, e.fn)
	c.entries[name] = cached{fn: fn, rev: rev, epoch: c.epoch}
	c.index(name, fn)
	return true
}

func (c *fnCache) index(name string, fn *nimbus.Function) {
	if fn == nil {
		return
	}
	c.names.ReplaceOrInsert(name)
	for _, d := range codeOf(fn) { // a published version keeps its code
		c.code[d]++
	}
	for _, k := range layerKeys(fn.Layers) {
		c.layers[k]++
	}
}

func (c *fnCache) unindex(name string, fn *nimbus.Function) {
	if fn == nil {
		return
	}
	c.names.Delete(name)
	for _, d := range codeOf(fn) {
		uncount(c.code, d)
	}
	for _, k := range layerKeys(fn.Layers) {
		uncount(c.layers, k)
	}
}

// uncount takes one from the count of k in m.
func uncount(m map[string]int, k string) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

// codeOf is the code digests fn uses: its own and its versions', and
// the key of its merged layers (codepkg.LayersKey).
func codeOf(fn *nimbus.Function) []string {
	out := []string{fn.CodeSHA256}
	for _, v := range fn.Versions {
		out = append(out, v.CodeSHA256)
	}
	if len(fn.Layers) > 0 { // the merged directory of its layers
		out = append(out, codepkg.LayersKey(fn.Layers))
	}
	return out
}

// wrote records a local write at rev: nothing older is taken from now on.
func (c *fnCache) wrote(name string, fn *nimbus.Function, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.floor[name] = max(c.floor[name], rev)
	c.applyLocked(name, fn, rev)
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
		c.unindex(name, e.fn)
		delete(c.entries, name)
	}
	c.floor[name] = last + 1
}

// setLive starts (true) or ends an epoch of the watch and returns the new
// epoch. Entries are kept: the next load confirms or drops them.
func (c *fnCache) setLive(live bool) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live, c.loaded = live, false
	c.epoch++
	return c.epoch
}

// loadedAt ends the load of epoch: the entries that neither it nor the
// watch confirmed are gone from the store, and are dropped. It returns
// their names, or ok false when the epoch is over.
func (c *fnCache) loadedAt(epoch uint64) (gone []string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || c.epoch != epoch {
		return nil, false
	}
	for name, e := range c.entries {
		if e.epoch == epoch {
			continue
		}
		c.unindex(name, e.fn)
		if e.fn != nil {
			gone = append(gone, name)
		}
		c.entries[name] = cached{rev: e.rev, epoch: epoch}
	}
	c.loaded = true
	return gone, true
}

// applyAt is apply for a load of epoch: nothing is taken once it is over.
// It reports whether the entry changed.
func (c *fnCache) applyAt(epoch uint64, name string, fn *nimbus.Function, rev uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live && c.epoch == epoch && c.applyLocked(name, fn, rev)
}

// complete reports whether the index holds every function.
func (c *fnCache) complete() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live && c.loaded
}

// page returns up to limit functions whose names sort after after, in name
// order, and whether more follow; ok is false when the index is not
// complete.
func (c *fnCache) page(after string, limit int) (fns []*nimbus.Function, more, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || !c.loaded {
		return nil, false, false
	}
	fns = make([]*nimbus.Function, 0, min(limit, c.names.Len()))
	c.names.AscendGreaterOrEqual(after, func(name string) bool {
		if name == after {
			return true
		}
		if len(fns) == limit {
			more = true
			return false
		}
		fns = append(fns, c.entries[name].fn)
		return true
	})
	return fns, more, true
}

// codeInUse returns the code digests some function uses; ok is false when
// the index is not complete.
func (c *fnCache) codeInUse() (inUse map[string]bool, ok bool) {
	return c.inUse(c.code)
}

// layersInUse returns the keys of the layer versions some function
// ($LATEST) uses; ok is false when the index is not complete.
func (c *fnCache) layersInUse() (inUse map[string]bool, ok bool) {
	return c.inUse(c.layers)
}

// inUse returns the keys of index, one of c's counts.
func (c *fnCache) inUse(index map[string]int) (inUse map[string]bool, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || !c.loaded {
		return nil, false
	}
	inUse = make(map[string]bool, len(index))
	for k := range index {
		inUse[k] = true
	}
	return inUse, true
}

// usesCode reports whether some function uses digest; ok is false when
// the index is not complete.
func (c *fnCache) usesCode(digest string) (used, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || !c.loaded {
		return false, false
	}
	return c.code[digest] > 0, true
}
