// Package mem is an in-memory async.Backend for tests: the Async Service's
// policy runs against it in milliseconds, with a clock the test moves. A
// Store is what the nodes share (the queue, the records, the dead
// letters); Store.Node opens one node's view of it. It passes the same
// suite (internal/async/asynctest) as the JetStream backend.
package mem

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
)

// Store is the storage several nodes share.
type Store struct {
	now func() time.Time
	ttl time.Duration

	mu      sync.Mutex
	seq     uint64
	queues  map[string][]*message // by function, oldest first
	tasks   map[string]*nimbus.Task
	letters []nimbus.DeadLetter
	nodes   []*Node
	// fail, when set, is returned by every write (a full disk).
	fail error
}

// message is a queue message: a batch of events, and who holds it.
type message struct {
	seq    uint64
	fn     string
	events []*async.Event
	holder *Node
	until  time.Time
	gen    int // claims taken, so a taken-over claim knows it is lost
}

// New returns an empty Store. now is the clock (nil: time.Now); a claim
// lasts ttl unless its node keeps renewing it (a node renews while it is
// open; Crash stops that).
func New(now func() time.Time, ttl time.Duration) *Store {
	if now == nil {
		now = time.Now
	}
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	return &Store{now: now, ttl: ttl, queues: make(map[string][]*message), tasks: make(map[string]*nimbus.Task)}
}

// FailWrites makes every write fail with err until it is called with nil
// (a full disk, a store that does not answer).
func (s *Store) FailWrites(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// Node opens a node's backend on the store.
func (s *Store) Node() *Node {
	n := &Node{s: s, wakeups: make(chan string, 1024), stops: make(chan string, 1024)}
	s.mu.Lock()
	s.nodes = append(s.nodes, n)
	s.mu.Unlock()
	return n
}

// Node is one node's async.Backend.
type Node struct {
	s       *Store
	wakeups chan string
	stops   chan string
	crashed bool // stopped renewing: its claims lapse
	closed  bool
}

var _ async.Backend = (*Node)(nil)

// claim is the Handle of a claim.
type claim struct {
	m   *message
	gen int
}

// Crash makes the node stop renewing its claims, as a node that died: they
// lapse after the store's ttl and other nodes take them.
func (n *Node) Crash() {
	n.s.mu.Lock()
	n.crashed = true
	n.s.mu.Unlock()
}

func (s *Store) writeErr() error {
	if s.fail != nil {
		return nimbus.Errorf(nimbus.ErrUnavailable, "the store cannot write: %v", s.fail)
	}
	return nil
}

// Put implements async.Queue.
func (n *Node) Put(_ context.Context, recs []*nimbus.Task, evs []*async.Event) error {
	s := n.s
	s.mu.Lock()
	if err := s.writeErr(); err != nil {
		s.mu.Unlock()
		return err
	}
	changed := s.applyLocked(recs)
	byFn := map[string][]*async.Event{}
	var order []string
	for _, ev := range evs {
		if _, ok := byFn[ev.Function]; !ok {
			order = append(order, ev.Function)
		}
		cp := *ev
		byFn[ev.Function] = append(byFn[ev.Function], &cp)
	}
	for _, fn := range order {
		s.seq++
		s.queues[fn] = append(s.queues[fn], &message{seq: s.seq, fn: fn, events: byFn[fn]})
	}
	nodes := slices.Clone(s.nodes)
	s.mu.Unlock()
	s.notifyStops(changed)
	for _, fn := range order {
		for _, x := range nodes {
			select {
			case x.wakeups <- fn:
			default:
			}
		}
	}
	return nil
}

// live reports whether m's claim still holds (locked).
func (s *Store) liveLocked(m *message, now time.Time) bool {
	if m.holder == nil {
		return false
	}
	if !m.holder.crashed && !m.holder.closed {
		return true // its node renews it
	}
	return now.Before(m.until)
}

// Claim implements async.Queue.
func (n *Node) Claim(_ context.Context, fn string) (*async.Claim, time.Time, error) {
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var next time.Time
	for _, m := range s.queues[fn] {
		due := m.events[0].NotBefore
		for _, ev := range m.events[1:] {
			if ev.NotBefore.Before(due) {
				due = ev.NotBefore
			}
		}
		if m.holder == n && s.liveLocked(m, now) {
			continue
		}
		if due.After(now) {
			next = earliest(next, due)
			continue
		}
		if s.liveLocked(m, now) {
			next = earliest(next, m.until)
			continue
		}
		m.holder, m.until = n, now.Add(s.ttl)
		m.gen++
		evs := make([]*async.Event, len(m.events))
		for i, ev := range m.events {
			cp := *ev
			evs[i] = &cp
		}
		return &async.Claim{Events: evs, Handle: &claim{m: m, gen: m.gen}}, time.Time{}, nil
	}
	return nil, next, nil
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func (n *Node) handle(c *async.Claim) (*claim, error) {
	h, ok := c.Handle.(*claim)
	if !ok || h == nil {
		return nil, errors.New("mem: not a claim of this store")
	}
	return h, nil
}

// Done implements async.Queue.
func (n *Node) Done(_ context.Context, c *async.Claim) error {
	h, err := n.handle(c)
	if err != nil {
		return err
	}
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.m.gen != h.gen {
		return nil // taken over: the new holder finishes it
	}
	if err := s.writeErr(); err != nil {
		return err
	}
	q := s.queues[h.m.fn]
	if i := slices.Index(q, h.m); i >= 0 {
		s.queues[h.m.fn] = slices.Delete(q, i, i+1)
	}
	if len(s.queues[h.m.fn]) == 0 {
		delete(s.queues, h.m.fn)
	}
	return nil
}

// Release implements async.Queue.
func (n *Node) Release(_ context.Context, c *async.Claim) error {
	h, err := n.handle(c)
	if err != nil {
		return err
	}
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.m.gen == h.gen {
		h.m.holder = nil
	}
	return nil
}

// Lost implements async.Queue.
func (n *Node) Lost(c *async.Claim) bool {
	h, err := n.handle(c)
	if err != nil {
		return true
	}
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	return h.m.gen != h.gen
}

// Pending implements async.Queue.
func (n *Node) Pending(context.Context) ([]string, error) {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	fns := make([]string, 0, len(n.s.queues))
	for fn := range n.s.queues {
		fns = append(fns, fn)
	}
	slices.Sort(fns)
	return fns, nil
}

// Wakeups implements async.Queue.
func (n *Node) Wakeups() <-chan string { return n.wakeups }

// applyLocked merges records; it returns those that took effect.
func (s *Store) applyLocked(recs []*nimbus.Task) []*nimbus.Task {
	var changed []*nimbus.Task
	for _, t := range recs {
		key := async.TaskKey(t.Function, t.ID)
		if cur := s.tasks[key]; cur != nil && !t.Supersedes(cur) {
			continue
		}
		cp := *t
		s.tasks[key] = &cp
		changed = append(changed, &cp)
	}
	return changed
}

// notifyStops tells every node of the tasks asked to stop.
func (s *Store) notifyStops(changed []*nimbus.Task) {
	s.mu.Lock()
	nodes := slices.Clone(s.nodes)
	s.mu.Unlock()
	for _, t := range changed {
		if t.Status != nimbus.TaskStopping && t.Status != nimbus.TaskStopped {
			continue
		}
		for _, x := range nodes {
			select {
			case x.stops <- async.TaskKey(t.Function, t.ID):
			default:
			}
		}
	}
}

// Record implements async.Records.
func (n *Node) Record(_ context.Context, recs []*nimbus.Task) error {
	s := n.s
	s.mu.Lock()
	if err := s.writeErr(); err != nil {
		s.mu.Unlock()
		return err
	}
	changed := s.applyLocked(recs)
	s.mu.Unlock()
	s.notifyStops(changed)
	return nil
}

// RecordLater implements async.Records.
func (n *Node) RecordLater(t *nimbus.Task) { _ = n.Record(context.Background(), []*nimbus.Task{t}) }

// Task implements async.Records.
func (n *Node) Task(_ context.Context, fn, id string) (nimbus.Task, error) {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	t := n.s.tasks[async.TaskKey(fn, id)]
	if t == nil {
		return nimbus.Task{}, nimbus.Errorf(nimbus.ErrNotFound, "Task %s of function %s not found", id, fn)
	}
	return *t, nil
}

// Tasks implements async.Records (by sorting every task of fn: fine for
// tests).
func (n *Node) Tasks(_ context.Context, fn string, o async.ListOptions) ([]nimbus.Task, string, error) {
	n.s.mu.Lock()
	var all []nimbus.Task
	for _, t := range n.s.tasks {
		if t.Function != fn || (o.Status != "" && t.Status != o.Status) ||
			(!o.Since.IsZero() && t.Created.Before(o.Since)) || (!o.Until.IsZero() && !t.Created.Before(o.Until)) {
			continue
		}
		all = append(all, *t)
	}
	n.s.mu.Unlock()
	slices.SortFunc(all, func(a, b nimbus.Task) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if o.Marker != "" {
		i := slices.IndexFunc(all, func(t nimbus.Task) bool { return t.ID == o.Marker })
		all = all[i+1:] // an unknown marker (-1) starts from the beginning
	}
	if len(all) > o.Limit {
		return all[:o.Limit], all[o.Limit-1].ID, nil
	}
	return all, "", nil
}

// Counts implements async.Records.
func (n *Node) Counts(_ context.Context, fn string) (map[string]int, error) {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	out := map[string]int{}
	for _, t := range n.s.tasks {
		if t.Function == fn {
			out[t.Status]++
		}
	}
	return out, nil
}

// Stops implements async.Records.
func (n *Node) Stops() <-chan string { return n.stops }

// Bury implements async.Letters.
func (n *Node) Bury(_ context.Context, dl *nimbus.DeadLetter) error {
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeErr(); err != nil {
		return err
	}
	s.seq++
	cp := *dl
	cp.Seq = s.seq
	s.letters = append(s.letters, cp)
	return nil
}

// Letters implements async.Letters.
func (n *Node) Letters(_ context.Context, fn string, after uint64, limit int) ([]nimbus.DeadLetter, error) {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	var out []nimbus.DeadLetter
	for _, dl := range n.s.letters {
		if dl.Function == fn && dl.Seq > after && len(out) < limit {
			out = append(out, dl)
		}
	}
	return out, nil
}

// Remove implements async.Letters.
func (n *Node) Remove(_ context.Context, seq uint64) error {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	n.s.letters = slices.DeleteFunc(n.s.letters, func(dl nimbus.DeadLetter) bool { return dl.Seq == seq })
	return nil
}

// Close implements async.Backend: the node's claims are freed (unless it
// crashed: then they lapse).
func (n *Node) Close(context.Context) error {
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	n.closed = true
	if n.crashed {
		return nil
	}
	for _, q := range s.queues {
		for _, m := range q {
			if m.holder == n {
				m.holder = nil
			}
		}
	}
	return nil
}

// Backlog implements async.Backlogger.
func (n *Node) Backlog(context.Context) (map[string]int, error) {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	out := make(map[string]int, len(n.s.queues))
	for fn, q := range n.s.queues {
		if len(q) > 0 {
			out[fn] = len(q)
		}
	}
	return out, nil
}
