package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Destination conditions (Lambda's, and Nimbus's own).
const (
	CondSuccess          = "Success"
	CondRetriesExhausted = "RetriesExhausted"
	CondEventAgeExceeded = "EventAgeExceeded"
	CondFunctionDeleted  = "FunctionDeleted"
)

// previewLen bounds the result and error kept in a task record.
const previewLen = 256

var errStopped = errors.New("stopped by request")

// execute runs one event to a durable outcome and reports whether it got
// one (false: the node is stopping or the store failed; the event will be
// delivered again). It calls release once the function has run.
func (d *dispatcher) execute(ev *event, release func()) bool {
	s := d.s
	if t, ok := s.idx.get(ev.Function, ev.ID); ok && !t.Created.Before(ev.Created) {
		switch {
		case t.Created.After(ev.Created):
			return true // an earlier life's event, delivered again after a re-drive
		case nimbus.TaskFinal(t.Status), superseded(t, ev):
			return true // delivered again after it finished or was retried
		case t.Status == nimbus.TaskStopping:
			return d.finish(ev, nil, nimbus.TaskStopped, "", errStopped.Error(), 0)
		}
	}
	fn, err := s.cfg.Functions.Get(d.ctx, ev.Function)
	if errors.Is(err, nimbus.ErrNotFound) {
		return d.fail(ev, d.lastKnown(), CondFunctionDeleted,
			fmt.Sprintf("function %s was deleted before the event ran", ev.Function), ev.Attempts, 0)
	}
	if err != nil {
		return false
	}
	if s.cfg.Now().Sub(ev.Created) > fn.EventInvoke.MaxAge() {
		return d.fail(ev, fn, CondEventAgeExceeded, "the event is older than its maximum age", ev.Attempts, 0)
	}
	if lim := d.rateLimiter(fn); lim != nil {
		if err := lim.Wait(d.ctx); err != nil {
			return false
		}
	}
	return d.attempt(ev, fn, release)
}

// superseded reports whether the task record shows a later attempt than the
// one this event starts: its retry was stored already.
func superseded(t nimbus.Task, ev *event) bool {
	return t.Attempts > ev.Attempts+1 || (t.Attempts == ev.Attempts+1 && t.Status == nimbus.TaskRetrying)
}

// attempt invokes the function once (waiting out throttles) and records
// what came of it.
func (d *dispatcher) attempt(ev *event, fn *nimbus.Function, release func()) bool {
	s := d.s
	attempts := ev.Attempts + 1
	now := s.cfg.Now().UTC()
	s.record(&nimbus.Task{ID: ev.ID, Function: ev.Function, Status: nimbus.TaskRunning, Attempts: attempts,
		Created: ev.Created, Started: now, Updated: now})
	res, err, elapsed := d.invoke(ev, fn)
	release()
	switch {
	case errors.Is(err, errStopped):
		return d.finish(ev, fn, nimbus.TaskStopped, "", errStopped.Error(), attempts)
	case d.ctx.Err() != nil:
		return false // shutting down: the event runs again elsewhere or later
	case err != nil:
		return d.failed(ev, fn, attempts, "Nimbus could not run the function: "+err.Error(), elapsed)
	case res.Err != nil:
		b, _ := json.Marshal(res.Err)
		return d.failed(ev, fn, attempts, string(b), elapsed)
	}
	return d.succeeded(ev, fn, attempts, res.Payload, elapsed)
}

// invoke calls the engine, retrying throttles (not the function's fault)
// with back-off; a stop request cancels it with errStopped.
func (d *dispatcher) invoke(ev *event, fn *nimbus.Function) (nimbus.Result, error, time.Duration) {
	s := d.s
	key := taskKey(ev.Function, ev.ID)
	ctx, cancel := context.WithCancelCause(d.ctx)
	defer cancel(nil)
	s.mu.Lock()
	s.running[key] = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, key)
		s.mu.Unlock()
	}()
	if t, ok := s.idx.get(ev.Function, ev.ID); ok && t.Created.Equal(ev.Created) && (t.Status == nimbus.TaskStopping || t.Status == nimbus.TaskStopped) {
		return nimbus.Result{}, errStopped, 0 // asked to stop while starting
	}
	b := newBackoff(50*time.Millisecond, 2*time.Second)
	for {
		start := time.Now()
		res, err := s.cfg.Invoker.Invoke(ctx, fn, nimbus.Invocation{RequestID: ev.ID, Payload: ev.Payload, TraceID: ev.TraceID})
		elapsed := time.Since(start)
		if context.Cause(ctx) == errStopped {
			return res, errStopped, elapsed
		}
		if !errors.Is(err, nimbus.ErrThrottled) {
			return res, err, elapsed
		}
		if !sleepCtx(ctx, b.next()) {
			if context.Cause(ctx) == errStopped {
				return res, errStopped, 0
			}
			return res, ctx.Err(), 0
		}
	}
}

// stopLocal cancels the task's invocation if it runs on this node.
func (s *Service) stopLocal(key string) {
	s.mu.Lock()
	cancel := s.running[key]
	s.mu.Unlock()
	if cancel != nil {
		cancel(errStopped)
	}
}

func (d *dispatcher) succeeded(ev *event, fn *nimbus.Function, attempts int, out []byte, elapsed time.Duration) bool {
	t := d.task(ev, nimbus.TaskSucceeded, attempts, elapsed)
	t.Result = truncate(string(out), previewLen)
	if c := fn.EventInvoke; c != nil && c.OnSuccess != "" {
		d.deliver(t, c.OnSuccess, c.DestinationSecret, Outcome{Condition: CondSuccess, Payload: ev.Payload, Response: out})
	}
	return d.s.store(context.Background(), t, nil) == nil
}

// failed handles a failed attempt: a retry after back-off while attempts and
// age allow, else the failure path.
func (d *dispatcher) failed(ev *event, fn *nimbus.Function, attempts int, reason string, elapsed time.Duration) bool {
	s := d.s
	if attempts > fn.EventInvoke.Retries() {
		return d.fail(ev, fn, CondRetriesExhausted, reason, attempts, elapsed)
	}
	next := s.cfg.Now().Add(retryDelay(s.cfg.RetryBase, s.cfg.RetryMax, attempts))
	if next.Sub(ev.Created) > fn.EventInvoke.MaxAge() {
		return d.fail(ev, fn, CondEventAgeExceeded, "no retry within the event's maximum age; last error: "+reason, attempts, elapsed)
	}
	t := d.task(ev, nimbus.TaskRetrying, attempts, elapsed)
	t.Error = truncate(reason, previewLen)
	retry := *ev
	retry.Attempts, retry.NotBefore = attempts, next.UTC()
	return s.store(context.Background(), t, &retry) == nil
}

// fail ends an event for good: a dead letter, the failure destination, and
// a final record (Expired for an event past its age, Failed otherwise).
func (d *dispatcher) fail(ev *event, fn *nimbus.Function, cond, reason string, attempts int, elapsed time.Duration) bool {
	s := d.s
	status := nimbus.TaskFailed
	if cond == CondEventAgeExceeded {
		status = nimbus.TaskExpired
	}
	dl := &nimbus.DeadLetter{TaskID: ev.ID, Function: ev.Function, Condition: cond, Reason: reason,
		Attempts: attempts, Created: ev.Created, Failed: s.cfg.Now().UTC(), Payload: ev.Payload}
	if err := s.putDeadLetter(context.Background(), dl); err != nil {
		s.log.Warn("async: store dead letter", nimbus.LogFunction, ev.Function, nimbus.LogTask, ev.ID, nimbus.LogErr, err)
		return false
	}
	t := d.task(ev, status, attempts, elapsed)
	t.Error = truncate(reason, previewLen)
	if fn != nil && fn.EventInvoke != nil && fn.EventInvoke.OnFailure != "" {
		c := fn.EventInvoke
		d.deliver(t, c.OnFailure, c.DestinationSecret, Outcome{Condition: cond, Payload: ev.Payload,
			Response: []byte(reason), FuncError: "Unhandled"})
	}
	return s.store(context.Background(), t, nil) == nil
}

// finish writes a final record with no destination (a stop).
func (d *dispatcher) finish(ev *event, _ *nimbus.Function, status, result, errMsg string, attempts int) bool {
	t := d.task(ev, status, attempts, 0)
	t.Result, t.Error = result, errMsg
	return d.s.store(context.Background(), t, nil) == nil
}

func (d *dispatcher) task(ev *event, status string, attempts int, elapsed time.Duration) *nimbus.Task {
	now := d.s.cfg.Now().UTC()
	t := &nimbus.Task{ID: ev.ID, Function: ev.Function, Status: status, Attempts: attempts,
		Created: ev.Created, Updated: now, DurationMs: float64(elapsed.Microseconds()) / 1000}
	if prev, ok := d.s.idx.get(ev.Function, ev.ID); ok {
		t.Started = prev.Started
	}
	if nimbus.TaskFinal(status) {
		t.Finished = now
	}
	return t
}

// deliver sends an outcome to a destination and notes how it went in t.
func (d *dispatcher) deliver(t *nimbus.Task, dest, secret string, o Outcome) {
	t.Destination = dest
	if d.s.cfg.Destinations == nil {
		t.DestinationStatus = "Failed: this node has no destination sender"
		return
	}
	o.Function, o.Task, o.Attempts = t.Function, t.ID, t.Attempts
	ctx, cancel := context.WithTimeout(d.ctx, 2*time.Minute)
	defer cancel()
	if err := d.s.cfg.Destinations.Send(ctx, dest, secret, o); err != nil {
		t.DestinationStatus = truncate("Failed: "+err.Error(), previewLen)
		d.s.log.Warn("async: destination", nimbus.LogFunction, t.Function, nimbus.LogTask, t.ID, "destination", dest, nimbus.LogErr, err)
		return
	}
	t.DestinationStatus = "Delivered"
}

// retryDelay is exponential back-off with full jitter in [d/2, d].
func retryDelay(base, maxDelay time.Duration, attempt int) time.Duration {
	d := base << min(attempt-1, 20)
	if d > maxDelay || d <= 0 {
		d = maxDelay
	}
	return d/2 + rand.N(d/2+1)
}

// backoff is a simple exponential back-off for loops.
type backoff struct{ base, max, cur time.Duration }

func newBackoff(base, maxDelay time.Duration) *backoff { return &backoff{base: base, max: maxDelay} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.base
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
