package async_test

// Tests of the Async Service's policy against the in-memory backend with a
// fake clock: retries, ages, caps, fairness, stops, destinations and store
// failures, in milliseconds. async_test.go runs the service for real (a
// node, JetStream, real functions).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/async/mem"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
	c.mu.Unlock()
}

// functions is a fake registry.
type functions struct {
	mu  sync.Mutex
	fns map[string]*nimbus.Function
}

func (f *functions) Get(_ context.Context, name string) (*nimbus.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn := f.fns[name]
	if fn == nil {
		return nil, nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s", name)
	}
	return fn, nil
}

func (f *functions) put(fn *nimbus.Function) {
	f.mu.Lock()
	f.fns[fn.Name] = fn
	f.mu.Unlock()
}

func (f *functions) del(name string) {
	f.mu.Lock()
	delete(f.fns, name)
	f.mu.Unlock()
}

// invoker runs fake functions: a handler per function name.
type invoker struct {
	mu       sync.Mutex
	handlers map[string]func(ctx context.Context, payload []byte) (nimbus.Result, error)
	calls    map[string]int
	running  map[string]int
	peak     map[string]int
	order    []string // "fn:payload" in start order
}

func newInvoker() *invoker {
	return &invoker{handlers: map[string]func(context.Context, []byte) (nimbus.Result, error){},
		calls: map[string]int{}, running: map[string]int{}, peak: map[string]int{}}
}

func (v *invoker) Invoke(ctx context.Context, fn *nimbus.Function, inv nimbus.Invocation) (nimbus.Result, error) {
	v.mu.Lock()
	h := v.handlers[fn.Name]
	v.calls[fn.Name]++
	v.running[fn.Name]++
	v.peak[fn.Name] = max(v.peak[fn.Name], v.running[fn.Name])
	v.order = append(v.order, fn.Name+":"+string(inv.Payload))
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.running[fn.Name]--
		v.mu.Unlock()
	}()
	if h == nil {
		return nimbus.Result{Payload: []byte(`"ok"`)}, nil
	}
	return h(ctx, inv.Payload)
}

func (v *invoker) handle(fn string, h func(ctx context.Context, payload []byte) (nimbus.Result, error)) {
	v.mu.Lock()
	v.handlers[fn] = h
	v.mu.Unlock()
}

func (v *invoker) stats(fn string) (calls, peak int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls[fn], v.peak[fn]
}

// sent records destination deliveries.
type sent struct {
	mu  sync.Mutex
	out []string // "dest condition deadletter payload"
	err error
}

func (d *sent) Send(_ context.Context, dest, _ string, o async.Outcome) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.out = append(d.out, fmt.Sprintf("%s %s %v %s", dest, o.Condition, o.DeadLetter, o.Payload))
	return d.err
}

func (d *sent) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.out...)
}

// harness is a service on a memory store.
type harness struct {
	t     *testing.T
	clock *fakeClock
	store *mem.Store
	fns   *functions
	inv   *invoker
	dest  *sent
	svc   *async.Service
	node  *mem.Node
}

func newHarness(t *testing.T, mod func(*async.Config)) *harness {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	h := &harness{t: t, clock: newClock(), fns: &functions{fns: map[string]*nimbus.Function{}},
		inv: newInvoker(), dest: &sent{}}
	h.store = mem.New(h.clock.Now, 30*time.Second)
	h.svc, h.node = h.open(mod)
	return h
}

// open starts a service (a node) on the harness's store.
func (h *harness) open(mod func(*async.Config)) (*async.Service, *mem.Node) {
	h.t.Helper()
	node := h.store.Node()
	cfg := async.Config{Backend: node, Functions: h.fns, Invoker: h.inv, Destinations: h.dest,
		Concurrency: 8, RetryBase: time.Second, Clock: h.clock}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := async.Open(h.t.Context(), cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			h.t.Errorf("close: %v", err)
		}
		_ = node.Close(ctx)
	})
	return svc, node
}

func (h *harness) deploy(name string, mod func(*nimbus.Function)) *nimbus.Function {
	fn := &nimbus.Function{Name: name, Runtime: "provided.al2023", MemoryMB: 128, Timeout: 3}
	if mod != nil {
		mod(fn)
	}
	h.fns.put(fn)
	h.svc.Refresh(name)
	return fn
}

func (h *harness) submit(fn, payload string) string {
	h.t.Helper()
	f, err := h.fns.Get(h.t.Context(), fn)
	if err != nil {
		f = &nimbus.Function{Name: fn}
	}
	id, _, err := h.svc.Submit(h.t.Context(), f, async.SubmitRequest{Payload: []byte(payload)})
	if err != nil {
		h.t.Fatalf("submit %s: %v", fn, err)
	}
	return id
}

// wait polls until cond holds (the service works in goroutines; the fake
// clock only moves when the test moves it).
func (h *harness) wait(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *harness) task(fn, id string) nimbus.Task {
	h.t.Helper()
	t, err := h.svc.Task(fn, id)
	if err != nil {
		h.t.Fatalf("task %s: %v", id, err)
	}
	return t
}

func (h *harness) waitStatus(fn, id, status string) nimbus.Task {
	h.t.Helper()
	var t nimbus.Task
	h.wait(fmt.Sprintf("task %s to be %s", id, status), func() bool {
		t, _ = h.svc.Task(fn, id)
		return t.Status == status
	})
	return t
}

func TestServiceRunsAndRecords(t *testing.T) {
	h := newHarness(t, nil)
	h.deploy("echo", nil)
	h.inv.handle("echo", func(_ context.Context, p []byte) (nimbus.Result, error) {
		return nimbus.Result{Payload: p}, nil
	})
	id := h.submit("echo", `{"n":1}`)
	got := h.waitStatus("echo", id, nimbus.TaskSucceeded)
	if got.Result != `{"n":1}` || got.Attempts != 1 || got.Finished.IsZero() {
		t.Errorf("task = %+v", got)
	}
	h.wait("the message to be done", func() bool {
		fns, _ := h.node.Pending(t.Context())
		return len(fns) == 0
	})
}

func TestServiceRetriesThenDeadLetters(t *testing.T) {
	h := newHarness(t, nil)
	retries := 2
	h.deploy("flaky", func(fn *nimbus.Function) {
		fn.EventInvoke = &nimbus.EventInvokeConfig{MaximumRetryAttempts: &retries, OnFailure: "nats:failed"}
		fn.DeadLetterTarget = "nats:dlq"
	})
	h.inv.handle("flaky", func(context.Context, []byte) (nimbus.Result, error) {
		return nimbus.Result{Err: &nimbus.FunctionError{Type: "Boom", Message: "no"}}, nil
	})
	id := h.submit("flaky", `{"x":1}`)
	for attempt := 1; attempt <= 3; attempt++ {
		h.wait(fmt.Sprintf("attempt %d", attempt), func() bool {
			calls, _ := h.inv.stats("flaky")
			return calls == attempt
		})
		if attempt < 3 {
			h.waitStatus("flaky", id, nimbus.TaskRetrying)
			// Not before its back-off: nothing runs while the clock stands.
			time.Sleep(20 * time.Millisecond)
			if calls, _ := h.inv.stats("flaky"); calls != attempt {
				t.Fatalf("attempt %d ran before its back-off (%d calls)", attempt+1, calls)
			}
			h.clock.Advance(10 * time.Second)
		}
	}
	got := h.waitStatus("flaky", id, nimbus.TaskFailed)
	if got.Attempts != 3 {
		t.Errorf("attempts = %d, want 3", got.Attempts)
	}
	dls, _, err := h.svc.DeadLetters(t.Context(), "flaky", 0, "")
	if err != nil || len(dls) != 1 || dls[0].Condition != async.CondRetriesExhausted || string(dls[0].Payload) != `{"x":1}` {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
	want := []string{`nats:failed RetriesExhausted false {"x":1}`, `nats:dlq RetriesExhausted true {"x":1}`}
	if got := h.dest.list(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries = %q, want %q", got, want)
	}
	// A re-drive is a new life of the task.
	h.inv.handle("flaky", nil)
	if n, err := h.svc.Redrive(t.Context(), h.deploy("flaky", nil), nil); err != nil || n != 1 {
		t.Fatalf("redrive = %d, %v", n, err)
	}
	if got := h.waitStatus("flaky", id, nimbus.TaskSucceeded); got.Attempts != 1 {
		t.Errorf("re-driven task = %+v", got)
	}
	if dls, _, _ := h.svc.DeadLetters(t.Context(), "flaky", 0, ""); len(dls) != 0 {
		t.Errorf("dead letters after re-drive = %+v", dls)
	}
}

func TestServiceEventPastItsAgeExpires(t *testing.T) {
	h := newHarness(t, nil)
	age := 60
	h.deploy("slow", func(fn *nimbus.Function) {
		zero := 0
		fn.ReservedConcurrency = &zero // hold it queued
		fn.EventInvoke = &nimbus.EventInvokeConfig{MaximumEventAgeInSeconds: &age}
	})
	id := h.submit("slow", `{}`)
	h.clock.Advance(2 * time.Minute)
	h.deploy("slow", func(fn *nimbus.Function) {
		fn.EventInvoke = &nimbus.EventInvokeConfig{MaximumEventAgeInSeconds: &age}
	})
	if got := h.waitStatus("slow", id, nimbus.TaskExpired); got.Attempts != 0 {
		t.Errorf("expired task = %+v", got)
	}
	if calls, _ := h.inv.stats("slow"); calls != 0 {
		t.Errorf("an expired event ran %d times", calls)
	}
}

func TestServiceCaps(t *testing.T) {
	h := newHarness(t, nil)
	gate := make(chan struct{})
	h.inv.handle("capped", func(ctx context.Context, _ []byte) (nimbus.Result, error) {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return nimbus.Result{Payload: []byte(`1`)}, nil
	})
	zero := 0
	h.deploy("capped", func(fn *nimbus.Function) { fn.ReservedConcurrency = &zero })
	var ids []string
	for i := range 10 {
		ids = append(ids, h.submit("capped", fmt.Sprint(i)))
	}
	time.Sleep(30 * time.Millisecond)
	if calls, _ := h.inv.stats("capped"); calls != 0 {
		t.Fatalf("reserved concurrency 0: %d events ran", calls)
	}
	// Raised to 3 by the event invoke config's cap: at most 3 at once.
	h.deploy("capped", func(fn *nimbus.Function) {
		fn.EventInvoke = &nimbus.EventInvokeConfig{MaxConcurrency: 3}
	})
	h.wait("3 running", func() bool {
		calls, _ := h.inv.stats("capped")
		return calls == 3
	})
	time.Sleep(30 * time.Millisecond)
	if calls, peak := h.inv.stats("capped"); calls != 3 || peak != 3 {
		t.Fatalf("calls %d, peak %d: want 3 and 3 while the first ones run", calls, peak)
	}
	close(gate)
	for _, id := range ids {
		h.waitStatus("capped", id, nimbus.TaskSucceeded)
	}
	if _, peak := h.inv.stats("capped"); peak != 3 {
		t.Errorf("peak = %d, want 3", peak)
	}
}

func TestServiceFairness(t *testing.T) {
	h := newHarness(t, func(c *async.Config) { c.Concurrency = 1 })
	h.deploy("busy", nil)
	h.deploy("quiet", nil)
	gate := make(chan struct{})
	h.inv.handle("busy", func(ctx context.Context, _ []byte) (nimbus.Result, error) {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return nimbus.Result{}, nil
	})
	// The busy function's backlog arrived in one commit round: one queue
	// message, all of it claimed at once.
	var evs []*async.Event
	var recs []*nimbus.Task
	for i := range 300 {
		id := fmt.Sprintf("busy-%d", i)
		now := h.clock.Now()
		evs = append(evs, &async.Event{ID: id, Function: "busy", Payload: []byte(fmt.Sprint(i)), Created: now})
		recs = append(recs, &nimbus.Task{ID: id, Function: "busy", Status: nimbus.TaskEnqueued, Created: now, Updated: now})
	}
	if err := h.node.Put(t.Context(), recs, evs); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		h.submit("busy", fmt.Sprint(300+i)) // and more, one by one
	}
	quiet := h.submit("quiet", `"q"`)
	close(gate)
	h.waitStatus("quiet", quiet, nimbus.TaskSucceeded)
	h.inv.mu.Lock()
	busyBefore := 0
	for _, o := range h.inv.order {
		if o == `quiet:"q"` {
			break
		}
		busyBefore++
	}
	h.inv.mu.Unlock()
	if busyBefore > 10 {
		t.Errorf("the quiet function's one event waited for %d of the busy one's (taking turns: about 1)", busyBefore)
	}
}

func TestServiceRateLimit(t *testing.T) {
	h := newHarness(t, nil)
	h.deploy("limited", func(fn *nimbus.Function) {
		fn.EventInvoke = &nimbus.EventInvokeConfig{MaxEventsPerSecond: 2}
	})
	for i := range 6 {
		h.submit("limited", fmt.Sprint(i))
	}
	h.wait("the burst", func() bool {
		calls, _ := h.inv.stats("limited")
		return calls == 2
	})
	time.Sleep(30 * time.Millisecond)
	if calls, _ := h.inv.stats("limited"); calls != 2 {
		t.Fatalf("%d events started within the first second at 2/s", calls)
	}
	h.clock.Advance(time.Second)
	h.wait("two more", func() bool {
		calls, _ := h.inv.stats("limited")
		return calls == 4
	})
	h.clock.Advance(time.Second)
	h.wait("the rest", func() bool {
		calls, _ := h.inv.stats("limited")
		return calls == 6
	})
}

func TestServiceStop(t *testing.T) {
	h := newHarness(t, nil)
	started := make(chan struct{}, 1)
	h.inv.handle("long", func(ctx context.Context, _ []byte) (nimbus.Result, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nimbus.Result{}, ctx.Err()
	})
	h.deploy("long", nil)
	zero := 0
	h.deploy("held", func(fn *nimbus.Function) { fn.ReservedConcurrency = &zero })

	queued := h.submit("held", `{}`)
	if got, err := h.svc.Stop(t.Context(), "held", queued); err != nil || got.Status != nimbus.TaskStopped {
		t.Fatalf("stop queued = %+v, %v", got, err)
	}
	running := h.submit("long", `{}`)
	<-started
	if got, err := h.svc.Stop(t.Context(), "long", running); err != nil || got.Status != nimbus.TaskStopping {
		t.Fatalf("stop running = %+v, %v", got, err)
	}
	h.waitStatus("long", running, nimbus.TaskStopped)
	if _, err := h.svc.Stop(t.Context(), "long", running); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("stop of a stopped task: %v, want ErrConflict", err)
	}
	// The stopped queued task never runs, even once it may.
	h.deploy("held", nil)
	time.Sleep(30 * time.Millisecond)
	if calls, _ := h.inv.stats("held"); calls != 0 {
		t.Errorf("a stopped task ran %d times", calls)
	}
}

// TestServiceQualifierConfig: an event follows the event invoke config of
// the qualifier it was invoked with (retries and destinations), not the
// function's: an alias's, a version's, $LATEST's for an unqualified one.
func TestServiceQualifierConfig(t *testing.T) {
	h := newHarness(t, func(c *async.Config) {
		c.Resolve = func(_ context.Context, name, q string) (*nimbus.Function, error) {
			v := &nimbus.Function{Name: name, Runtime: "provided.al2023", MemoryMB: 128, Timeout: 3, Version: "1"}
			if q != "1" && q != "live" {
				return nil, nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s:%s", name, q)
			}
			return v, nil
		}
	})
	zero := 0
	h.deploy("fn", func(fn *nimbus.Function) {
		fn.EventInvoke = &nimbus.EventInvokeConfig{OnSuccess: "nats:latest.ok", OnFailure: "nats:latest.failed"}
		fn.EventInvokeQualified = map[string]*nimbus.EventInvokeConfig{
			"live": {MaximumRetryAttempts: &zero, OnFailure: "nats:live.failed"},
			"1":    {OnSuccess: "nats:v1.ok"},
		}
	})
	h.inv.handle("fn", func(_ context.Context, payload []byte) (nimbus.Result, error) {
		if string(payload) == `"fail"` {
			return nimbus.Result{Err: &nimbus.FunctionError{Type: "Boom", Message: "no"}}, nil
		}
		return nimbus.Result{Payload: []byte(`"ok"`)}, nil
	})
	submit := func(q, payload string) string {
		fn, _ := h.fns.Get(t.Context(), "fn")
		id, _, err := h.svc.Submit(t.Context(), fn, async.SubmitRequest{Payload: []byte(payload), Qualifier: q})
		if err != nil {
			t.Fatalf("submit %s: %v", q, err)
		}
		return id
	}
	// live: no retry, its own failure destination.
	if got := h.waitStatus("fn", submit("live", `"fail"`), nimbus.TaskFailed); got.Attempts != 1 {
		t.Errorf("live's failed task = %+v, want 1 attempt (live's MaximumRetryAttempts 0)", got)
	}
	h.waitStatus("fn", submit("1", `"pass"`), nimbus.TaskSucceeded)
	h.waitStatus("fn", submit("", `"pass"`), nimbus.TaskSucceeded)
	want := []string{`nats:live.failed RetriesExhausted false "fail"`, `nats:v1.ok Success false "pass"`, `nats:latest.ok Success false "pass"`}
	if got := h.dest.list(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries = %q, want %q", got, want)
	}
}

func TestServiceFunctionDeleted(t *testing.T) {
	h := newHarness(t, nil)
	zero := 0
	h.deploy("gone", func(fn *nimbus.Function) {
		fn.ReservedConcurrency = &zero
		fn.EventInvoke = &nimbus.EventInvokeConfig{OnFailure: "nats:failed"}
	})
	id := h.submit("gone", `{}`)
	h.fns.del("gone")
	h.svc.Refresh("gone")
	got := h.waitStatus("gone", id, nimbus.TaskFailed)
	dls, _, _ := h.svc.DeadLetters(t.Context(), "gone", 0, "")
	if len(dls) != 1 || dls[0].Condition != async.CondFunctionDeleted {
		t.Errorf("task %+v, dead letters %+v", got, dls)
	}
}

func TestServiceTaskIDIsIdempotent(t *testing.T) {
	h := newHarness(t, nil)
	fn := h.deploy("echo", nil)
	var wg sync.WaitGroup
	var fresh atomic.Int32
	for range 8 {
		wg.Go(func() {
			_, existing, err := h.svc.Submit(t.Context(), fn, async.SubmitRequest{Payload: []byte(`{}`), TaskID: "order-1"})
			if err != nil {
				t.Error(err)
			}
			if !existing {
				fresh.Add(1)
			}
		})
	}
	wg.Wait()
	if fresh.Load() != 1 {
		t.Errorf("%d submits stored the task, want 1", fresh.Load())
	}
	h.waitStatus("echo", "order-1", nimbus.TaskSucceeded)
	if calls, _ := h.inv.stats("echo"); calls != 1 {
		t.Errorf("ran %d times, want 1", calls)
	}
}

// halfPut is a backend whose next Put stores the records and not the
// events, and fails: what a submit gets when a member dies between the two
// writes, or the event's write times out.
type halfPut struct {
	*mem.Node
	armed atomic.Int32 // Puts of events to fail so
}

func (b *halfPut) Put(ctx context.Context, recs []*nimbus.Task, evs []*async.Event) error {
	if len(evs) > 0 && b.armed.Add(-1) >= 0 {
		if err := b.Node.Put(ctx, recs, nil); err != nil {
			return err
		}
		return nimbus.Errorf(nimbus.ErrUnavailable, "the store did not confirm the write")
	}
	return b.Node.Put(ctx, recs, evs)
}

// A submit whose record was stored without its event failed; the
// submitter's retry with the same task id stores the event, and it runs
// once.
func TestServiceTaskIDRetryAfterHalfWrite(t *testing.T) {
	var b *halfPut
	h := newHarness(t, func(c *async.Config) {
		b = &halfPut{Node: c.Backend.(*mem.Node)}
		c.Backend = b
	})
	fn := h.deploy("echo", nil)
	b.armed.Store(1)
	req := async.SubmitRequest{Payload: []byte(`{}`), TaskID: "order-2"}
	if _, _, err := h.svc.Submit(t.Context(), fn, req); !errors.Is(err, nimbus.ErrUnavailable) {
		t.Fatalf("first submit: %v, want ErrUnavailable", err)
	}
	if _, _, err := h.svc.Submit(t.Context(), fn, req); err != nil {
		t.Fatalf("second submit: %v", err)
	}
	h.waitStatus("echo", "order-2", nimbus.TaskSucceeded)
	// A third submit finds it done: nothing more runs.
	if _, existing, err := h.svc.Submit(t.Context(), fn, req); err != nil || !existing {
		t.Fatalf("third submit: existing %v, %v", existing, err)
	}
	h.clock.Advance(time.Minute)
	time.Sleep(100 * time.Millisecond)
	if calls, _ := h.inv.stats("echo"); calls != 1 {
		t.Errorf("ran %d times, want 1", calls)
	}
}

// A retry whose record was stored without its event (every try of the
// write): the attempt is handed back and runs again, rather than being
// skipped as superseded by a retry that does not exist.
func TestServiceRetryAfterHalfWrite(t *testing.T) {
	var b *halfPut
	h := newHarness(t, func(c *async.Config) {
		b = &halfPut{Node: c.Backend.(*mem.Node)}
		c.Backend = b
	})
	h.deploy("flaky", nil)
	var calls atomic.Int32
	h.inv.handle("flaky", func(context.Context, []byte) (nimbus.Result, error) {
		if calls.Add(1) == 1 {
			return nimbus.Result{Err: &nimbus.FunctionError{Type: "Boom", Message: "no"}}, nil
		}
		return nimbus.Result{Payload: []byte(`1`)}, nil
	})
	id := h.submit("flaky", `{}`)
	b.armed.Store(100) // every write of the retry fails
	h.wait("the first attempt", func() bool { return calls.Load() == 1 })
	time.Sleep(2 * time.Second) // the retry's writes are tried and given up
	b.armed.Store(0)
	for range 10 { // the rescan finds the handed-back message; its retry's back-off passes
		h.clock.Advance(async.DefaultRescan)
		time.Sleep(50 * time.Millisecond)
	}
	h.waitStatus("flaky", id, nimbus.TaskSucceeded)
}

func TestServiceStoreUnavailable(t *testing.T) {
	h := newHarness(t, nil)
	fn := h.deploy("echo", nil)
	h.store.FailWrites(errors.New("no space left on device"))
	_, _, err := h.svc.Submit(t.Context(), fn, async.SubmitRequest{Payload: []byte(`{}`)})
	if !errors.Is(err, nimbus.ErrUnavailable) {
		t.Fatalf("submit on a full disk: %v, want ErrUnavailable", err)
	}
	h.store.FailWrites(nil)
	// An outcome that cannot be stored: the event runs again once it can.
	gate := make(chan struct{})
	h.inv.handle("echo", func(context.Context, []byte) (nimbus.Result, error) {
		<-gate
		return nimbus.Result{Payload: []byte(`1`)}, nil
	})
	id := h.submit("echo", `{}`)
	h.wait("the first run", func() bool {
		calls, _ := h.inv.stats("echo")
		return calls == 1
	})
	h.store.FailWrites(errors.New("no space left on device"))
	close(gate)
	time.Sleep(3 * time.Second) // the outcome write's tries run out
	h.store.FailWrites(nil)
	h.clock.Advance(time.Minute) // the rescan finds the handed-back message
	h.waitStatus("echo", id, nimbus.TaskSucceeded)
	if calls, _ := h.inv.stats("echo"); calls != 2 {
		t.Errorf("ran %d times, want 2 (once more after the failed write)", calls)
	}
}

func TestServiceNodesShareAndTakeOver(t *testing.T) {
	h := newHarness(t, nil)
	other, otherNode := h.open(nil)
	h.deploy("echo", nil)
	other.Refresh("echo")
	gate := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	h.inv.handle("echo", func(ctx context.Context, p []byte) (nimbus.Result, error) {
		mu.Lock()
		seen[string(p)]++
		mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return nimbus.Result{Payload: p}, nil
	})
	var ids []string
	for i := range 40 {
		ids = append(ids, h.submit("echo", fmt.Sprint(i)))
	}
	close(gate)
	for _, id := range ids {
		h.waitStatus("echo", id, nimbus.TaskSucceeded)
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("event %s ran %d times", p, n)
		}
	}
	// A node that dies holding a message: another takes it once the claim
	// lapses.
	h.inv.handle("echo", func(ctx context.Context, p []byte) (nimbus.Result, error) {
		return nimbus.Result{Payload: p}, nil
	})
	zero := 0
	h.deploy("stuck", func(fn *nimbus.Function) { fn.ReservedConcurrency = &zero })
	id := h.submit("stuck", `{}`)
	c, _, err := otherNode.Claim(t.Context(), "stuck")
	if err != nil || c == nil {
		t.Fatalf("claim: %v, %v", c, err)
	}
	otherNode.Crash()
	h.deploy("stuck", nil)
	time.Sleep(30 * time.Millisecond)
	if tk := h.task("stuck", id); tk.Status != nimbus.TaskEnqueued {
		t.Fatalf("ran while another node held it: %+v", tk)
	}
	h.clock.Advance(time.Minute)
	h.waitStatus("stuck", id, nimbus.TaskSucceeded)
}

func TestServiceManyFunctions(t *testing.T) {
	h := newHarness(t, func(c *async.Config) { c.Concurrency = 32 })
	const n = 1500 // more than JetStream's default of 1,000 consumers a stream
	var ids []string
	for i := range n {
		name := fmt.Sprintf("fn-%04d", i)
		h.deploy(name, nil)
		ids = append(ids, h.submit(name, `{}`))
	}
	for i, id := range ids {
		h.waitStatus(fmt.Sprintf("fn-%04d", i), id, nimbus.TaskSucceeded)
	}
}

func TestServiceCloseWithinGrace(t *testing.T) {
	h := newHarness(t, nil)
	h.deploy("forever", nil)
	started := make(chan struct{})
	h.inv.handle("forever", func(ctx context.Context, _ []byte) (nimbus.Result, error) {
		close(started)
		<-ctx.Done()
		return nimbus.Result{}, ctx.Err()
	})
	id := h.submit("forever", `{}`)
	<-started
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if err := h.svc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("close took %s with a 200ms grace", d)
	}
	// Handed back, not recorded as failed: it runs again on the next start.
	if tk := h.task("forever", id); nimbus.TaskFinal(tk.Status) {
		t.Errorf("an event cut short by shutdown ended %s", tk.Status)
	}
	if fns, _ := h.node.Pending(t.Context()); len(fns) != 1 {
		t.Errorf("pending after close = %v, want the function", fns)
	}

}

// Close hands back the events claimed and not started at once, while the
// running ones finish: another node runs them meanwhile.
func TestServiceCloseHandsBackQueuedAtOnce(t *testing.T) {
	h := newHarness(t, func(c *async.Config) { c.Concurrency = 1 })
	h.deploy("slow", nil)
	h.deploy("quick", nil)
	gate := make(chan struct{})
	h.inv.handle("slow", func(context.Context, []byte) (nimbus.Result, error) {
		<-gate
		return nimbus.Result{Payload: []byte(`1`)}, nil
	})
	defer close(gate)
	h.submit("slow", `{}`)
	h.wait("slow to start", func() bool {
		calls, _ := h.inv.stats("slow")
		return calls == 1
	})
	id := h.submit("quick", `{}`)
	time.Sleep(200 * time.Millisecond) // claimed: it waits for the node's one slot
	other, _ := h.open(nil)
	other.Refresh("quick")
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		closed <- h.svc.Close(ctx)
	}()
	time.Sleep(100 * time.Millisecond)
	h.clock.Advance(async.DefaultRescan) // the other node looks at the queue (the claim has not lapsed)
	h.waitStatus("quick", id, nimbus.TaskSucceeded)
	select {
	case err := <-closed:
		t.Fatalf("close returned (%v) while an event ran", err)
	default:
	}
}
