// Package cluster makes the nodes that share one store a cluster: each
// node writes a heartbeat into the store's nodes bucket and follows the
// others' (Membership), and a synchronous invocation that finds no free warm
// instance on the node it arrived at is forwarded, once, to a node that
// advertises one (Forwarder). docs/scaling.md describes both.
package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// Bucket is the store bucket of the heartbeats (<prefix>_nodes).
const Bucket = "nodes"

// Defaults of Config.
const (
	DefaultInterval = time.Second
	DefaultTTL      = 5 * time.Second
)

// Member is one node's heartbeat: who it is, where its API is and how busy
// it is. Warm maps the WarmKey of each function version with running
// instances on the node (engine.WarmKey) to how many (idle or busy).
type Member struct {
	ID      string    `json:"id"`
	Address string    `json:"address"` // the API's base URL, http://host:port
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Instances runs on the node (starting ones included); Busy of them
	// have a request in flight, Idle none.
	Instances int `json:"instances"`
	Busy      int `json:"busy"`
	Idle      int `json:"idle"`
	// Load is the host's load average over one minute.
	Load float64        `json:"load"`
	Warm map[string]int `json:"warm,omitempty"`
	// Reserved maps each function with a reserved concurrency to what the
	// node uses of it (engine.ReservedUse): the others admit only the rest.
	Reserved map[string]int `json:"reserved,omitempty"`
	// At is when the node wrote this heartbeat (its clock).
	At time.Time `json:"at"`
}

// Uptime is how long the member had run when it wrote its heartbeat.
func (m Member) Uptime() time.Duration { return m.At.Sub(m.Started) }

// Config wires a Membership.
type Config struct {
	// KV is the nodes bucket; its entries should expire after TTL (the
	// store's KVWithTTL) so that a dead node's heartbeat goes away.
	KV store.KV
	// Self returns this node's heartbeat (ID and Address set); At is
	// filled in.
	Self func() Member
	// Interval is how often the heartbeat is written; TTL how long a
	// member is kept without one (at least 2 intervals).
	Interval, TTL time.Duration
	Now           func() time.Time
	Logger        *slog.Logger
}

// Membership is this node's view of the live nodes.
type Membership struct {
	cfg  Config
	self string
	log  *slog.Logger

	mu      sync.Mutex
	members map[string]seen
	// warm indexes the peers' (not this node's) warm function versions
	// by pool, rebuilt on every change: the invoke path reads it without
	// a lock, and finds it empty on a single node.
	warm atomic.Pointer[warmIndex]

	cancel context.CancelFunc
	done   chan struct{}
}

// seen is a member's last heartbeat and when this node received it (its own
// clock: nodes' clocks may differ).
type seen struct {
	m    Member
	when time.Time
}

// warmIndex: pool id -> the peers with free warm instances of one of its
// versions.
type warmIndex map[string][]candidate

type candidate struct {
	key  string // the WarmKey
	id   string
	idle int
}

// Open writes this node's first heartbeat, reads the others' and keeps
// both up to date until Close.
func Open(ctx context.Context, cfg Config) (*Membership, error) {
	if cfg.KV == nil || cfg.Self == nil {
		return nil, errors.New("cluster: KV and Self are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < 2*cfg.Interval {
		return nil, errors.New("cluster: the TTL must be at least two heartbeat intervals")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Membership{cfg: cfg, log: cfg.Logger, members: make(map[string]seen), done: make(chan struct{})}
	m.warm.Store(&warmIndex{})
	first := m.beat()
	if first.ID == "" || !validKey(first.ID) {
		return nil, nimbus.Invalidf("cluster: the node id %q is not a valid key", first.ID)
	}
	m.self = first.ID
	if err := m.put(ctx, first); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	w, err := m.cfg.KV.Watch(bg) // before the read, so that nothing falls between
	if err != nil {
		cancel()
		return nil, err
	}
	if err := m.load(ctx); err != nil {
		cancel()
		return nil, err
	}
	go m.run(bg, w)
	return m, nil
}

// validKey: letters, digits and "-_=." (NATS KV keys).
func validKey(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=.", r))
	}) < 0
}

func (m *Membership) beat() Member {
	b := m.cfg.Self()
	b.At = m.cfg.Now()
	return b
}

func (m *Membership) put(ctx context.Context, b Member) error {
	v, err := json.Marshal(b)
	if err != nil {
		return err
	}
	if _, err := m.cfg.KV.Put(ctx, b.ID, v); err != nil {
		return err
	}
	m.note(b.ID, v, false)
	return nil
}

// load reads every heartbeat in the bucket.
func (m *Membership) load(ctx context.Context) error {
	keys, err := m.cfg.KV.Keys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		e, err := m.cfg.KV.Get(ctx, k)
		if errors.Is(err, nimbus.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		m.note(k, e.Value, false)
	}
	return nil
}

// note takes a heartbeat (or a member's departure) into the view.
func (m *Membership) note(key string, v []byte, deleted bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if deleted {
		if key != m.self {
			delete(m.members, key)
			m.reindexLocked()
		}
		return
	}
	var b Member
	if err := json.Unmarshal(v, &b); err != nil || b.ID != key {
		m.log.Warn("cluster: a malformed heartbeat", "key", key)
		return
	}
	m.members[key] = seen{m: b, when: m.cfg.Now()}
	if key != m.self {
		m.reindexLocked()
	}
}

// expireLocked forgets the members not heard from within the TTL.
func (m *Membership) expireLocked() {
	now := m.cfg.Now()
	gone := false
	for id, s := range m.members {
		if id != m.self && now.Sub(s.when) > m.cfg.TTL {
			delete(m.members, id)
			gone = true
		}
	}
	if gone {
		m.reindexLocked()
	}
}

func (m *Membership) reindexLocked() {
	idx := warmIndex{}
	for id, s := range m.members {
		if id == m.self {
			continue
		}
		for k, n := range s.m.Warm {
			if n <= 0 {
				continue
			}
			pool, _, _ := strings.Cut(k, "@")
			idx[pool] = append(idx[pool], candidate{key: k, id: id, idle: n})
		}
	}
	m.warm.Store(&idx)
}

// run writes the heartbeat every interval and follows the bucket.
func (m *Membership) run(ctx context.Context, w <-chan store.Entry) {
	defer close(m.done)
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	failing := false // the last write failed: log changes, not every beat
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w:
			if !ok {
				w = m.rewatch(ctx)
				continue
			}
			m.note(e.Key, e.Value, e.Deleted)
		case <-t.C:
			wctx, cancel := context.WithTimeout(ctx, m.cfg.Interval)
			err := m.put(wctx, m.beat())
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				m.log.Warn("cluster: write heartbeat (logged again once it works)", nimbus.LogErr, err)
				failing = true
			case err == nil && failing:
				m.log.Info("cluster: heartbeat written again")
				failing = false
			}
			cancel()
			m.mu.Lock()
			m.expireLocked()
			m.mu.Unlock()
		}
	}
}

// rewatch opens the watch again after it ended (the store's connection
// dropped), reading the bucket again; nil (no channel: the ticker goes on)
// until it works.
func (m *Membership) rewatch(ctx context.Context) <-chan store.Entry {
	if ctx.Err() != nil {
		return nil
	}
	w, err := m.cfg.KV.Watch(ctx)
	if err != nil {
		m.log.Warn("cluster: watch the nodes bucket", nimbus.LogErr, err)
		// Try again after an interval: a channel closed then.
		ch := make(chan store.Entry)
		time.AfterFunc(m.cfg.Interval, func() { close(ch) })
		return ch
	}
	if err := m.load(ctx); err != nil {
		m.log.Warn("cluster: read the nodes bucket", nimbus.LogErr, err)
	}
	return w
}

// Live returns the live members, this node included, by address.
func (m *Membership) Live() []Member {
	m.mu.Lock()
	m.expireLocked()
	out := make([]Member, 0, len(m.members))
	for _, s := range m.members {
		out = append(out, s.m)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.ID, b.ID)) })
	return out
}

// Self is this node's id.
func (m *Membership) Self() string { return m.self }

// PeersWarm reports whether some other node advertises warm instances of a
// version of the pool (engine.PoolID): one atomic load and one map
// lookup, false at once on a single node.
func (m *Membership) PeersWarm(pool string) bool {
	return len((*m.warm.Load())[pool]) > 0
}

// PeersRunning sums the running instances of the pool's versions that
// the other nodes advertised in their last heartbeats.
func (m *Membership) PeersRunning(pool string) int {
	n := 0
	for _, c := range (*m.warm.Load())[pool] {
		n += c.idle
	}
	return n
}

// LiveIDs returns the ids of the live members, this node's included,
// sorted.
func (m *Membership) LiveIDs() []string {
	m.mu.Lock()
	m.expireLocked()
	ids := make([]string, 0, len(m.members))
	for id := range m.members {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// Share is the part of a pool's provisioned concurrency total that the
// node self keeps when the live nodes are ids (sorted): total/len(ids)
// each, and one more on total%len(ids) of them, counted from a node that
// the pool's name picks, so that the odd instances of different functions
// land on different nodes. Together the nodes keep exactly total; a node
// not among ids keeps all of it (it is alone, as far as it knows).
func Share(ids []string, self, pool string, total int) int {
	rank := slices.Index(ids, self)
	if rank < 0 || total <= 0 {
		return total
	}
	n := len(ids)
	h := fnv.New32a()
	_, _ = h.Write([]byte(pool))
	first := int(h.Sum32() % uint32(n))
	share := total / n
	if (rank-first+n)%n < total%n {
		share++
	}
	return share
}

// Candidates returns the live peers advertising warm instances of the
// version whose WarmKey is key, least loaded first (the host's load
// average, then busy instances, then the most instances of the version).
func (m *Membership) Candidates(key string) []Member {
	pool, _, _ := strings.Cut(key, "@")
	cs := (*m.warm.Load())[pool]
	if len(cs) == 0 {
		return nil
	}
	m.mu.Lock()
	now := m.cfg.Now()
	var out []Member
	idle := map[string]int{}
	for _, c := range cs {
		if c.key != key {
			continue
		}
		s, ok := m.members[c.id]
		if !ok || now.Sub(s.when) > m.cfg.TTL {
			continue
		}
		out = append(out, s.m)
		idle[c.id] = c.idle
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.Load, b.Load), cmp.Compare(a.Busy, b.Busy), cmp.Compare(idle[b.ID], idle[a.ID]), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Close stops the heartbeat and removes this node's entry, so that the
// others forget it at once rather than after the TTL.
func (m *Membership) Close(ctx context.Context) error {
	m.cancel()
	<-m.done
	err := m.cfg.KV.Delete(ctx, m.self)
	if errors.Is(err, nimbus.ErrNotFound) {
		err = nil
	}
	return err
}

// LoadAverage reads the host's one-minute load average (0 when it cannot).
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

// RemoteReserved sums what the other live nodes use of each function's
// reserved concurrency, as their last heartbeats said.
func (m *Membership) RemoteReserved() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked()
	out := map[string]int{}
	for id, s := range m.members {
		if id == m.self {
			continue
		}
		for fn, n := range s.m.Reserved {
			out[fn] += n
		}
	}
	return out
}
