package async

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/nimbus-serverless/nimbus"
)

// maxClaiming bounds the claims under way at once on a node.
const maxClaiming = 16

// scheduler decides which events of which functions run on this node. Its
// state is in memory and covers only the functions with work: those with
// events waiting in the queue (pending), claimed here (ready) or running.
//
// Fairness: functions that can start an event wait in runq and start one
// event per turn; a function that can start another goes to the back.
// A function claims its next queue message only when it has room for more
// events than it has claimed, so a function at its cap leaves its events
// in the queue, holding nothing else up.
type scheduler struct {
	s *Service

	mu       sync.Mutex
	fns      map[string]*fnState
	runq     []string // functions that may start an event, in turn
	claimq   []string // functions that may claim a message, in turn
	timers   timerHeap
	free     int // node-wide slots
	claiming int
	running  int // events started and not finished
	idle     chan struct{}
	kick     chan struct{}
}

// fnState is one function's work on this node.
type fnState struct {
	name     string
	ready    []*item // claimed events waiting for a slot, oldest first
	inflight int     // events holding a slot
	started  int     // events started and not finished
	claims   int     // claims held
	pending  bool    // the queue may have a claimable message
	claiming bool
	inRunq   bool
	inClaimq bool
	lookAt   time.Time // no claim before (the queue's next due time)
	limiter  *rate.Limiter
	eps      float64
}

// item is a claimed event and its message's bookkeeping.
type item struct {
	ev    *Event
	claim *claimState
}

// claimState counts a claimed message's events until each has an outcome.
type claimState struct {
	c       *Claim
	fn      string
	left    int
	abandon bool // an event got no durable outcome: hand the message back
}

func newScheduler(s *Service) *scheduler {
	return &scheduler{s: s, fns: make(map[string]*fnState), free: s.cfg.Concurrency,
		kick: make(chan struct{}, 1)}
}

func (sc *scheduler) state(fn string) *fnState {
	st := sc.fns[fn]
	if st == nil {
		st = &fnState{name: fn}
		sc.fns[fn] = st
	}
	return st
}

// wake notes that fn has events waiting in the queue.
func (sc *scheduler) wake(fn string) {
	sc.mu.Lock()
	st := sc.state(fn)
	st.pending = true
	st.lookAt = time.Time{}
	sc.queueClaimLocked(st)
	sc.mu.Unlock()
	sc.poke()
}

// refresh re-evaluates fn after a change of its configuration.
func (sc *scheduler) refresh(fn string) {
	sc.mu.Lock()
	if st := sc.fns[fn]; st != nil {
		sc.queueRunLocked(st)
		sc.queueClaimLocked(st)
	}
	sc.mu.Unlock()
	sc.poke()
}

func (sc *scheduler) poke() {
	select {
	case sc.kick <- struct{}{}:
	default:
	}
}

func (sc *scheduler) queueRunLocked(st *fnState) {
	if !st.inRunq && len(st.ready) > 0 {
		st.inRunq = true
		sc.runq = append(sc.runq, st.name)
	}
}

func (sc *scheduler) queueClaimLocked(st *fnState) {
	if !st.inClaimq && st.pending && !st.claiming {
		st.inClaimq = true
		sc.claimq = append(sc.claimq, st.name)
	}
}

// run is the scheduling loop.
func (sc *scheduler) run() {
	s := sc.s
	for {
		wait := sc.schedule()
		var timer <-chan time.Time
		if wait > 0 {
			timer = s.cfg.Clock.After(wait)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-sc.kick:
		case fn := <-s.q.Wakeups():
			sc.wake(fn)
		case <-timer:
		}
	}
}

// schedule starts what can start and returns how long until a timer is
// due (0: none).
func (sc *scheduler) schedule() time.Duration {
	s := sc.s
	if s.ctx.Err() != nil {
		return 0
	}
	now := s.cfg.Clock.Now()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.fireTimersLocked(now)
	var retry time.Time
	for n := len(sc.runq); n > 0 && sc.free > 0; n-- {
		st := sc.fns[sc.runq[0]]
		sc.runq = sc.runq[1:]
		st.inRunq = false
		if at := sc.startLocked(st, now); !at.IsZero() {
			sc.timers.add(st.name, at) // its rate: the timer queues it again
			continue
		}
		if st.inflight < s.limit(st.name) && len(st.ready) > 0 {
			sc.queueRunLocked(st) // another turn, at the back
		}
	}
	for n := len(sc.claimq); n > 0 && sc.claiming < maxClaiming; n-- {
		st := sc.fns[sc.claimq[0]]
		sc.claimq = sc.claimq[1:]
		st.inClaimq = false
		if !st.pending || st.claiming {
			continue
		}
		if st.lookAt.After(now) {
			sc.timers.add(st.name, st.lookAt)
			continue
		}
		if st.started+len(st.ready) >= s.limit(st.name) {
			continue // at its cap: a finished event queues it again
		}
		st.claiming = true
		sc.claiming++
		s.goLoop(func() { sc.claim(st.name) })
	}
	if t, ok := sc.timers.next(); ok {
		retry = t
	}
	if retry.IsZero() {
		return 0
	}
	return max(retry.Sub(now), time.Millisecond)
}

// startLocked starts st's next event if its cap and rate allow; it returns
// when to try again when the rate does not.
func (sc *scheduler) startLocked(st *fnState, now time.Time) time.Time {
	s := sc.s
	if len(st.ready) == 0 || st.inflight >= s.limit(st.name) {
		return time.Time{}
	}
	if lim := sc.limiterLocked(st); lim != nil {
		r := lim.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return now.Add(d)
		}
	}
	it := st.ready[0]
	st.ready = st.ready[1:]
	if s.q.Lost(it.claim.c) {
		sc.finishedLocked(it, false) // another node runs it now
		return time.Time{}
	}
	st.inflight++
	st.started++
	sc.free--
	sc.running++
	s.goLoop(func() { sc.runItem(st, it) })
	return time.Time{}
}

// limiterLocked returns fn's events-per-second limiter, nil when unlimited.
func (sc *scheduler) limiterLocked(st *fnState) *rate.Limiter {
	eps := 0.0
	if fn := sc.s.function(st.name); fn != nil && fn.EventInvoke != nil {
		eps = fn.EventInvoke.MaxEventsPerSecond
	}
	if eps <= 0 {
		st.limiter, st.eps = nil, 0
		return nil
	}
	if st.limiter == nil || st.eps != eps {
		st.limiter = rate.NewLimiter(rate.Limit(eps), max(1, int(eps)))
		st.eps = eps
	}
	return st.limiter
}

// claim takes fn's next message from the queue.
func (sc *scheduler) claim(fn string) {
	s := sc.s
	c, next, err := s.q.Claim(s.ctx, fn)
	sc.mu.Lock()
	defer func() {
		sc.mu.Unlock()
		sc.poke()
	}()
	st := sc.state(fn)
	st.claiming = false
	sc.claiming--
	switch {
	case err != nil:
		if s.ctx.Err() == nil {
			s.log.Warn("async: claim events", nimbus.LogFunction, fn, nimbus.LogErr, err)
		}
		st.lookAt = s.cfg.Clock.Now().Add(time.Second)
	case c == nil && next.IsZero():
		st.pending = false
		sc.forgetIfIdleLocked(st)
		return
	case c == nil:
		st.lookAt = next
	default:
		if s.ctx.Err() != nil {
			s.goLoop(func() { _ = s.q.Release(context.Background(), c) })
			return
		}
		cs := &claimState{c: c, fn: fn, left: len(c.Events)}
		st.claims++
		for _, ev := range c.Events {
			st.ready = append(st.ready, &item{ev: ev, claim: cs})
		}
		sc.queueRunLocked(st)
	}
	sc.queueClaimLocked(st)
}

// runItem runs one event; its slot is freed once the function has run
// (not while its outcome is stored and sent).
func (sc *scheduler) runItem(st *fnState, it *item) {
	release := sync.OnceFunc(func() {
		sc.mu.Lock()
		st.inflight--
		sc.free++
		sc.queueRunLocked(st)
		sc.mu.Unlock()
		sc.poke()
	})
	ok := sc.s.execute(it.ev, release)
	release()
	sc.mu.Lock()
	st.started--
	sc.running--
	sc.finishedLocked(it, ok)
	sc.queueClaimLocked(st)
	sc.forgetIfIdleLocked(st)
	if sc.running == 0 && sc.idle != nil {
		close(sc.idle)
		sc.idle = nil
	}
	sc.mu.Unlock()
	sc.poke()
}

// finishedLocked counts an event of a claim as done (ok: it has a durable
// outcome); the last one settles the claim.
func (sc *scheduler) finishedLocked(it *item, ok bool) {
	cs := it.claim
	if !ok {
		cs.abandon = true
	}
	cs.left--
	if cs.left > 0 {
		return
	}
	if st := sc.fns[cs.fn]; st != nil {
		st.claims--
	}
	s := sc.s
	s.goLoop(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		if cs.abandon {
			err = s.q.Release(ctx, cs.c)
		} else {
			err = s.q.Done(ctx, cs.c)
		}
		if err != nil {
			s.log.Warn("async: settle a queue message", nimbus.LogFunction, cs.fn, nimbus.LogErr, err)
		}
	})
}

// forgetIfIdleLocked drops st when fn has no work left on this node, so
// that the scheduler's memory follows the functions with work.
func (sc *scheduler) forgetIfIdleLocked(st *fnState) {
	if !st.pending && !st.claiming && st.started == 0 && st.claims == 0 && len(st.ready) == 0 &&
		!st.inRunq && !st.inClaimq && st.limiter == nil {
		delete(sc.fns, st.name)
	}
}

// fireTimersLocked queues the functions whose time has come.
func (sc *scheduler) fireTimersLocked(now time.Time) {
	for {
		t, ok := sc.timers.next()
		if !ok || t.After(now) {
			return
		}
		e := heap.Pop(&sc.timers).(timerEntry)
		if st := sc.fns[e.fn]; st != nil {
			sc.queueRunLocked(st)
			sc.queueClaimLocked(st)
		}
	}
}

// waitIdle returns once no event runs (the service has stopped starting
// new ones).
func (sc *scheduler) waitIdle() {
	sc.mu.Lock()
	if sc.running == 0 {
		sc.mu.Unlock()
		return
	}
	if sc.idle == nil {
		sc.idle = make(chan struct{})
	}
	ch := sc.idle
	sc.mu.Unlock()
	<-ch
}

// abandonReady hands back the claimed events that never started.
func (sc *scheduler) abandonReady() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, st := range sc.fns {
		for _, it := range st.ready {
			sc.finishedLocked(it, false)
		}
		st.ready = nil
	}
}

// timerHeap holds when functions want another look, earliest first.
type timerHeap []timerEntry

type timerEntry struct {
	fn string
	at time.Time
}

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func (h *timerHeap) add(fn string, at time.Time) { heap.Push(h, timerEntry{fn: fn, at: at}) }

func (h timerHeap) next() (time.Time, bool) {
	if len(h) == 0 {
		return time.Time{}, false
	}
	return h[0].at, true
}
