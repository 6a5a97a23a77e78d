package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// statIndex is the part of a statistics bucket a window may ask for (its
// periods of the last keep), in memory, on every node that asks for
// functions' totals: one watch of the bucket (the current values, then
// every update), started on first use and stopped by close. A watch's
// consumer costs the server a walk of every subject of the bucket, and a
// day of 1 000 functions is ~24 000 hourly keys: reading them per query
// takes too long for a page of the console, the index answers in ms.
type statIndex struct {
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

	mu      sync.RWMutex                // guards periods and names
	periods map[int64]map[string]*istat // period (Unix) -> function -> stat
	names   map[string]string           // interned function names
}

// istat is a Stat in the index: its histogram packed, a uint32 per bucket
// (the index from histLo in the top 8 bits, the count in the low 24; a
// count past 2^24-1 takes several).
type istat struct {
	invocations, errors, throttles, platformErrors, coldStarts, mbms int64
	durationMs                                                       float64
	hist                                                             []uint32
}

func packStat(s *Stat) *istat {
	i := &istat{invocations: s.Invocations, errors: s.Errors, throttles: s.Throttles, platformErrors: s.PlatformErrors,
		coldStarts: s.ColdStarts, mbms: s.MBms, durationMs: s.DurationMs}
	i.hist = make([]uint32, 0, len(s.Hist)/2)
	for k := 0; k+1 < len(s.Hist); k += 2 {
		b := uint32(min(max(s.Hist[k]-histLo, 0), histN-1)) << 24
		for n := s.Hist[k+1]; n > 0; n -= 1<<24 - 1 {
			i.hist = append(i.hist, b|uint32(min(n, 1<<24-1)))
		}
	}
	return i
}

var errClosed = errors.New("records: the store is closed")

// get returns the index once it holds the bucket's current values,
// starting (or, after a failed watch, restarting) it.
func (x *statIndex) get(ctx context.Context) (*indexRun, error) {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil, errClosed
	}
	r := x.run
	if r == nil || isClosed(r.done) {
		wctx, cancel := context.WithCancel(context.Background())
		r = &indexRun{ready: make(chan struct{}), done: make(chan struct{}), cancel: cancel,
			periods: map[int64]map[string]*istat{}, names: map[string]string{}}
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
		return nil, fmt.Errorf("stats index: the watch of %s ended", x.kv.Bucket())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close stops the watch.
func (x *statIndex) close() {
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

// put takes in the value of a key, and forgets the periods past keep.
func (r *indexRun) put(key string, val []byte, keep time.Duration) {
	t, fn, ok := parseStatKey(key)
	if !ok || t.Before(time.Now().Add(-keep)) {
		return
	}
	var s Stat
	if json.Unmarshal(val, &s) != nil {
		return
	}
	is := packStat(&s)
	r.mu.Lock()
	defer r.mu.Unlock()
	name, ok := r.names[fn]
	if !ok {
		name = fn
		r.names[fn] = fn
	}
	p := r.periods[t.Unix()]
	if p == nil {
		p = map[string]*istat{}
		r.periods[t.Unix()] = p
		old := time.Now().Add(-keep).Unix()
		for k := range r.periods {
			if k < old {
				delete(r.periods, k)
			}
		}
	}
	p[name] = is
}

// each calls f with the stats of the functions keep admits in the
// periods of [since, until) that are step long from since.
func (r *indexRun) each(since, until time.Time, step time.Duration, keep func(string) bool, f func(t time.Time, fn string, s *istat)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for t := since; t.Before(until); t = t.Add(step) {
		for fn, s := range r.periods[t.Unix()] {
			if keep(fn) {
				f(t, fn, s)
			}
		}
	}
}
