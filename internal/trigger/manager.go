package trigger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// FunctionLister lists and looks up functions (the registry).
type FunctionLister interface {
	Functions
	List(ctx context.Context) ([]*nimbus.Function, error)
}

// ManagerConfig wires a Manager.
type ManagerConfig struct {
	Functions FunctionLister
	Invoker   Invoker
	// Failures sends messages that failed for good to failure
	// destinations; nil refuses triggers' failure destinations at delivery.
	Failures FailureSender
	// Types are the trigger types this node runs, by name.
	Types map[string]Factory
	// Named are trigger types whose Sources need to know their function
	// and trigger (a timer's tick claims, the object-storage receiver's
	// routes): their factory is made per trigger. A type is in Types or
	// in Named.
	Named map[string]NamedFactory
	// Concurrency is a trigger's batches in flight when it sets none
	// (default 10).
	Concurrency int
	Logger      *slog.Logger
	// Restart spaces a failed source's restarts (default RestartBackoff);
	// a source that ran for StableAfter (default a minute) before failing
	// starts the schedule over.
	Restart     Backoff
	StableAfter time.Duration
	// Retry, Throttle, Sleep and Now are passed to each trigger's Sink;
	// Sleep also spaces restarts.
	Retry, Throttle Backoff
	Sleep           func(ctx context.Context, d time.Duration) error
	Now             func() time.Time
	// Counts keeps the triggers' counts (delivered, failed, last event,
	// last error) in the store, added up across nodes and kept across
	// restarts; nil keeps them in this process only. FlushEvery is how
	// often this node adds its counts to it (default DefaultFlushEvery).
	Counts     *CountStore
	FlushEvery time.Duration
	// Metrics is passed to each trigger's Sink (nil: nothing is told).
	Metrics Metrics
	// ChangeRetry spaces the lookups of a function whose change could not
	// be read (default a second); the Manager tries changeRetries times.
	ChangeRetry time.Duration
}

// changeRetries bounds the lookups of a function whose change could not be
// read: a minute at the default ChangeRetry.
const changeRetries = 60

// NamedFactory makes the Factory of one trigger of one function.
type NamedFactory func(function, trigger string) Factory

// Validator returns a Factory that only validates configs (for the
// registry): nf's factory for placeholder names, whose Source is unused.
func (nf NamedFactory) Validator() Factory {
	return func(config json.RawMessage) (Source, error) { return nf("validate", "validate")(config) }
}

// DefaultConcurrency is a trigger's batches in flight when neither it nor
// the node sets a number.
const DefaultConcurrency = 10

// Manager runs the triggers of every function on this node: one goroutine
// per enabled trigger with a Source, started, restarted on a change and
// stopped as the registry says, and restarted with back-off when its source
// fails or panics. It keeps each trigger's Status.
type Manager struct {
	cfg ManagerConfig
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	open   bool
	closed bool
	runs   map[runKey]*run
	// byFunction names the triggers in runs of each function, so that a
	// change of one function costs its triggers, not all of them.
	byFunction map[string]map[string]bool
	// leaving are deleted triggers whose broker state is being forgotten;
	// a trigger created again under the same name waits for that.
	leaving map[runKey]*run
	// retrying are functions whose change could not be read and will be
	// looked up again.
	retrying map[string]bool

	// flushMu orders flushes of the counts and deletions of a trigger's
	// counts (manager_counts.go); cmu guards counts, the stored and
	// unflushed counts by key. Neither is held with mu.
	flushMu      sync.Mutex
	flushFailing bool // the last flush failed (under flushMu)
	cmu          sync.Mutex
	counts       map[string]*countState
}

type runKey struct{ function, trigger string }

// run is one trigger as this node runs it.
type run struct {
	trigger     nimbus.Trigger
	fingerprint string
	// status is the state: the Manager's (connecting, error, disabled)
	// and the source's (connected, error, lag); counts are the Sink's
	// (delivered, failed, last event), kept across restarts. Sources may
	// count deliveries into their Options.Status too: those counts are
	// not shown, as only the Sink knows which messages succeeded.
	status *Status
	counts *Status
	sink   *Deliverer // nil while disabled
	cancel context.CancelFunc
	done   chan struct{} // closed when its goroutine ended
	gone   chan struct{} // closed once a deleted trigger's state is forgotten
}

// NewManager returns a Manager; Open starts it and Close stops it.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Restart == (Backoff{}) {
		cfg.Restart = RestartBackoff
	}
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = time.Minute
	}
	if cfg.Sleep == nil {
		cfg.Sleep = Sleep
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = DefaultFlushEvery
	}
	if cfg.ChangeRetry <= 0 {
		cfg.ChangeRetry = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, runs: make(map[runKey]*run),
		byFunction: make(map[string]map[string]bool), leaving: make(map[runKey]*run),
		retrying: make(map[string]bool), counts: make(map[string]*countState)}
}

// Open starts the triggers of every function. Changes reported before Open
// are covered by it; register Changed with the registry before calling it.
func (m *Manager) Open(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("trigger manager closed")
	}
	m.open = true // from now on changes apply; none is missed
	m.mu.Unlock()
	if m.cfg.Counts != nil {
		m.wg.Go(m.flushLoop)
	}
	fns, err := m.cfg.Functions.List(ctx)
	if err != nil {
		return fmt.Errorf("list functions: %w", err)
	}
	for _, fn := range fns {
		m.Changed(fn.Name) // reads it again: a change may have come meanwhile
	}
	return nil
}

// Changed brings the triggers of the named function in line with the
// registry: it starts new and enabled ones, restarts changed ones and stops
// disabled and deleted ones (all of them when the function is gone). It
// does not wait for sources to stop, so it may be called from the
// registry's change notifications. A function that could not be read (not
// "not found": the store out of reach for a moment) is not taken for
// deleted: it is looked up again every ChangeRetry until it is read.
func (m *Manager) Changed(name string) { m.changed(name, 0) }

// changed is Changed's lookup number attempt+1 of a function.
func (m *Manager) changed(name string, attempt int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if attempt > 0 {
		delete(m.retrying, name) // this is the retry
	}
	if !m.open || m.closed {
		return
	}
	// Looked up under the lock: the registry's view only moves forward,
	// so the last caller applies the newest one.
	fn, err := m.cfg.Functions.Get(m.ctx, name)
	if err != nil && !errors.Is(err, nimbus.ErrNotFound) {
		switch {
		case m.retrying[name]: // a retry is already waiting
		case attempt >= changeRetries:
			m.log.Error("trigger: look up function: its triggers stay as they were until its next change",
				nimbus.LogFunction, name, nimbus.LogErr, err)
		default:
			if attempt == 0 {
				m.log.Warn("trigger: look up function: trying again", nimbus.LogFunction, name, nimbus.LogErr, err)
			}
			m.retrying[name] = true
			m.wg.Go(func() {
				select {
				case <-m.ctx.Done():
				case <-time.After(m.cfg.ChangeRetry):
					m.changed(name, attempt+1)
				}
			})
		}
		return
	}
	m.syncLocked(name, fn)
}

// syncLocked makes the runs of function name match fn (nil: deleted).
func (m *Manager) syncLocked(name string, fn *nimbus.Function) {
	want := make(map[string]nimbus.Trigger)
	if fn != nil {
		for _, t := range fn.Triggers {
			want[t.Name] = t
		}
	}
	for tn := range m.byFunction[name] {
		k := runKey{name, tn}
		r := m.runs[k]
		if t, ok := want[tn]; !ok || fingerprint(t) != r.fingerprint {
			r.stop()
			if !ok {
				m.removeLocked(k)
				m.forgetLocked(k, r)
			}
		}
	}
	for _, t := range want {
		k := runKey{name, t.Name}
		prev := m.runs[k]
		if prev != nil && prev.fingerprint == fingerprint(t) {
			continue
		}
		after := m.leaving[k] // deleted and created again: a new trigger
		if prev != nil {
			after = prev
		}
		m.addLocked(k, m.start(name, t, prev, after))
	}
}

func (m *Manager) addLocked(k runKey, r *run) {
	m.runs[k] = r
	if m.byFunction[k.function] == nil {
		m.byFunction[k.function] = make(map[string]bool)
	}
	m.byFunction[k.function][k.trigger] = true
}

func (m *Manager) removeLocked(k runKey) {
	delete(m.runs, k)
	delete(m.byFunction[k.function], k.trigger)
	if len(m.byFunction[k.function]) == 0 {
		delete(m.byFunction, k.function)
	}
}

// forgetTimeout bounds the removal of a deleted trigger's broker state.
const forgetTimeout = 30 * time.Second

// forgetLocked removes the broker state of deleted trigger r once its
// source has stopped, when its Source is a Forgetter. Failures are logged:
// the trigger is gone either way.
func (m *Manager) forgetLocked(k runKey, r *run) {
	r.gone = make(chan struct{})
	m.leaving[k] = r
	m.wg.Go(func() {
		defer func() {
			m.mu.Lock()
			if m.leaving[k] == r {
				delete(m.leaving, k)
			}
			m.mu.Unlock()
			close(r.gone)
		}()
		<-r.done
		m.forgetCounts(m.ctx, k.function, &r.trigger)
		src, err := m.source(k.function, r.trigger)
		f, ok := src.(Forgetter)
		if err != nil || !ok {
			return
		}
		ctx, cancel := context.WithTimeout(m.ctx, forgetTimeout)
		defer cancel()
		log := m.log.With(nimbus.LogFunction, k.function, nimbus.LogTrigger, k.trigger, "type", r.trigger.Type)
		if err := m.forget(ctx, f, m.options(k.function, r)); err != nil {
			log.Warn("trigger: deleted, but its state on the broker could not be removed", nimbus.LogErr, RedactText(err.Error()))
			return
		}
		log.Info("trigger: deleted; its state on the broker is removed")
	})
}

// forget calls f.Forget, turning a panic into an error.
func (m *Manager) forget(ctx context.Context, f Forgetter, opts Options) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("forget panicked: %v", p)
		}
	}()
	return f.Forget(ctx, opts)
}

// fingerprint is what, when changed, makes a trigger restart: everything
// but its timestamps.
func fingerprint(t nimbus.Trigger) string {
	t.Created, t.LastModified = time.Time{}, time.Time{}
	b, _ := json.Marshal(t)
	return string(b)
}

func (r *run) stop() {
	if r.cancel != nil {
		r.cancel()
	}
}

// start begins running t once after (if any) has stopped, or, when after
// is a deleted trigger, once its state is forgotten; the Status (and its
// counts) carries over from prev, the same trigger's previous run.
func (m *Manager) start(function string, t nimbus.Trigger, prev, after *run) *run {
	st, counts := NewStatus(), NewStatus()
	if prev != nil {
		counts = prev.counts
	}
	r := &run{trigger: t, fingerprint: fingerprint(t), status: st, counts: counts, done: make(chan struct{})}
	if !t.Enabled {
		st.SetState(StateDisabled, "")
		close(r.done)
		return r
	}
	r.sink = m.newSink(function, t, counts, nil)
	ctx, cancel := context.WithCancel(m.ctx)
	r.cancel = cancel
	var prevDone <-chan struct{}
	switch {
	case after != nil && after.gone != nil:
		prevDone = after.gone
	case after != nil:
		prevDone = after.done
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(r.done)
		if prevDone != nil {
			select {
			case <-prevDone:
			case <-ctx.Done():
				return
			}
		}
		m.supervise(ctx, function, r)
	}()
	return r
}

func (m *Manager) newSink(function string, t nimbus.Trigger, st *Status, dl DeadLetterer) *Deliverer {
	return NewSink(SinkConfig{
		Function: function, Trigger: t, Functions: m.cfg.Functions, Invoker: m.cfg.Invoker,
		Failures: m.cfg.Failures, DeadLetter: dl, Status: st, Logger: m.log,
		Retry: m.cfg.Retry, Throttle: m.cfg.Throttle, Sleep: m.cfg.Sleep, Now: m.cfg.Now, Metrics: m.cfg.Metrics,
	})
}

// supervise runs a trigger's source until ctx ends, restarting it with
// back-off when it fails.
func (m *Manager) supervise(ctx context.Context, function string, r *run) {
	t := r.trigger
	log := m.log.With(nimbus.LogFunction, function, nimbus.LogTrigger, t.Name, "type", t.Type)
	for failures := 0; ctx.Err() == nil; failures++ {
		r.status.SetState(StateConnecting, "")
		started := m.cfg.Now()
		src, err := m.source(function, t)
		if err == nil && src == nil {
			r.status.Connected() // push-type: nothing to run
			return
		}
		if err == nil {
			err = m.runSource(ctx, function, r, src)
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errConfig) {
			r.status.Error(err)
			log.Warn("trigger: configuration refused", nimbus.LogErr, RedactText(err.Error()))
			return // waits for a change
		}
		if err == nil {
			err = errors.New("the source stopped by itself")
		}
		r.status.Error(err)
		if m.cfg.Now().Sub(started) >= m.cfg.StableAfter {
			failures = 0
		}
		delay := m.cfg.Restart.Delay(failures)
		log.Warn("trigger: source failed; restarting", nimbus.LogErr, RedactText(err.Error()), "delay", delay)
		if m.cfg.Sleep(ctx, delay) != nil {
			return
		}
	}
}

// errConfig marks a configuration that the factory refuses: retrying it
// cannot help.
var errConfig = errors.New("configuration refused")

// source builds t's Source (nil: a push-type trigger).
func (m *Manager) source(function string, t nimbus.Trigger) (src Source, err error) {
	f := m.cfg.Types[t.Type]
	if nf := m.cfg.Named[t.Type]; f == nil && nf != nil {
		f = nf(function, t.Name)
	}
	if f == nil {
		return nil, fmt.Errorf("%w: trigger type %q is not available on this node", errConfig, t.Type)
	}
	defer func() {
		if p := recover(); p != nil {
			src, err = nil, fmt.Errorf("the %s trigger's factory panicked: %v", t.Type, p)
			m.log.Error("trigger: factory panicked", "type", t.Type, "panic", RedactText(fmt.Sprint(p)), "stack", string(debug.Stack()))
		}
	}()
	src, err = f(t.Config)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errConfig, err)
	}
	return src, nil
}

// runSource runs src once, turning a panic into an error.
func (m *Manager) runSource(ctx context.Context, function string, r *run, src Source) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the %s source panicked: %v", r.trigger.Type, p)
			m.log.Error("trigger: source panicked", nimbus.LogFunction, function, nimbus.LogTrigger, r.trigger.Name,
				"panic", RedactText(fmt.Sprint(p)), "stack", string(debug.Stack()))
		}
	}()
	sink := r.sink
	if dl, ok := src.(DeadLetterer); ok {
		sink = m.newSink(function, r.trigger, r.counts, dl)
	}
	return src.Run(ctx, sink, m.options(function, r))
}

// GroupName is the consumer group (queue group, durable, shared
// subscription) of a trigger: readable, and unique even though both names
// may contain "-" (a short hash of the pair tells "a-b"/"c" from "a"/"b-c").
func GroupName(function, trigger string) string {
	sum := sha256.Sum256([]byte(function + "/" + trigger))
	return "nimbus-" + function + "-" + trigger + "-" + hex.EncodeToString(sum[:4])
}

func (m *Manager) options(function string, r *run) Options {
	t := r.trigger
	conc := t.Concurrency
	if conc <= 0 {
		conc = m.cfg.Concurrency
	}
	return Options{
		BatchSize:   max(t.BatchSize, 1),
		BatchWindow: t.BatchWindow,
		Concurrency: conc,
		Group:       GroupName(function, t.Name),
		Status:      r.status,
		Logger:      m.log.With(nimbus.LogFunction, function, nimbus.LogTrigger, t.Name),
	}
}

// Status returns the live status of a trigger on this node. A trigger the
// Manager has not started yet shows as Disabled or Connecting.
func (m *Manager) Status(function string, t *nimbus.Trigger) StatusView {
	m.mu.Lock()
	r := m.runs[runKey{function, t.Name}]
	m.mu.Unlock()
	var v StatusView
	var live *Status
	switch {
	case r != nil && r.fingerprint == fingerprint(*t):
		v = r.status.View()
	case !t.Enabled:
		v = StatusView{State: StateDisabled}
	default:
		v = StatusView{State: StateConnecting}
	}
	if r != nil {
		live = r.counts
	}
	v.setCounts(m.countsOf(function, t, live))
	return v
}

// Sink returns the Sink of an enabled trigger, for push-type triggers
// (HTTP, object storage) whose events arrive at the API rather than from a
// Source. ok is false when the trigger does not exist or is disabled.
func (m *Manager) Sink(function, trigger string) (sink *Deliverer, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.runs[runKey{function, trigger}]
	if r == nil || r.sink == nil {
		return nil, false
	}
	return r.sink, true
}

// Count adds one event of a push-type trigger that is answered
// synchronously (a function URL call) to its counts: delivered when the
// function ran and answered, failed otherwise. Unknown triggers are ignored.
func (m *Manager) Count(function, trigger string, delivered bool) {
	m.mu.Lock()
	r := m.runs[runKey{function, trigger}]
	m.mu.Unlock()
	switch {
	case r == nil:
	case delivered:
		r.counts.Delivered(1, m.cfg.Now())
	default:
		r.counts.Failed(1)
	}
}

// Close stops every trigger and waits until every goroutine the Manager
// started has ended: the sources have returned (messages in flight are not
// acknowledged, so they are delivered again) and the removal of deleted
// triggers' broker state has ended (it is cut short). It returns ctx's
// error when ctx ends first; the sources then go on stopping in the
// background. Then it adds the last counts to the store. Changes after
// Close are ignored, and Open fails.
func (m *Manager) Close(ctx context.Context) (err error) {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("close trigger manager: sources still stopping: %w", ctx.Err())
	}
	if m.cfg.Counts != nil {
		// The last counts, even when ctx has ended: a flush is short.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), countsTimeout)
		m.flush(fctx)
		cancel()
	}
	return err
}
