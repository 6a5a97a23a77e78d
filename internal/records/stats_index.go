package records

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// hourIndex is the hourly statistics bucket in memory, on every node that
// asks for functions' totals: one watch of the bucket (the current values,
// then every update), started on first use and stopped by close. Reading
// ~24 000 keys (a day of 1 000 functions) through a watch per query takes
// too long for a page of the console; the index answers in a few ms.
type hourIndex struct {
	kv   jetstream.KeyValue
	keep time.Duration

	mu     sync.Mutex // guards closed and run
	closed bool
	run    *indexRun
	wg     sync.WaitGroup
}

// indexRun is one watch of the bucket and what it read.
type indexRun struct {
	ready  chan struct{} // closed when the current values are in
	done   chan struct{} // closed when the watch ended
	cancel context.CancelFunc

	mu    sync.RWMutex               // guards hours
	hours map[int64]map[string]*Stat // hour (Unix) -> function -> stat
}

var errClosed = errors.New("records: the store is closed")

// get returns the index once it holds the bucket's current values,
// starting (or, after a failed watch, restarting) it.
func (x *hourIndex) get(ctx context.Context) (*indexRun, error) {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil, errClosed
	}
	r := x.run
	if r == nil || isClosed(r.done) {
		wctx, cancel := context.WithCancel(context.Background())
		r = &indexRun{ready: make(chan struct{}), done: make(chan struct{}), cancel: cancel, hours: map[int64]map[string]*Stat{}}
		x.run = r
		x.wg.Go(func() {
			defer close(r.done)
			r.watch(wctx, x.kv, x.keep)
		})
	}
	x.mu.Unlock()
	select {
	case <-r.ready:
		return r, nil
	case <-r.done:
		return nil, errors.New("stats index: the watch of the hourly bucket ended")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close stops the watch.
func (x *hourIndex) close() {
	x.mu.Lock()
	x.closed = true
	if x.run != nil {
		x.run.cancel()
	}
	x.mu.Unlock()
	x.wg.Wait()
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// watch keeps r up to date until ctx ends or the watch fails.
func (r *indexRun) watch(ctx context.Context, kv jetstream.KeyValue, keep time.Duration) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return
			case e == nil:
				close(r.ready)
			default:
				r.put(e.Key(), e.Value(), keep)
			}
		}
	}
}

// put takes in the value of a key, and forgets the hours past keep.
func (r *indexRun) put(key string, val []byte, keep time.Duration) {
	t, fn, ok := parseStatKey(key)
	if !ok {
		return
	}
	s := &Stat{}
	if json.Unmarshal(val, s) != nil {
		return
	}
	s.Seq = 0
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hours[t.Unix()]
	if h == nil {
		h = map[string]*Stat{}
		r.hours[t.Unix()] = h
		old := time.Now().Add(-keep).Unix()
		for k := range r.hours {
			if k < old {
				delete(r.hours, k)
			}
		}
	}
	h[fn] = s
}

// each calls f with the stats of the hours in [since, until) of the
// functions keep admits.
func (r *indexRun) each(since, until time.Time, keep func(string) bool, f func(fn string, s *Stat)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for t := since.Truncate(time.Hour); t.Before(until); t = t.Add(time.Hour) {
		if t.Before(since) {
			continue
		}
		for fn, s := range r.hours[t.Unix()] {
			if keep(fn) {
				f(fn, s)
			}
		}
	}
}

// active lists the functions keep admits with stats in the hours of
// [since, until), by name.
func (r *indexRun) active(since, until time.Time, keep func(string) bool) []string {
	seen := map[string]bool{}
	r.each(since, until, func(fn string) bool { return fn != allFn && keep(fn) }, func(fn string, _ *Stat) { seen[fn] = true })
	out := make([]string, 0, len(seen))
	for fn := range seen {
		out = append(out, fn)
	}
	sort.Strings(out)
	return out
}
