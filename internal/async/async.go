// Package async is Nimbus's Async Service: asynchronous invocations are
// stored durably in JetStream, then dispatched to the engine per function
// within concurrency and rate limits, retried with back-off, expired after
// their maximum age, and their outcome sent to destinations; every one has a
// task record that can be read, listed and stopped, and events that failed
// for good are kept in a dead-letter list that can be re-driven.
//
// Storage (three JetStream streams, named after the store prefix):
//
//   - <prefix>_ASYNC (work queue), subject <p>.async.ev.<function>: events. One
//     message holds a batch of events: submits are committed in groups, so
//     that one fsync covers every submit that arrived meanwhile.
//   - <prefix>_TASKS (limits, max age = the retention), subject
//     <p>.async.task.<function>: task records, also in batches. Every node
//     reads the stream into an in-memory index that answers task queries.
//   - <prefix>_DLQ (limits), subject <p>.async.dlq.<function>: dead letters.
//
// With a prefix of "nimbus" the streams are nimbus_ASYNC, nimbus_TASKS and
// nimbus_DLQ.
//
// Each function has a durable pull consumer on <prefix>_ASYNC shared by every
// node, so nodes share the work. A batch message is acknowledged when each of
// its events has a durable outcome (a final task record, or a retry written
// back to the stream); while events run it is kept in progress, so a long
// invocation is not redelivered. After a crash the unacknowledged batches are
// delivered again and events whose task record is final are skipped:
// execution is at least once, and duplicates happen only for events that
// were running (or finished but not yet recorded) when a node died.
package async

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
)

// Functions looks functions up (the registry).
type Functions interface {
	// Get errors: nimbus.ErrNotFound.
	Get(ctx context.Context, name string) (*nimbus.Function, error)
	List(ctx context.Context) ([]*nimbus.Function, error)
}

// Invoker runs a function (the engine).
type Invoker interface {
	Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error)
}

// Outcome is what is sent to a destination.
type Outcome struct {
	Function  string
	Task      string
	Condition string // Success, RetriesExhausted, EventAgeExceeded, FunctionDeleted, Stopped
	Attempts  int
	Payload   []byte // the event
	Response  []byte // the function's result or error
	FuncError string // "Unhandled" when the function failed
}

// Destinations sends an outcome to a destination (see internal/destination).
type Destinations interface {
	Send(ctx context.Context, dest, secret string, o Outcome) error
}

// Config wires a Service.
type Config struct {
	JS     jetstream.JetStream
	NC     *nats.Conn
	Prefix string // store prefix, e.g. "nimbus"

	Functions    Functions
	Invoker      Invoker
	Destinations Destinations // nil: outcomes are only recorded

	// MaxPayload is the largest event (Lambda's: 1 MB).
	MaxPayload int
	// Retention is how long task records and dead letters are kept.
	Retention time.Duration
	// Concurrency is the most events running at once on this node, all
	// functions together; a function's own cap comes on top.
	Concurrency int
	// AckWait is how long a batch may go without a heartbeat before
	// JetStream delivers it again (to this or another node).
	AckWait time.Duration
	// RetryBase is the first retry's back-off (doubled per attempt, with
	// jitter, at most RetryMax).
	RetryBase, RetryMax time.Duration
	Now                 func() time.Time
	Logger              *slog.Logger
}

// Defaults.
const (
	DefaultMaxPayload  = 1 << 20
	DefaultRetention   = 24 * time.Hour
	DefaultConcurrency = 64
	DefaultAckWait     = 30 * time.Second
)

func (c *Config) validate() error {
	if c.JS == nil || c.NC == nil || c.Functions == nil || c.Invoker == nil {
		return errors.New("async: JS, NC, Functions and Invoker are required")
	}
	if c.Prefix == "" {
		c.Prefix = "nimbus"
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
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if limit := int(c.NC.MaxPayload()) - envelope; c.MaxPayload > limit {
		if limit < 64<<10 {
			return fmt.Errorf("async: the NATS server's max_payload (%d bytes) is too small for async events; raise it to at least %d", c.NC.MaxPayload(), c.MaxPayload+envelope)
		}
		c.Logger.Warn("async: events are limited by the NATS server's max_payload; raise it to allow the configured size",
			"max_payload", c.NC.MaxPayload(), "configured", c.MaxPayload, "effective", limit)
		c.MaxPayload = limit
	}
	return nil
}

// envelope is the room a message needs beyond an event's payload.
const envelope = 16 << 10

// Service is the Async Service of one node.
type Service struct {
	cfg   Config
	log   *slog.Logger
	names names
	idx   *index
	w     *writer
	slots chan struct{} // node-wide concurrency

	events jetstream.Stream
	dlq    jetstream.Stream

	mu          sync.Mutex
	dispatchers map[string]*dispatcher
	running     map[string]context.CancelCauseFunc // by task key
	submitting  map[string]chan struct{}           // by task key, while a submit is stored

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// names are the streams' and subjects' names.
type names struct {
	events, tasks, dlq       string // streams
	evSubj, taskSubj, dlqSub string // subject prefixes, ending in "."
}

func newNames(prefix string) names {
	p := strings.ToLower(prefix)
	return names{
		events: prefix + "_ASYNC", tasks: prefix + "_TASKS", dlq: prefix + "_DLQ",
		evSubj: p + ".async.ev.", taskSubj: p + ".async.task.", dlqSub: p + ".async.dlq.",
	}
}

// Open creates the streams, loads the task index and starts dispatching.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, log: cfg.Logger, names: newNames(cfg.Prefix),
		slots:       make(chan struct{}, cfg.Concurrency),
		dispatchers: make(map[string]*dispatcher),
		running:     make(map[string]context.CancelCauseFunc),
		submitting:  make(map[string]chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.createStreams(ctx); err != nil {
		s.cancel()
		return nil, err
	}
	s.w = newWriter(cfg.JS, int(cfg.NC.MaxPayload())-envelope, cfg.Logger)
	s.idx = newIndex(cfg.Retention, cfg.Now)
	if err := s.loadIndex(ctx); err != nil {
		s.cancel()
		s.w.close()
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sweepLoop()
	}()
	if err := s.startDispatchers(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Service) createStreams(ctx context.Context) error {
	// Events wait at most the longest maximum event age, plus slack for
	// the last retry's back-off.
	evAge := nimbus.MaxEventAgeSeconds*time.Second + time.Hour
	cfgs := []jetstream.StreamConfig{
		{Name: s.names.events, Subjects: []string{s.names.evSubj + ">"}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, MaxAge: evAge, Discard: jetstream.DiscardOld,
			Description: "Nimbus async events (batches)"},
		{Name: s.names.tasks, Subjects: []string{s.names.taskSubj + ">"}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, MaxAge: s.cfg.Retention, Description: "Nimbus async task records (batches)"},
		{Name: s.names.dlq, Subjects: []string{s.names.dlqSub + ">"}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, MaxAge: s.cfg.Retention, Description: "Nimbus async dead letters"},
	}
	for i, c := range cfgs {
		st, err := s.cfg.JS.CreateOrUpdateStream(ctx, c)
		if err != nil {
			return fmt.Errorf("async: stream %s: %w", c.Name, err)
		}
		switch i {
		case 0:
			s.events = st
		case 2:
			s.dlq = st
		}
	}
	return nil
}

// Close stops dispatching; events in flight are not acknowledged, so they
// are delivered again later.
func (s *Service) Close() {
	s.cancel()
	s.mu.Lock()
	ds := make([]*dispatcher, 0, len(s.dispatchers))
	for _, d := range s.dispatchers {
		ds = append(ds, d)
	}
	s.mu.Unlock()
	for _, d := range ds {
		d.stop()
	}
	s.wg.Wait()
	s.w.close()
}

// taskKey names a task across functions.
func taskKey(fn, id string) string { return fn + "/" + id }

// sweepLoop drops expired task records from the index.
func (s *Service) sweepLoop() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.idx.sweep()
		}
	}
}
