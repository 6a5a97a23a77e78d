package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/nimbus-serverless/nimbus"
)

// dispatcher feeds one function's events to the engine. Every node runs one
// per function, all on the function's durable consumer, so they share the
// work.
type dispatcher struct {
	s    *Service
	name string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	inflight int
	freed    chan struct{} // closed and replaced when an event finishes
	last     *nimbus.Function
	limiter  *rate.Limiter
	limitEPS float64
}

// ensureDispatcher starts the function's dispatcher unless it runs.
func (s *Service) ensureDispatcher(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil || s.dispatchers[name] != nil {
		return
	}
	d := &dispatcher{s: s, name: name, freed: make(chan struct{})}
	d.ctx, d.cancel = context.WithCancel(s.ctx)
	s.dispatchers[name] = d
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		d.run()
		s.mu.Lock()
		if s.dispatchers[name] == d {
			delete(s.dispatchers, name)
		}
		s.mu.Unlock()
	}()
}

// Refresh is called when a function changes or is deleted.
func (s *Service) Refresh(name string) {
	if _, err := s.cfg.Functions.Get(context.Background(), name); err == nil {
		s.ensureDispatcher(name)
	}
	// A deleted function's dispatcher drains what is left and then stops.
}

// startDispatchers starts a dispatcher for every function and for every
// consumer left by a deleted function that may still hold events.
func (s *Service) startDispatchers(ctx context.Context) error {
	fns, err := s.cfg.Functions.List(ctx)
	if err != nil {
		return fmt.Errorf("async: list functions: %w", err)
	}
	for _, fn := range fns {
		s.ensureDispatcher(fn.Name)
	}
	names := s.events.ConsumerNames(ctx)
	for n := range names.Name() {
		if fn, ok := strings.CutPrefix(n, consumerPrefix); ok {
			s.ensureDispatcher(fn)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("async: list consumers: %w", err)
	}
	return nil
}

const consumerPrefix = "fn-"

// stop ends the dispatcher; Service.Close waits for it through s.wg (run
// waits for its runners itself: they are added only by run's goroutine, so
// no Add can race that Wait).
func (d *dispatcher) stop() { d.cancel() }

// run fetches batches while the function has room and hands their events
// to runners, until the service closes or a deleted function's queue is
// empty.
func (d *dispatcher) run() {
	defer d.wg.Wait()
	cons, err := d.consumer()
	if err != nil {
		if d.ctx.Err() == nil {
			d.s.log.Error("async: cannot dispatch", nimbus.LogFunction, d.name, nimbus.LogErr, err)
		}
		return
	}
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for d.ctx.Err() == nil {
		fn := d.function()
		room := d.waitRoom(fn)
		if room == 0 {
			return
		}
		fctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
		batch, err := cons.Fetch(min(room, 16), jetstream.FetchContext(fctx))
		got := 0
		if err == nil {
			for m := range batch.Messages() {
				got++
				d.accept(m)
			}
			err = batch.Error()
		}
		cancel()
		if d.ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
			d.s.log.Warn("async: fetch events", nimbus.LogFunction, d.name, nimbus.LogErr, err)
			if !sleepCtx(d.ctx, backoff.next()) {
				return
			}
			continue
		}
		backoff.reset()
		if got == 0 && fn == nil && d.drained(cons) {
			return
		}
	}
}

// consumer creates (or finds) the function's durable consumer.
func (d *dispatcher) consumer() (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	return d.s.events.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       consumerPrefix + d.name,
		FilterSubject: d.s.names.evSubj + d.name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       d.s.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 1024,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
}

// drained deletes a deleted function's consumer once nothing is left.
func (d *dispatcher) drained(cons jetstream.Consumer) bool {
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
		return false
	}
	d.mu.Lock()
	busy := d.inflight > 0
	d.mu.Unlock()
	if busy {
		return false
	}
	if err := d.s.events.DeleteConsumer(ctx, consumerPrefix+d.name); err != nil {
		d.s.log.Warn("async: delete consumer", nimbus.LogFunction, d.name, nimbus.LogErr, err)
	}
	return true
}

// function returns the current function (nil when deleted) and remembers
// the last one seen, whose destinations a deleted function's events use.
func (d *dispatcher) function() *nimbus.Function {
	fn, err := d.s.cfg.Functions.Get(d.ctx, d.name)
	if err != nil {
		return nil
	}
	d.mu.Lock()
	d.last = fn
	d.mu.Unlock()
	return fn
}

func (d *dispatcher) lastKnown() *nimbus.Function {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// limit is how many of the function's events may run at once on this node.
func (d *dispatcher) limit(fn *nimbus.Function) int {
	n := d.s.cfg.Concurrency
	if fn == nil {
		return n
	}
	if c := fn.EventInvoke; c != nil && c.MaxConcurrency > 0 {
		n = min(n, c.MaxConcurrency)
	}
	if fn.ReservedConcurrency != nil {
		n = min(n, *fn.ReservedConcurrency)
	}
	return n
}

// waitRoom waits until fewer than the limit of events run and returns the
// room; 0 when the dispatcher stops (or the function may not run at all:
// a reserved concurrency of 0 keeps its events queued).
func (d *dispatcher) waitRoom(fn *nimbus.Function) int {
	for {
		lim := d.limit(fn)
		d.mu.Lock()
		n, freed := d.inflight, d.freed
		d.mu.Unlock()
		if lim > n {
			return lim - n
		}
		t := time.NewTimer(time.Second) // re-read the limit now and then
		select {
		case <-freed:
		case <-t.C:
			fn = d.function()
		case <-d.ctx.Done():
			t.Stop()
			return 0
		}
		t.Stop()
	}
}

func (d *dispatcher) started() {
	d.mu.Lock()
	d.inflight++
	d.mu.Unlock()
}

func (d *dispatcher) finished() {
	d.mu.Lock()
	d.inflight--
	close(d.freed)
	d.freed = make(chan struct{})
	d.mu.Unlock()
}

// rateLimiter returns the function's events-per-second limiter, nil when
// unlimited.
func (d *dispatcher) rateLimiter(fn *nimbus.Function) *rate.Limiter {
	eps := 0.0
	if fn != nil && fn.EventInvoke != nil {
		eps = fn.EventInvoke.MaxEventsPerSecond
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if eps <= 0 {
		d.limiter, d.limitEPS = nil, 0
		return nil
	}
	if d.limiter == nil || d.limitEPS != eps {
		d.limiter = rate.NewLimiter(rate.Limit(eps), max(1, int(eps)))
		d.limitEPS = eps
	}
	return d.limiter
}

// inFlight is a batch message whose events are running.
type inFlight struct {
	msg      jetstream.Msg
	pending  atomic.Int32
	abandon  atomic.Bool
	hbCancel context.CancelFunc
}

// accept decodes a batch message and starts its events.
func (d *dispatcher) accept(m jetstream.Msg) {
	var evs []*event
	if err := json.Unmarshal(m.Data(), &evs); err != nil || len(evs) == 0 {
		d.s.log.Error("async: drop an unreadable event batch", nimbus.LogFunction, d.name, nimbus.LogErr, err)
		_ = m.Term()
		return
	}
	if len(evs) == 1 && evs[0].NotBefore.After(d.s.cfg.Now()) {
		_ = m.NakWithDelay(evs[0].NotBefore.Sub(d.s.cfg.Now()))
		return
	}
	b := &inFlight{msg: m}
	b.pending.Store(int32(len(evs)))
	hbCtx, cancel := context.WithCancel(context.Background())
	b.hbCancel = cancel
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.heartbeat(hbCtx, m)
	}()
	for _, ev := range evs {
		if d.waitRoom(d.function()) == 0 || !d.acquire() {
			d.done(b, false)
			continue
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			// The slot is held while the function runs, not while the
			// outcome is stored and sent.
			release := sync.OnceFunc(d.release)
			defer release()
			d.done(b, d.execute(ev, release))
		}()
	}
}

// acquire takes a node-wide slot and counts the event as in flight; false
// when the service stops first. Waiting on the shared slots in turn is what
// keeps one function's backlog from starving the others.
func (d *dispatcher) acquire() bool {
	select {
	case d.s.slots <- struct{}{}:
		d.started()
		return true
	case <-d.ctx.Done():
		return false
	}
}

func (d *dispatcher) release() {
	<-d.s.slots
	d.finished()
}

// done records an event's end; the batch is acknowledged when all its
// events have a durable outcome, and handed back (nak) when one has not.
func (d *dispatcher) done(b *inFlight, ok bool) {
	if !ok {
		b.abandon.Store(true)
	}
	if b.pending.Add(-1) > 0 {
		return
	}
	b.hbCancel()
	if b.abandon.Load() {
		_ = b.msg.Nak()
		return
	}
	if err := b.msg.Ack(); err != nil {
		d.s.log.Warn("async: ack events", nimbus.LogFunction, d.name, nimbus.LogErr, err)
	}
}

// heartbeat keeps a batch in progress while its events run.
func (d *dispatcher) heartbeat(ctx context.Context, m jetstream.Msg) {
	t := time.NewTicker(d.s.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = m.InProgress()
		}
	}
}
