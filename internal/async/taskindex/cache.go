package taskindex

import (
	"fmt"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/nimbus-serverless/nimbus"
)

// key names a task.
type key struct{ fn, id string }

// cache keeps recently written or read records. Its invariant: an entry is
// the database's latest committed record of its task. Writers (which the
// Index serializes) store what they committed, after the commit, and remove
// what they deleted; a reader that missed fills the entry from the database
// only if no write committed since it looked (gen), as its read may predate
// that write.
type cache struct {
	mu  sync.Mutex
	gen uint64 // counts the writes that changed the cache
	lru *simplelru.LRU[key, nimbus.Task]
}

func newCache(size int) (*cache, error) {
	lru, err := simplelru.NewLRU[key, nimbus.Task](size, nil)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &cache{lru: lru}, nil
}

// get returns a cached record and, when there is none, the generation to
// pass to fill after reading the database.
func (c *cache) get(k key) (t nimbus.Task, ok bool, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok = c.lru.Get(k)
	return t, ok, c.gen
}

// peek returns a cached record without making it recently used.
func (c *cache) peek(k key) (nimbus.Task, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Peek(k)
}

// fill caches a record read from the database when no write committed since
// generation gen and the task is not cached already.
func (c *cache) fill(k key, t nimbus.Task, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen && !c.lru.Contains(k) {
		c.lru.Add(k, t)
	}
}

// store caches records just committed, in order (a later one of a task
// replaces an earlier one).
func (c *cache) store(recs []*nimbus.Task) {
	if len(recs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, t := range recs {
		c.lru.Add(key{t.Function, t.ID}, *t)
	}
}

// remove forgets tasks just deleted.
func (c *cache) remove(keys []key) {
	if len(keys) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, k := range keys {
		c.lru.Remove(k)
	}
}

// purge forgets every task.
func (c *cache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.lru.Purge()
}
