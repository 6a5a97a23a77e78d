package async

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
)

// index is a node's view of the task records: the latest record of every
// task in the retention window, fed by the <prefix>_TASKS stream (so it holds
// what every node wrote, a few milliseconds late for other nodes' writes).
type index struct {
	retention time.Duration
	now       func() time.Time
	onStop    func(key string) // a task was asked to stop

	mu    sync.RWMutex
	tasks map[string]*nimbus.Task            // by task key
	byFn  map[string]map[string]*nimbus.Task // function -> id -> task
	count map[string]map[string]int          // function -> status -> tasks
}

func newIndex(retention time.Duration, now func() time.Time) *index {
	return &index{retention: retention, now: now,
		tasks: make(map[string]*nimbus.Task), byFn: make(map[string]map[string]*nimbus.Task),
		count: make(map[string]map[string]int)}
}

// rank orders statuses for merging records that raced: a final status
// stands (unless a re-drive enqueues the task again), and a stop request
// outranks running.
func rank(status string) int {
	switch {
	case nimbus.TaskFinal(status):
		return 3
	case status == nimbus.TaskStopping:
		return 2
	}
	return 1
}

// newer reports whether record t supersedes cur.
func newer(cur, t *nimbus.Task) bool {
	// A re-drive starts a new life of the task, with a later creation time.
	if c := t.Created.Compare(cur.Created); c != 0 {
		return c > 0
	}
	if rc, rt := rank(cur.Status), rank(t.Status); rc != rt {
		return rt > rc
	}
	return !t.Updated.Before(cur.Updated)
}

// apply merges a record into the index.
func (x *index) apply(t *nimbus.Task) {
	key := taskKey(t.Function, t.ID)
	x.mu.Lock()
	cur := x.tasks[key]
	if cur != nil && !newer(cur, t) {
		x.mu.Unlock()
		return
	}
	x.tally(cur, -1)
	x.tally(t, +1)
	x.tasks[key] = t
	m := x.byFn[t.Function]
	if m == nil {
		m = make(map[string]*nimbus.Task)
		x.byFn[t.Function] = m
	}
	m[t.ID] = t
	x.mu.Unlock()
	if (t.Status == nimbus.TaskStopping || t.Status == nimbus.TaskStopped) && x.onStop != nil {
		x.onStop(key)
	}
}

// get returns a copy of a task.
func (x *index) get(fn, id string) (nimbus.Task, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	t := x.tasks[taskKey(fn, id)]
	if t == nil {
		return nimbus.Task{}, false
	}
	return *t, true
}


// list returns a page of a function's tasks, oldest first, and the marker of
// the next page ("" at the end).
func (x *index) list(fn string, o ListOptions) ([]nimbus.Task, string) {
	x.mu.RLock()
	var all []nimbus.Task
	for _, t := range x.byFn[fn] {
		if o.Status != "" && t.Status != o.Status {
			continue
		}
		if (!o.Since.IsZero() && t.Created.Before(o.Since)) || (!o.Until.IsZero() && !t.Created.Before(o.Until)) {
			continue
		}
		all = append(all, *t)
	}
	x.mu.RUnlock()
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
		return all[:o.Limit], all[o.Limit-1].ID
	}
	return all, ""
}

// sweep forgets tasks last updated before the retention window.
func (x *index) sweep() {
	cutoff := x.now().Add(-x.retention)
	x.mu.Lock()
	defer x.mu.Unlock()
	for key, t := range x.tasks {
		if t.Updated.Before(cutoff) {
			x.tally(t, -1)
			delete(x.tasks, key)
			delete(x.byFn[t.Function], t.ID)
			if len(x.byFn[t.Function]) == 0 {
				delete(x.byFn, t.Function)
			}
		}
	}
}

// loadIndex reads the task stream from the start, returns once it has
// caught up with what was there, and keeps following it.
func (s *Service) loadIndex(ctx context.Context) error {
	s.idx.onStop = s.stopLocal
	info, err := s.cfg.JS.Stream(ctx, s.names.tasks)
	if err != nil {
		return fmt.Errorf("async: task stream: %w", err)
	}
	last := info.CachedInfo().State.LastSeq
	cons, err := s.cfg.JS.OrderedConsumer(ctx, s.names.tasks, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("async: follow task stream: %w", err)
	}
	caught := make(chan struct{})
	var once sync.Once
	if last == 0 {
		once.Do(func() { close(caught) })
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		s.applyBatch(m.Data())
		if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= last {
			once.Do(func() { close(caught) })
		}
	})
	if err != nil {
		return fmt.Errorf("async: follow task stream: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-s.ctx.Done()
		cc.Stop()
	}()
	select {
	case <-caught:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("async: load task records: %w", ctx.Err())
	}
}

func (s *Service) applyBatch(data []byte) {
	var recs []*nimbus.Task
	if err := json.Unmarshal(data, &recs); err != nil {
		s.log.Warn("async: skip an unreadable task record batch", nimbus.LogErr, err)
		return
	}
	for _, t := range recs {
		if t != nil && t.ID != "" {
			s.idx.apply(t)
		}
	}
}

func (x *index) counts(fn string) map[string]int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[string]int, len(x.count[fn]))
	for status, n := range x.count[fn] {
		out[status] = n
	}
	return out
}

// tally adds d to t's status count (x.mu held; t may be nil).
func (x *index) tally(t *nimbus.Task, d int) {
	if t == nil {
		return
	}
	c := x.count[t.Function]
	if c == nil {
		c = make(map[string]int)
		x.count[t.Function] = c
	}
	c[t.Status] += d
	if c[t.Status] == 0 {
		delete(c, t.Status)
	}
	if len(c) == 0 {
		delete(x.count, t.Function)
	}
}
