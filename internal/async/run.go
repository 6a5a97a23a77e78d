package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Destination conditions (Lambda's, and Nimbus's own).
const (
	CondSuccess          = "Success"
	CondRetriesExhausted = "RetriesExhausted"
	CondEventAgeExceeded = "EventAgeExceeded"
	CondFunctionDeleted  = "FunctionDeleted"
	// CondRecursiveLoop: the function ran in a recursive loop past its
	// limit (internal/recursion); the event is not retried.
	CondRecursiveLoop = "RecursiveInvocationException"
)

// previewLen bounds the result and error kept in a task record.
const previewLen = 256

var errStopped = errors.New("stopped by request")

// function returns fn's configuration, nil when it is gone.
func (s *Service) function(name string) *nimbus.Function {
	fn, err := s.cfg.Functions.Get(s.runCtx, name)
	if err != nil {
		return nil
	}
	return fn
}

// limit is how many of the function's events may run at once on this node.
// A deleted function's events run at the node's concurrency (to fail).
// Flow control is the function's queue's, which the events of every
// version and alias share: it is set on the function's own configuration.
func (s *Service) limit(name string) int {
	n := s.cfg.Concurrency
	fn := s.function(name)
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

// execute runs one event to a durable outcome and reports whether it got
// one (false: the node is stopping or the store failed; the event will be
// run again). It calls release once the function has run.
func (s *Service) execute(ev *Event, release func()) bool {
	attemptKey := TaskKey(ev.Function, ev.ID) + "#" + strconv.Itoa(ev.Attempts)
	s.mu.Lock()
	if _, dup := s.executing[attemptKey]; dup {
		s.mu.Unlock()
		return true // another copy of this attempt runs here now, and records it
	}
	s.executing[attemptKey] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.executing, attemptKey)
		s.mu.Unlock()
	}()
	if t, ok := s.task(ev.Function, ev.ID); ok && !t.Created.Before(ev.Created) {
		switch {
		case t.Created.After(ev.Created):
			return true // an earlier life's event, delivered again after a re-drive
		case nimbus.TaskFinal(t.Status), superseded(t, ev):
			return true // run again after it finished or was retried
		case t.Status == nimbus.TaskStopping:
			return s.finish(ev, nimbus.TaskStopped, errStopped.Error(), 0)
		}
	}
	fn, err := s.cfg.Functions.Get(s.runCtx, ev.Function)
	if errors.Is(err, nimbus.ErrNotFound) {
		return s.fail(ev, nil, CondFunctionDeleted,
			fmt.Sprintf("function %s was deleted before the event ran", ev.Function), ev.Attempts, 0)
	}
	if err != nil {
		return false
	}
	if s.cfg.Clock.Now().Sub(ev.Created) > eventInvoke(fn, ev).MaxAge() {
		return s.fail(ev, fn, CondEventAgeExceeded, "the event is older than its maximum age", ev.Attempts, 0)
	}
	run := fn
	if ev.Qualifier != "" { // a version, or the one the alias routes it to now
		if run, err = s.cfg.Resolve(s.runCtx, ev.Function, ev.Qualifier); errors.Is(err, nimbus.ErrNotFound) {
			return s.fail(ev, fn, CondFunctionDeleted,
				fmt.Sprintf("version or alias %s of function %s was deleted before the event ran", ev.Qualifier, ev.Function), ev.Attempts, 0)
		}
		if err != nil {
			return false
		}
	}
	return s.attempt(ev, fn, run, release)
}

// superseded reports whether the task record shows a later attempt than the
// one this event starts: its retry was stored already.
func superseded(t nimbus.Task, ev *Event) bool {
	return t.Attempts > ev.Attempts+1 || (t.Attempts == ev.Attempts+1 && t.Status == nimbus.TaskRetrying)
}

// attempt invokes the function once (waiting out throttles) and records
// what came of it.
// fn is the function (its settings: retries, destinations, those of the
// event's qualifier), run what runs (fn, or a version of it).
func (s *Service) attempt(ev *Event, fn, run *nimbus.Function, release func()) bool {
	attempts := ev.Attempts + 1
	now := s.cfg.Clock.Now().UTC()
	s.cfg.Metrics.Started(ev.Function, now.Sub(ev.Created))
	s.q.RecordLater(&nimbus.Task{ID: ev.ID, Function: ev.Function, Status: nimbus.TaskRunning, Attempts: attempts,
		Created: ev.Created, Started: now, Updated: now})
	ev.executed = run.Qualifier()
	res, err, elapsed := s.invoke(ev, run)
	release()
	switch {
	case errors.Is(err, errStopped):
		return s.finish(ev, nimbus.TaskStopped, errStopped.Error(), attempts)
	case s.runCtx.Err() != nil:
		return false // shutting down: the event runs again elsewhere or later
	case errors.Is(err, nimbus.ErrRecursive):
		return s.fail(ev, fn, CondRecursiveLoop, err.Error(), attempts, elapsed)
	case err != nil:
		return s.failed(ev, fn, attempts, "Nimbus could not run the function: "+err.Error(), elapsed)
	case res.Err != nil:
		b, _ := json.Marshal(res.Err)
		return s.failed(ev, fn, attempts, string(b), elapsed)
	}
	return s.succeeded(ev, fn, attempts, res.Payload, elapsed)
}

// invoke calls the engine, retrying throttles (not the function's fault)
// with back-off; a stop request cancels it with errStopped.
func (s *Service) invoke(ev *Event, fn *nimbus.Function) (nimbus.Result, error, time.Duration) {
	key := TaskKey(ev.Function, ev.ID)
	ctx, cancel := context.WithCancelCause(s.runCtx)
	defer cancel(nil)
	s.mu.Lock()
	s.running[key] = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, key)
		s.mu.Unlock()
	}()
	if t, ok := s.task(ev.Function, ev.ID); ok && t.Created.Equal(ev.Created) && (t.Status == nimbus.TaskStopping || t.Status == nimbus.TaskStopped) {
		return nimbus.Result{}, errStopped, 0 // asked to stop while starting
	}
	b := newBackoff(50*time.Millisecond, 2*time.Second)
	for {
		start := time.Now()
		res, err := s.cfg.Invoker.Invoke(ctx, fn, nimbus.Invocation{RequestID: ev.ID, Payload: ev.Payload, TraceID: ev.TraceID,
			Trigger: nimbus.TriggerAsync, TaskID: ev.ID, TraceLinks: traceLinks(ev)})
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

func (s *Service) succeeded(ev *Event, fn *nimbus.Function, attempts int, out []byte, elapsed time.Duration) bool {
	t := s.taskRecord(ev, nimbus.TaskSucceeded, attempts, elapsed)
	t.Result = truncate(string(out), previewLen)
	if c := eventInvoke(fn, ev); c != nil && c.OnSuccess != "" {
		s.deliver(t, c.OnSuccess, c.DestinationSecret, Outcome{Condition: CondSuccess, Payload: ev.Payload, Response: out,
			Qualifier: ev.Qualifier, Executed: ev.executed}, DestOnSuccess)
	}
	return s.durably("store the outcome", ev, func(ctx context.Context) error {
		return s.q.Record(ctx, []*nimbus.Task{t})
	})
}

// failed handles a failed attempt: a retry after back-off while attempts and
// age allow, else the failure path.
func (s *Service) failed(ev *Event, fn *nimbus.Function, attempts int, reason string, elapsed time.Duration) bool {
	c := eventInvoke(fn, ev)
	if attempts > c.Retries() {
		return s.fail(ev, fn, CondRetriesExhausted, reason, attempts, elapsed)
	}
	next := s.cfg.Clock.Now().Add(retryDelay(s.cfg.RetryBase, s.cfg.RetryMax, attempts))
	if next.Sub(ev.Created) > c.MaxAge() {
		return s.fail(ev, fn, CondEventAgeExceeded, "no retry within the event's maximum age; last error: "+reason, attempts, elapsed)
	}
	t := s.taskRecord(ev, nimbus.TaskRetrying, attempts, elapsed)
	t.Error = truncate(reason, previewLen)
	retry := *ev
	retry.Attempts, retry.NotBefore = attempts, next.UTC()
	// The retry's event before its record: a Retrying record makes this
	// attempt's message skipped when it runs again (superseded), so it
	// must not be stored without the retry's event, which a failed write
	// of the two at once could do. A retry stored twice (its record's
	// write failed once) is skipped when it comes after the first has
	// finished or been retried, and runs twice if both start together.
	if !s.durably("store a retry", ev, func(ctx context.Context) error {
		if err := s.q.Put(ctx, nil, []*Event{&retry}); err != nil {
			return err
		}
		return s.q.Put(ctx, []*nimbus.Task{t}, nil)
	}) {
		return false
	}
	s.cfg.Metrics.Retried(ev.Function)
	return true
}

// fail ends an event for good: a dead letter, the failure destination and
// the dead-letter target, and a final record (Expired for an event past its
// age, Failed otherwise). fn is nil for a deleted function.
func (s *Service) fail(ev *Event, fn *nimbus.Function, cond, reason string, attempts int, elapsed time.Duration) bool {
	status := nimbus.TaskFailed
	if cond == CondEventAgeExceeded {
		status = nimbus.TaskExpired
	}
	dl := &nimbus.DeadLetter{TaskID: ev.ID, Function: ev.Function, Condition: cond, Reason: reason,
		Attempts: attempts, Created: ev.Created, Failed: s.cfg.Clock.Now().UTC(), Payload: ev.Payload}
	if !s.durably("store a dead letter", ev, func(ctx context.Context) error { return s.q.Bury(ctx, dl) }) {
		return false
	}
	s.cfg.Metrics.DeadLettered(ev.Function)
	t := s.taskRecord(ev, status, attempts, elapsed)
	t.Error = truncate(reason, previewLen)
	if c := eventInvoke(fn, ev); c != nil && c.OnFailure != "" {
		s.deliver(t, c.OnFailure, c.DestinationSecret, Outcome{Condition: cond, Payload: ev.Payload,
			Response: []byte(reason), FuncError: "Unhandled", Qualifier: ev.Qualifier, Executed: ev.executed}, DestOnFailure)
	}
	if fn != nil && fn.DeadLetterTarget != "" {
		s.deadLetter(t, fn, cond, reason, ev)
	}
	if !s.durably("store the outcome", ev, func(ctx context.Context) error {
		return s.q.Record(ctx, []*nimbus.Task{t})
	}) {
		return false
	}
	s.cfg.Metrics.Failed(ev.Function, cond, t.DestinationStatus == "Delivered")
	return true
}

// deadLetter sends a failed event to the function's dead-letter target
// (Lambda's DeadLetterConfig), noting how that went in the record when no
// destination took that place.
func (s *Service) deadLetter(t *nimbus.Task, fn *nimbus.Function, cond, reason string, ev *Event) {
	o := Outcome{Function: t.Function, Task: t.ID, Condition: cond, Attempts: t.Attempts, Payload: ev.Payload,
		Response: []byte(reason), FuncError: "Unhandled", DeadLetter: true, Qualifier: ev.Qualifier, Executed: ev.executed}
	secret := ""
	if c := eventInvoke(fn, ev); c != nil {
		secret = c.DestinationSecret // a webhook target is signed as destinations are
	}
	status := "Delivered"
	if err := s.send(fn.DeadLetterTarget, secret, o); err != nil {
		status = truncate("Failed: "+err.Error(), previewLen)
		s.cfg.Metrics.DestinationFailed(t.Function, DestDeadLetter)
	}
	if t.Destination == "" {
		t.Destination, t.DestinationStatus = fn.DeadLetterTarget, status
	}
}

// eventInvoke is the asynchronous invocation configuration ev follows:
// its qualifier's (nil when fn, a deleted function, is nil, or the
// qualifier has none).
func eventInvoke(fn *nimbus.Function, ev *Event) *nimbus.EventInvokeConfig {
	if fn == nil {
		return nil
	}
	return fn.EventInvokeFor(ev.Qualifier)
}

// finish writes a final record with no destination (a stop).
func (s *Service) finish(ev *Event, status, errMsg string, attempts int) bool {
	t := s.taskRecord(ev, status, attempts, 0)
	t.Error = errMsg
	return s.durably("store the outcome", ev, func(ctx context.Context) error {
		return s.q.Record(ctx, []*nimbus.Task{t})
	})
}

// durably runs a store write, trying again a few times with back-off when
// the store is unavailable; false when it never went through (the event's
// message is handed back and runs again).
func (s *Service) durably(op string, ev *Event, write func(context.Context) error) bool {
	b := newBackoff(200*time.Millisecond, 2*time.Second)
	var err error
	for range outcomeAttempts {
		if err = write(context.Background()); err == nil {
			return true
		}
		if !errors.Is(err, nimbus.ErrUnavailable) || !sleepCtx(s.runCtx, b.next()) {
			break
		}
	}
	s.log.Warn("async: "+op+"; the event will run again", nimbus.LogFunction, ev.Function, nimbus.LogTask, ev.ID, nimbus.LogErr, err)
	return false
}

// outcomeAttempts bounds how often an outcome write is tried.
const outcomeAttempts = 3

func (s *Service) taskRecord(ev *Event, status string, attempts int, elapsed time.Duration) *nimbus.Task {
	now := s.cfg.Clock.Now().UTC()
	t := &nimbus.Task{ID: ev.ID, Function: ev.Function, Status: status, Attempts: attempts,
		Created: ev.Created, Updated: now, DurationMs: float64(elapsed.Microseconds()) / 1000}
	if prev, ok := s.task(ev.Function, ev.ID); ok {
		t.Started = prev.Started
	}
	if nimbus.TaskFinal(status) {
		t.Finished = now
	}
	return t
}

// deliver sends an outcome to a destination and notes how it went in t.
func (s *Service) deliver(t *nimbus.Task, dest, secret string, o Outcome, kind string) {
	t.Destination = dest
	o.Function, o.Task, o.Attempts = t.Function, t.ID, t.Attempts
	if err := s.send(dest, secret, o); err != nil {
		t.DestinationStatus = truncate("Failed: "+err.Error(), previewLen)
		s.cfg.Metrics.DestinationFailed(t.Function, kind)
		s.log.Warn("async: destination", nimbus.LogFunction, t.Function, nimbus.LogTask, t.ID, "destination", dest, nimbus.LogErr, err)
		return
	}
	t.DestinationStatus = "Delivered"
}

func (s *Service) send(dest, secret string, o Outcome) error {
	if s.cfg.Destinations == nil {
		return errors.New("this node has no destination sender")
	}
	ctx, cancel := context.WithTimeout(s.runCtx, 2*time.Minute)
	defer cancel()
	return s.cfg.Destinations.Send(ctx, dest, secret, o)
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

// traceLinks is what the event's invocation links to: its submitter.
func traceLinks(ev *Event) []string {
	if ev.TraceParent == "" {
		return nil
	}
	return []string{ev.TraceParent}
}
