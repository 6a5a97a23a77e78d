package timer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

const (
	// recoverHorizon is how far back start-up looks for claims left
	// unfinished (or the catch-up window when that is longer).
	recoverHorizon = time.Hour
	// maxRecoverTicks bounds the ticks start-up looks at (the latest ones).
	maxRecoverTicks = 10000
	// storeTimeout bounds one store operation.
	storeTimeout = 10 * time.Second
	// keepBehind is how far behind the ticks a node has not fired yet are
	// kept: when its store does not answer for a while (a cluster electing
	// a new leader for the tick bucket: a claim waits out storeTimeout) or
	// the node was suspended, the ticks of the last keepBehind still fire,
	// late; older ones are skipped. maxBehindTicks bounds their number.
	keepBehind     = time.Minute
	maxBehindTicks = 60
)

// errLostClaim: another node took the tick over.
var errLostClaim = errors.New("another node took the tick over")

// run is the state of one Run of a Source, owned by its loop goroutine.
type run struct {
	*Source
	sink    trigger.Sink
	status  *trigger.Status
	limit   int            // most deliveries in flight
	jobs    map[int64]*job // ticks to look at, by Unix time
	flying  int            // deliveries in flight
	results chan result    // deliveries report here
	wg      sync.WaitGroup // deliveries
	aliveAt time.Time      // next refresh of the alive key
	since   time.Time      // when a node first ran the trigger
	log     *slog.Logger
}

// job is a tick this node has to look at (again).
type job struct {
	tick      time.Time
	at        time.Time // when
	create    bool      // this node may create the claim
	rev       uint64    // revision of this node's claim, 0 if none
	delivered bool      // only the done mark is missing
	flying    bool
	tries     int
}

// result is a delivery's outcome.
type result struct {
	tick      time.Time
	rev       uint64
	delivered bool
	err       error
}

func newRun(s *Source, sink trigger.Sink, opts trigger.Options) *run {
	st := opts.Status
	if st == nil {
		st = trigger.NewStatus()
	}
	log := s.log
	if opts.Logger != nil {
		log = opts.Logger.With(nimbus.LogFunction, s.function, nimbus.LogTrigger, s.name)
	}
	return &run{
		log:     log,
		Source:  s,
		sink:    sink,
		status:  st,
		limit:   max(1, opts.Concurrency),
		jobs:    make(map[int64]*job),
		results: make(chan result),
	}
}

// startUp records that the trigger runs and queues the ticks to recover and
// the one to catch up, retrying while the store fails. It returns the
// start time, or false when ctx ended.
func (r *run) startUp(ctx context.Context) (time.Time, bool) {
	for tries := 1; ; tries++ {
		start, err := r.recover(ctx)
		if err == nil {
			r.status.Connected()
			return start, true
		}
		r.status.Error(fmt.Errorf("timer store: %w", err))
		r.log.Warn("timer start-up failed; retrying", nimbus.LogErr, err)
		if !sleepUntil(ctx, r.deps.Clock, r.deps.Clock.Now().Add(r.backoff(tries))) {
			return time.Time{}, false
		}
	}
}

func (r *run) recover(ctx context.Context) (time.Time, error) {
	start := r.deps.Clock.Now()
	alive, known, err := r.readAlive(ctx)
	if err != nil {
		return start, err
	}
	r.since = start
	if known {
		r.since = alive.Since
	}
	if err := r.putAlive(ctx, start); err != nil {
		return start, err
	}
	ticks := ticksIn(r.cfg.sched, start.Add(-max(r.cfg.catchUp, recoverHorizon)), start, maxRecoverTicks)
	catchUp := r.catchUpTick(ticks, alive, known, start)
	for _, t := range ticks {
		r.add(t, start, t.Equal(catchUp))
	}
	if !catchUp.IsZero() {
		r.log.Info("catching up the most recent missed tick", "tick", catchUp)
	}
	return start, nil
}

// catchUpTick is the tick to fire at start-up: the latest tick, if it came
// after the trigger first ran, after it was last seen running and within
// the catch-up window. A trigger never seen running (new) catches nothing
// up.
func (r *run) catchUpTick(ticks []time.Time, alive aliveState, known bool, start time.Time) time.Time {
	if !known || r.cfg.catchUp == 0 || len(ticks) == 0 {
		return time.Time{}
	}
	latest := ticks[len(ticks)-1]
	// Ticks just before the last refresh may have been missed too.
	from := latestOf(alive.Since, alive.At.Add(-r.deps.Lease), start.Add(-r.cfg.catchUp))
	if latest.After(from) {
		return latest
	}
	return time.Time{}
}

func latestOf(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

// loop fires the ticks after start until ctx ends.
func (r *run) loop(ctx context.Context, start time.Time) {
	next := r.cfg.sched.Next(start)
	for {
		if !r.wait(ctx, r.wakeAt(next)) {
			return
		}
		now := r.deps.Clock.Now()
		if !next.IsZero() && !now.Before(next) {
			due, skipped := dueTicks(r.cfg.sched, next, now)
			if skipped > 0 {
				r.log.Warn("ticks skipped: the node fell behind", "skipped", skipped, "kept", len(due), "tick", due[0])
			}
			for _, t := range due {
				r.add(t, now, true)
			}
			next = r.cfg.sched.Next(due[len(due)-1])
		}
		r.runDue(ctx, now)
		r.keepAlive(ctx, now)
	}
}

// wait waits until t, a delivery's result (which it records) or the end
// of ctx (false).
func (r *run) wait(ctx context.Context, t time.Time) bool {
	c, stop := r.deps.Clock.At(t)
	defer stop()
	select {
	case <-ctx.Done():
		return false
	case res := <-r.results:
		r.finished(res)
	case <-c:
	}
	return true
}

// wakeAt is the earliest of the next tick, the alive refresh and the due
// jobs (those needing a delivery slot only when one is free).
func (r *run) wakeAt(next time.Time) time.Time {
	w := r.aliveAt
	if !next.IsZero() && next.Before(w) {
		w = next
	}
	for _, j := range r.jobs {
		if !j.flying && j.at.Before(w) && (j.delivered || r.flying < r.limit) {
			w = j.at
		}
	}
	return w
}

// add queues a tick unless it is queued already. A tick this node fires
// (create) replaces the ones it has not claimed yet that are more than
// keepBehind older: when the node falls behind (or the store does not
// answer), the ticks of the last keepBehind are kept, older ones are not.
func (r *run) add(tick, at time.Time, create bool) {
	k := tick.Unix()
	if _, ok := r.jobs[k]; ok {
		return
	}
	if create {
		for old, j := range r.jobs {
			if j.create && j.rev == 0 && !j.flying && j.tick.Before(tick.Add(-keepBehind)) {
				r.log.Warn("tick skipped: a later one is due", "tick", j.tick, "later", tick)
				delete(r.jobs, old)
			}
		}
	}
	r.jobs[k] = &job{tick: tick, at: at, create: create}
}

// runDue looks at the due jobs, oldest first.
func (r *run) runDue(ctx context.Context, now time.Time) {
	keys := make([]int64, 0, len(r.jobs))
	for k, j := range r.jobs {
		if !j.flying && !j.at.After(now) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for i, k := range keys {
		if ctx.Err() != nil {
			return
		}
		j := r.jobs[k]
		if j == nil { // dropped by an add during this pass
			continue
		}
		if j.delivered {
			r.finish(ctx, j, now)
		} else if r.flying < r.limit && !r.step(ctx, j, now) {
			// The store failed: the other due jobs wait as long, rather
			// than each waiting out its own store timeout now.
			r.postpone(keys[i+1:], j.at)
			return
		}
	}
}

// postpone makes the jobs of keys due at at the earliest.
func (r *run) postpone(keys []int64, at time.Time) {
	for _, k := range keys {
		if j := r.jobs[k]; j != nil && !j.flying && j.at.Before(at) {
			j.at = at
		}
	}
}

// step claims a job's tick and starts its delivery, or reschedules it. It
// returns false when the store failed.
func (r *run) step(ctx context.Context, j *job, now time.Time) bool {
	c, err := r.claim(ctx, j, now)
	if err != nil {
		r.retryLater(j, r.deps.Clock.Now(), fmt.Errorf("claim tick: %w", err))
		r.status.Error(fmt.Errorf("timer store: %w", err))
		return false
	}
	r.status.Connected()
	switch c.outcome {
	case owned:
		j.rev, j.flying = c.rev, true
		r.flying++
		r.wg.Add(1)
		go r.deliver(ctx, *j)
	case settled:
		delete(r.jobs, j.tick.Unix())
	case busy:
		j.at, j.create = c.wait, false
	}
	return true
}

// finish writes the done mark of a delivered tick.
func (r *run) finish(ctx context.Context, j *job, now time.Time) {
	_, err := r.markDone(ctx, r.tickKey(j.tick), j.rev)
	if err == nil || errors.Is(err, errLostClaim) {
		delete(r.jobs, j.tick.Unix())
		return
	}
	r.retryLater(j, now, err)
}

// finished records a delivery's outcome.
func (r *run) finished(res result) {
	r.flying--
	k := res.tick.Unix()
	j := r.jobs[k]
	if j == nil {
		return
	}
	j.flying = false
	switch {
	case res.err == nil:
		delete(r.jobs, k)
		r.log.Debug("tick delivered", "tick", res.tick)
	case errors.Is(res.err, errLostClaim):
		delete(r.jobs, k)
		r.log.Warn("tick claim lost to another node", "tick", res.tick)
	default:
		j.rev, j.delivered = res.rev, res.delivered
		r.retryLater(j, r.deps.Clock.Now(), res.err)
	}
}

func (r *run) retryLater(j *job, now time.Time, err error) {
	j.tries++
	j.at = now.Add(r.backoff(j.tries))
	r.log.Warn("tick not finished; retrying", "tick", j.tick, "retry_at", j.at, nimbus.LogErr, err)
}

// backoff doubles from 1s up to half a lease, so a node retrying its own
// claim renews it before another node may take it over.
func (r *run) backoff(tries int) time.Duration {
	d := time.Second << min(tries-1, 10)
	return max(time.Millisecond, min(d, r.deps.Lease/2))
}

// keepAlive refreshes the alive key every lease.
func (r *run) keepAlive(ctx context.Context, now time.Time) {
	if now.Before(r.aliveAt) {
		return
	}
	if err := r.putAlive(ctx, now); err != nil {
		r.log.Warn("refresh timer alive key", nimbus.LogErr, err)
		r.status.Error(fmt.Errorf("timer store: %w", err))
		r.aliveAt = now.Add(r.backoff(1))
	}
}

// ticksIn returns the latest (at most limit) ticks in (lo, hi].
func ticksIn(s schedule, lo, hi time.Time, limit int) []time.Time {
	var out []time.Time
	for t := s.Next(lo); !t.IsZero() && !t.After(hi); t = s.Next(t) {
		out = append(out, t)
		if len(out) >= 2*limit {
			out = append(out[:0], out[len(out)-limit:]...)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// dueTicks returns the ticks from next (which is due) to now, oldest first:
// the latest one, and those before it that are at most keepBehind older
// than now (at most maxBehindTicks of them), and how many older ones it
// passed over.
func dueTicks(s schedule, next, now time.Time) ([]time.Time, int) {
	due, skipped := []time.Time{next}, 0
	for t := s.Next(next); !t.IsZero() && !t.After(now); t = s.Next(t) {
		due = append(due, t)
		if len(due) > maxBehindTicks || due[0].Before(now.Add(-keepBehind)) {
			due = due[1:]
			skipped++
		}
	}
	for len(due) > 1 && due[0].Before(now.Add(-keepBehind)) {
		due = due[1:]
		skipped++
	}
	return due, skipped
}

// sleepUntil waits until t on clock (true) or until ctx ends (false).
func sleepUntil(ctx context.Context, clock Clock, t time.Time) bool {
	c, stop := clock.At(t)
	defer stop()
	select {
	case <-c:
		return true
	case <-ctx.Done():
		return false
	}
}
