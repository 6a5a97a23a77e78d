package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeConfig is the fake source type's Config.
type fakeConfig struct {
	Tag string `json:"tag"`
	// Mode: "" runs until stopped; "error" and "panic" fail at once;
	// "stuck" runs until stopped and then until the test ticks;
	// "deliver" delivers one message, then runs until stopped;
	// "holdforget" runs until stopped, and its Forget waits for a tick.
	Mode    string `json:"mode,omitempty"`
	Invalid bool   `json:"invalid,omitempty"`
}

// harness records what fake sources do.
type harness struct {
	events chan string
	mu     sync.Mutex
	opts   map[string]Options
	// sleep blocks restarts until the test ticks.
	tick   chan struct{}
	slept  []time.Duration
	errors []error
}

func newHarness() *harness {
	return &harness{events: make(chan string, 100), opts: make(map[string]Options), tick: make(chan struct{})}
}

func (h *harness) factory(raw json.RawMessage) (Source, error) {
	var c fakeConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, nimbus.Invalidf("fake trigger config: %v", err)
	}
	if c.Invalid {
		return nil, nimbus.Invalidf("fake trigger config: invalid is set")
	}
	return &fakeSource{h: h, cfg: c}, nil
}

func (h *harness) sleep(ctx context.Context, d time.Duration) error {
	h.mu.Lock()
	h.slept = append(h.slept, d)
	h.mu.Unlock()
	select {
	case <-h.tick:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next returns the next event, failing the test if none comes.
func (h *harness) next(t *testing.T) string {
	t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no source event within 10s")
		return ""
	}
}

func (h *harness) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := h.next(t); got != w {
			t.Fatalf("source event: got %q, want %q", got, w)
		}
	}
}

type fakeSource struct {
	h   *harness
	cfg fakeConfig
}

func (s *fakeSource) Run(ctx context.Context, sink Sink, opts Options) error {
	s.h.mu.Lock()
	s.h.opts[short(opts.Group)] = opts
	s.h.mu.Unlock()
	s.h.events <- "start " + short(opts.Group) + " " + s.cfg.Tag
	switch s.cfg.Mode {
	case "error":
		return errors.New("broker refused the connection")
	case "panic":
		panic("fake source bug")
	case "stuck": // ignores ctx until the test ticks
		<-ctx.Done()
		<-s.h.tick
		return nil
	case "deliver":
		if err := sink.Deliver(ctx, []Message{{ID: "1", Data: []byte(`{}`)}}); err != nil {
			return err
		}
		opts.Status.Delivered(1, time.Now()) // as some sources do: not counted twice
		s.h.events <- "delivered " + short(opts.Group)
	}
	opts.Status.Connected()
	<-ctx.Done()
	s.h.events <- "stop " + short(opts.Group)
	return nil
}

func (s *fakeSource) Forget(ctx context.Context, opts Options) error {
	s.h.events <- "forget " + short(opts.Group) + " " + s.cfg.Tag
	if s.cfg.Mode == "holdforget" {
		select {
		case <-s.h.tick:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func fakeTrigger(name string, c fakeConfig) nimbus.Trigger {
	raw, _ := json.Marshal(c)
	return nimbus.Trigger{Name: name, Type: "fake", Enabled: true, Config: raw, BatchSize: 5}
}

type managerFixture struct {
	m   *Manager
	h   *harness
	fns *fakeFunctions
	inv *fakeInvoker
}

// noLeaks checks, when the test ends (after the cleanups registered
// later, such as the Manager's Close), that every goroutine the test
// started has ended.
func noLeaks(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// closeManager closes m, failing the test if that takes more than 10 s.
func closeManager(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Error(err)
	}
}

func newManagerFixture(t *testing.T, fns ...*nimbus.Function) *managerFixture {
	t.Helper()
	noLeaks(t)
	f := &managerFixture{h: newHarness(), fns: newFakeFunctions(fns...), inv: &fakeInvoker{}}
	f.m = NewManager(ManagerConfig{
		Functions: f.fns, Invoker: f.inv,
		Types: map[string]Factory{
			"fake": f.h.factory,
			"push": func(json.RawMessage) (Source, error) { return nil, nil },
			"bomb": func(json.RawMessage) (Source, error) { panic("factory bug") },
		},
		Sleep: f.h.sleep, ChangeRetry: 5 * time.Millisecond,
	})
	t.Cleanup(func() { closeManager(t, f.m) })
	if err := f.m.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	return f
}

// set stores fn and tells the manager.
func (f *managerFixture) set(fn *nimbus.Function) {
	f.fns.put(fn)
	f.m.Changed(fn.Name)
}

func (f *managerFixture) state(fn string, t nimbus.Trigger) StatusView { return f.m.Status(fn, &t) }

// waitState waits until the trigger's state is want.
func (f *managerFixture) waitState(t *testing.T, fn string, tr nimbus.Trigger, want string) StatusView {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := f.state(fn, tr)
		if v.State == want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("trigger %s: state %s (%s), want %s", tr.Name, v.State, v.Reason, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestManagerLifecycle(t *testing.T) {
	a := fakeTrigger("a", fakeConfig{Tag: "v1"})
	f := newManagerFixture(t, &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{a}})
	f.h.expect(t, "start nimbus-fn-a v1")
	f.waitState(t, "fn", a, StateActive)
	f.h.mu.Lock()
	opts := f.h.opts["nimbus-fn-a"]
	f.h.mu.Unlock()
	if opts.BatchSize != 5 || opts.Concurrency != DefaultConcurrency || opts.Status == nil || opts.Logger == nil {
		t.Errorf("options: got %+v", opts)
	}

	// A change of config restarts it; a change of timestamps does not.
	a2 := fakeTrigger("a", fakeConfig{Tag: "v2"})
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{a2}})
	f.h.expect(t, "stop nimbus-fn-a", "start nimbus-fn-a v2")
	a2.LastModified = time.Now()
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{a2}})

	// A second trigger starts beside it.
	b := fakeTrigger("b", fakeConfig{Tag: "v1"})
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{a2, b}})
	f.h.expect(t, "start nimbus-fn-b v1")

	// Disabled: stopped, and shown as Disabled.
	a2.Enabled = false
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{a2, b}})
	f.h.expect(t, "stop nimbus-fn-a")
	if v := f.state("fn", a2); v.State != StateDisabled {
		t.Errorf("disabled trigger: got %+v", v)
	}
	a2.Enabled = true
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{a2, b}})
	f.h.expect(t, "start nimbus-fn-a v2")

	// Deleted trigger, then deleted function.
	// Deleted trigger, then deleted function: each is forgotten once its
	// source stopped (a disabled one was not).
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{b}})
	f.h.expect(t, "stop nimbus-fn-a", "forget nimbus-fn-a v2")
	f.fns.remove("fn")
	f.m.Changed("fn")
	f.h.expect(t, "stop nimbus-fn-b", "forget nimbus-fn-b v1")
	if _, ok := f.m.Sink("fn", "b"); ok {
		t.Error("the deleted function's trigger still has a sink")
	}
}

// TestManagerChangeReadFails: a function whose change cannot be read is
// not taken for deleted (its trigger keeps running) and is looked up again
// until it is read: then the change applies.
func TestManagerChangeReadFails(t *testing.T) {
	a := fakeTrigger("a", fakeConfig{Tag: "v1"})
	f := newManagerFixture(t, &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{a}})
	f.h.expect(t, "start nimbus-fn-a v1")

	f.fns.mu.Lock()
	f.fns.fail = 3
	f.fns.mu.Unlock()
	f.m.Changed("fn") // nothing changed, and the reads fail: nothing stops
	f.m.Changed("fn") // a second failure while a retry waits adds none
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.fns.mu.Lock()
		left := f.fns.fail
		f.fns.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d failing lookups left: the function was not looked up again", left)
		}
		time.Sleep(time.Millisecond)
	}
	f.waitState(t, "fn", a, StateActive)
	select {
	case e := <-f.h.events:
		t.Fatalf("a lookup that failed changed the trigger: %q", e)
	case <-time.After(50 * time.Millisecond):
	}

	f.fns.mu.Lock()
	f.fns.fail = 2
	delete(f.fns.fns, "fn")
	f.fns.mu.Unlock()
	f.m.Changed("fn") // deleted, read at the third lookup
	f.h.expect(t, "stop nimbus-fn-a", "forget nimbus-fn-a v1")
	select {
	case e := <-f.h.events:
		t.Errorf("unexpected source event %q", e)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestManagerRecreatedTriggerWaitsForForget(t *testing.T) {
	c := fakeTrigger("c", fakeConfig{Tag: "v1", Mode: "holdforget"})
	f := newManagerFixture(t, &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{c}})
	f.h.expect(t, "start nimbus-fn-c v1")
	f.set(&nimbus.Function{Name: "fn"})
	f.h.expect(t, "stop nimbus-fn-c", "forget nimbus-fn-c v1")

	// Created again under the same name while the old one's broker state
	// is being removed: it starts only after, so the removal cannot take
	// the new trigger's state with it.
	c2 := fakeTrigger("c", fakeConfig{Tag: "v2"})
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{c2}})
	select {
	case e := <-f.h.events:
		t.Fatalf("event %q before the old trigger was forgotten", e)
	case <-time.After(100 * time.Millisecond):
	}
	f.h.tick <- struct{}{}
	f.h.expect(t, "start nimbus-fn-c v2")
	if v := f.waitState(t, "fn", c2, StateActive); v.Delivered != 0 {
		t.Errorf("a new trigger under an old name: %+v, want fresh counts", v)
	}

	// A disabled trigger that is deleted is forgotten too.
	c2.Enabled = false
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{c2}})
	f.h.expect(t, "stop nimbus-fn-c")
	f.set(&nimbus.Function{Name: "fn"})
	f.h.expect(t, "forget nimbus-fn-c v2")
}

func TestManagerErrorStateAndRestart(t *testing.T) {
	bad := fakeTrigger("bad", fakeConfig{Tag: "v1", Mode: "error"})
	f := newManagerFixture(t, &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{bad}})
	f.h.expect(t, "start nimbus-fn-bad v1")
	v := f.waitState(t, "fn", bad, StateError)
	if !strings.Contains(v.Reason, "broker refused the connection") {
		t.Errorf("reason: got %q", v.Reason)
	}
	f.h.tick <- struct{}{} // the back-off ends: it starts again
	f.h.expect(t, "start nimbus-fn-bad v1")
	f.waitState(t, "fn", bad, StateError)
	f.h.mu.Lock()
	slept := append([]time.Duration(nil), f.h.slept...)
	f.h.mu.Unlock()
	if len(slept) < 2 || slept[1] <= slept[0]/2 {
		t.Errorf("restart back-off: got %v, want growing delays", slept)
	}

	// Fixing the config restarts it at once, without waiting for the
	// back-off.
	good := fakeTrigger("bad", fakeConfig{Tag: "v2"})
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{good}})
	f.h.expect(t, "start nimbus-fn-bad v2")
	f.waitState(t, "fn", good, StateActive)
}

func TestManagerPanicRecovery(t *testing.T) {
	p := fakeTrigger("p", fakeConfig{Mode: "panic"})
	bomb := nimbus.Trigger{Name: "bomb", Type: "bomb", Enabled: true}
	f := newManagerFixture(t, &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{p, bomb}})
	f.h.expect(t, "start nimbus-fn-p ")
	if v := f.waitState(t, "fn", p, StateError); !strings.Contains(v.Reason, "panicked: fake source bug") {
		t.Errorf("reason: got %q", v.Reason)
	}
	if v := f.waitState(t, "fn", bomb, StateError); !strings.Contains(v.Reason, "factory panicked: factory bug") {
		t.Errorf("reason: got %q", v.Reason)
	}
	// Both are restarted after their back-off. Either may take a tick,
	// also again after failing again: tick until p has started.
	for deadline := time.After(10 * time.Second); ; {
		select {
		case f.h.tick <- struct{}{}:
			continue
		case e := <-f.h.events:
			if e != "start nimbus-fn-p " {
				t.Fatalf("source event %q, want p started again", e)
			}
		case <-deadline:
			t.Fatal("p was not started again")
		}
		break
	}
}

func TestManagerConfigErrors(t *testing.T) {
	invalid := fakeTrigger("invalid", fakeConfig{Invalid: true})
	unknown := nimbus.Trigger{Name: "unknown", Type: "carrier-pigeon", Enabled: true}
	f := newManagerFixture(t, &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{invalid, unknown}})
	if v := f.waitState(t, "fn", invalid, StateError); !strings.Contains(v.Reason, "invalid is set") {
		t.Errorf("reason: got %q", v.Reason)
	}
	if v := f.waitState(t, "fn", unknown, StateError); !strings.Contains(v.Reason, `"carrier-pigeon" is not available`) {
		t.Errorf("reason: got %q", v.Reason)
	}
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	if len(f.h.slept) != 0 {
		t.Errorf("a refused config was retried (%v)", f.h.slept)
	}
}

func TestManagerPushAndDeliver(t *testing.T) {
	push := nimbus.Trigger{Name: "url", Type: "push", Enabled: true, BatchSize: 1}
	d := fakeTrigger("d", fakeConfig{Mode: "deliver"})
	f := newManagerFixture(t, &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{push, d}})
	f.waitState(t, "fn", push, StateActive)
	sink, ok := f.m.Sink("fn", "url")
	if !ok {
		t.Fatal("no sink for the push trigger")
	}
	if err := sink.Deliver(t.Context(), []Message{{ID: "x", Data: []byte(`1`)}}); err != nil {
		t.Fatal(err)
	}
	f.h.expect(t, "start nimbus-fn-d ", "delivered nimbus-fn-d")
	if v := f.waitState(t, "fn", d, StateActive); v.Delivered != 1 {
		t.Errorf("status of d: got %+v, want 1 delivered", v)
	}
	if n := len(f.inv.requests()); n != 2 {
		t.Errorf("invocations: got %d, want 2", n)
	}
	if _, ok := f.m.Sink("fn", "nope"); ok {
		t.Error("Sink of an unknown trigger: ok")
	}
}

func TestManagerCountsSurviveRestart(t *testing.T) {
	d := fakeTrigger("d", fakeConfig{Mode: "deliver", Tag: "v1"})
	f := newManagerFixture(t, &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{d}})
	f.h.expect(t, "start nimbus-fn-d v1", "delivered nimbus-fn-d")
	d2 := fakeTrigger("d", fakeConfig{Mode: "deliver", Tag: "v2"})
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{d2}})
	f.h.expect(t, "stop nimbus-fn-d", "start nimbus-fn-d v2", "delivered nimbus-fn-d")
	if v := f.state("fn", d2); v.Delivered != 2 {
		t.Errorf("got %+v, want 2 delivered over both runs", v)
	}
}

func TestManagerClose(t *testing.T) {
	a := fakeTrigger("a", fakeConfig{})
	f := newManagerFixture(t, &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{a}})
	f.h.expect(t, "start nimbus-fn-a ")
	closeManager(t, f.m)
	f.h.expect(t, "stop nimbus-fn-a")
	// Changes after Close are ignored.
	f.set(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{fakeTrigger("b", fakeConfig{})}})
	select {
	case e := <-f.h.events:
		t.Errorf("after Close: %s", e)
	default:
	}
}

func TestManagerCloseWaitsForSources(t *testing.T) {
	s := fakeTrigger("s", fakeConfig{Mode: "stuck"})
	f := newManagerFixture(t, &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{s}})
	f.h.expect(t, "start nimbus-fn-s ")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := f.m.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close while a source does not stop = %v, want the deadline", err)
	}
	f.h.tick <- struct{}{} // the source returns
	if err := f.m.Close(t.Context()); err != nil {
		t.Fatalf("Close once the source stopped = %v", err)
	}
}

func TestManagerNamedFactory(t *testing.T) {
	noLeaks(t)
	h := newHarness()
	got := make(chan string, 1)
	named := NamedFactory(func(function, trigger string) Factory {
		return func(raw json.RawMessage) (Source, error) {
			got <- function + "/" + trigger
			return h.factory(raw)
		}
	})
	m := NewManager(ManagerConfig{
		Functions: newFakeFunctions(&nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{{Name: "tick", Type: "timer", Enabled: true, Config: []byte(`{}`)}}}),
		Invoker:   &fakeInvoker{}, Named: map[string]NamedFactory{"timer": named}, Sleep: h.sleep,
	})
	defer closeManager(t, m)
	if err := m.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	if name := <-got; name != "fn/tick" {
		t.Errorf("the factory was made for %q, want fn/tick", name)
	}
	h.expect(t, "start nimbus-fn-tick ")
	if _, err := named.Validator()(json.RawMessage(`{"invalid":true}`)); err == nil {
		t.Error("Validator accepted an invalid config")
	}
}

// short drops the hash from a group name.
func short(group string) string { return group[:strings.LastIndexByte(group, '-')] }

func TestGroupNameIsUnique(t *testing.T) {
	a, b := GroupName("a-b", "c"), GroupName("a", "b-c")
	if a == b || !strings.HasPrefix(a, "nimbus-a-b-c-") {
		t.Fatalf("group names %q and %q", a, b)
	}
}
