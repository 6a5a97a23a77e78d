// Package async is Nimbus's Async Service: asynchronous invocations are
// stored durably, then run per function within concurrency and rate
// limits, retried with back-off, expired after their maximum age, and their
// outcome sent to destinations; every one has a task record that can be
// read, listed and stopped, and events that failed for good are kept as
// dead letters that can be re-driven.
//
// The package is the policy: what runs when, what an outcome means, what is
// recorded and sent where. Storage is a Backend (backend.go): a Queue of
// events shared by every node, the task Records and the dead Letters.
// internal/async/nats implements it on NATS JetStream (what a node runs);
// internal/async/mem in memory, for fast tests with a fake clock.
//
// Each node runs a scheduler: functions with events waiting take the
// node's slots in turn (so one function's backlog does not starve the
// others), a function claims its next queue message only when it has room
// (its caps), and a message is done when each of its events has a durable
// outcome (a final task record, or a retry put back in the queue). After a
// crash the messages that were claimed are claimed again and the events
// whose record is final are skipped: execution is at least once, and
// duplicates happen only for events that were running (or finished but not
// yet recorded) when a node died.
package async

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Functions looks functions up (the registry).
type Functions interface {
	// Get errors: nimbus.ErrNotFound.
	Get(ctx context.Context, name string) (*nimbus.Function, error)
}

// Invoker runs a function (the engine).
type Invoker interface {
	Invoke(ctx context.Context, fn *nimbus.Function, inv nimbus.Invocation) (nimbus.Result, error)
}

// Outcome is what is sent to a destination.
type Outcome struct {
	Function  string
	Task      string
	Condition string // Success, RetriesExhausted, EventAgeExceeded, FunctionDeleted
	Attempts  int
	Payload   []byte // the event
	Response  []byte // the function's result or error
	FuncError string // "Unhandled" when the function failed
	// Qualifier is the version or alias the event was sent to ("":
	// $LATEST), Executed the version that ran ("" when none did).
	Qualifier, Executed string
	// DeadLetter: send the event itself (Payload), as Lambda sends it to
	// a function's dead-letter target, rather than a destination record.
	DeadLetter bool
}

// Destinations sends an outcome to a destination (see internal/destination).
type Destinations interface {
	Send(ctx context.Context, dest, secret string, o Outcome) error
}

// Config wires a Service.
type Config struct {
	Backend   Backend
	Functions Functions
	// Resolve finds the version an event sent to a version or an alias
	// runs (registry.Resolve); nil: events run $LATEST only.
	Resolve      func(ctx context.Context, name, qualifier string) (*nimbus.Function, error)
	Invoker      Invoker
	Destinations Destinations // nil: outcomes are only recorded

	// MaxPayload is the largest event (Lambda's: 1 MB).
	MaxPayload int
	// Retention is how long task records and dead letters are kept (the
	// backend keeps them; the service names it in messages).
	Retention time.Duration
	// Concurrency is the most events running at once on this node, all
	// functions together; a function's own cap comes on top.
	Concurrency int
	// RetryBase is the first retry's back-off (doubled per attempt, with
	// jitter, at most RetryMax).
	RetryBase, RetryMax time.Duration
	// Rescan is how often the node asks the queue which functions have
	// events waiting, beyond the wake-ups: it finds the events of a node
	// that died once their claims lapse.
	Rescan time.Duration
	Clock  Clock
	// Metrics is told what the service does (nil: nothing).
	Metrics Metrics
	Logger  *slog.Logger
}

// Clock is the service's time: tests inject one they move by hand.
type Clock interface {
	Now() time.Time
	// After delivers the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Defaults.
const (
	DefaultMaxPayload  = 1 << 20
	DefaultRetention   = 24 * time.Hour
	DefaultConcurrency = 64
	DefaultRescan      = 10 * time.Second
)

func (c *Config) validate() error {
	if c.Backend == nil || c.Functions == nil || c.Invoker == nil {
		return errors.New("async: Backend, Functions and Invoker are required")
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.Rescan <= 0 {
		c.Rescan = DefaultRescan
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	return nil
}

// Service is the Async Service of one node.
type Service struct {
	cfg Config
	log *slog.Logger
	q   Backend
	sch *scheduler

	mu         sync.Mutex
	running    map[string]context.CancelCauseFunc // by task key
	submitting map[string]chan struct{}           // by task key, while a submit is stored
	// executing holds the events that run on this node, by task key and
	// attempt: another copy of one (a submit with the same task id stores
	// the event again while the task is Enqueued) is skipped while it runs,
	// and its final record makes later copies skip (execute).
	executing map[string]struct{}

	// ctx ends when the service stops taking work; runCtx when the events
	// still running are cancelled (the end of Close's grace).
	ctx       context.Context
	cancel    context.CancelFunc
	runCtx    context.Context
	cancelRun context.CancelFunc
	wg        sync.WaitGroup
}

// Open starts the service on cfg.Backend: it looks for the functions with
// events waiting and starts running them.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger, q: cfg.Backend,
		running: make(map[string]context.CancelCauseFunc), submitting: make(map[string]chan struct{}), executing: make(map[string]struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.runCtx, s.cancelRun = context.WithCancel(context.Background())
	s.sch = newScheduler(s)
	fns, err := s.q.Pending(ctx)
	if err != nil {
		s.cancel()
		s.cancelRun()
		return nil, fmt.Errorf("async: %w", err)
	}
	for _, fn := range fns {
		s.sch.wake(fn)
	}
	s.goLoop(s.sch.run)
	s.goLoop(s.stopLoop)
	s.goLoop(s.rescanLoop)
	return s, nil
}

// goLoop runs f until the service stops; Close waits for it.
func (s *Service) goLoop(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Close stops taking work, hands back at once the events claimed that have
// not started (another node runs them now, not once the running ones are
// done), lets the events running finish until ctx ends, cancels the rest
// (their messages are handed back, to run again here or on another node)
// and waits for every goroutine of the service. It does not close the
// backend, which the caller opened. Calling it again is harmless.
func (s *Service) Close(ctx context.Context) error {
	s.cancel()
	s.sch.abandonReady()
	drained := make(chan struct{})
	go func() {
		s.sch.waitIdle()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
	}
	s.cancelRun()
	s.sch.abandonReady()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("async: close: events still running after they were cancelled")
	}
}

// Refresh is called when a function changes or is deleted: its limits may
// let more of its events run now.
func (s *Service) Refresh(name string) { s.sch.refresh(name) }

// stopLoop cancels the tasks any node asked to stop that run here.
func (s *Service) stopLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case key := <-s.q.Stops():
			s.stopLocal(key)
		}
	}
}

// rescanLoop asks the queue now and then which functions have events
// waiting: a wake-up can be lost, and a dead node's claims lapse.
func (s *Service) rescanLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.cfg.Clock.After(s.cfg.Rescan):
		}
		fns, err := s.q.Pending(s.ctx)
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("async: list functions with events waiting", nimbus.LogErr, err)
			}
			continue
		}
		for _, fn := range fns {
			s.sch.wake(fn)
		}
	}
}

// task returns a task's record; false when there is none (or it cannot be
// read).
func (s *Service) task(fn, id string) (nimbus.Task, bool) {
	t, err := s.q.Task(s.runCtx, fn, id)
	if err != nil {
		if !errors.Is(err, nimbus.ErrNotFound) {
			s.log.Warn("async: read a task record", nimbus.LogFunction, fn, nimbus.LogTask, id, nimbus.LogErr, err)
		}
		return nimbus.Task{}, false
	}
	return t, true
}
