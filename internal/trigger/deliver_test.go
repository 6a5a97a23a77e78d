package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// fakeFunctions serves one function, or none after delete; its next fail
// lookups fail (as a store out of reach would).
type fakeFunctions struct {
	mu   sync.Mutex
	fns  map[string]*nimbus.Function
	fail int
}

func newFakeFunctions(fns ...*nimbus.Function) *fakeFunctions {
	f := &fakeFunctions{fns: make(map[string]*nimbus.Function)}
	for _, fn := range fns {
		f.fns[fn.Name] = fn
	}
	return f
}

func (f *fakeFunctions) Get(_ context.Context, name string) (*nimbus.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		return nil, errors.New("read function: nats: timeout")
	}
	fn := f.fns[name]
	if fn == nil {
		return nil, nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s", name)
	}
	return fn, nil
}

// Resolve serves the function put under "name:qualifier" (a version, or
// the one an alias routes to).
func (f *fakeFunctions) Resolve(ctx context.Context, name, qualifier string) (*nimbus.Function, error) {
	return f.Get(ctx, name+":"+qualifier)
}

func (f *fakeFunctions) List(context.Context) ([]*nimbus.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*nimbus.Function
	for _, fn := range f.fns {
		out = append(out, fn)
	}
	return out, nil
}

func (f *fakeFunctions) put(fn *nimbus.Function) {
	f.mu.Lock()
	f.fns[fn.Name] = fn
	f.mu.Unlock()
}

func (f *fakeFunctions) remove(name string) {
	f.mu.Lock()
	delete(f.fns, name)
	f.mu.Unlock()
}

// fakeInvoker answers each invocation with answer, and records them and
// the version each ran.
type fakeInvoker struct {
	mu     sync.Mutex
	calls  []nimbus.Invocation
	ran    []string
	answer func(call int, events []map[string]any) (nimbus.Result, error)
}

func (f *fakeInvoker) Invoke(_ context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	f.ran = append(f.ran, fn.Qualifier())
	n := len(f.calls)
	f.mu.Unlock()
	if f.answer == nil {
		return nimbus.Result{Payload: []byte("null")}, nil
	}
	return f.answer(n, decodeEvents(req.Payload))
}

func (f *fakeInvoker) requests() []nimbus.Invocation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// decodeEvents reads one event or an array of them.
func decodeEvents(b []byte) []map[string]any {
	var list []map[string]any
	if json.Unmarshal(b, &list) == nil {
		return list
	}
	var one map[string]any
	if json.Unmarshal(b, &one) == nil {
		return []map[string]any{one}
	}
	return nil
}

func ids(events []map[string]any) []string {
	var out []string
	for _, e := range events {
		out = append(out, fmt.Sprint(e["id"]))
	}
	return out
}

// fakeSender records what goes to failure destinations.
type fakeSender struct {
	mu    sync.Mutex
	sent  []Failure
	dests []string
	err   error
}

func (f *fakeSender) Send(_ context.Context, dest string, fl Failure) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.sent = append(f.sent, fl)
	f.dests = append(f.dests, dest)
	return nil
}

// sleeps records the delays asked for, without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.d)
}

func messages(n int) []Message {
	out := make([]Message, n)
	for i := range out {
		out[i] = Message{ID: fmt.Sprintf("m%d", i), Source: "test://src", Type: "com.test", Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return out
}

type sinkFixture struct {
	sink   *Deliverer
	inv    *fakeInvoker
	sender *fakeSender
	sleeps *sleeps
	status *Status
}

func newSinkFixture(t nimbus.Trigger, versions ...*nimbus.Function) *sinkFixture {
	f := &sinkFixture{inv: &fakeInvoker{}, sender: &fakeSender{}, sleeps: &sleeps{}, status: NewStatus()}
	if t.Name == "" {
		t.Name = "t1"
	}
	if t.Type == "" {
		t.Type = "fake"
	}
	f.sink = NewSink(SinkConfig{
		Function: "fn", Trigger: t, Functions: newFakeFunctions(append(versions, &nimbus.Function{Name: "fn"})...),
		Invoker: f.inv, Failures: f.sender, Status: f.status, Sleep: f.sleeps.sleep,
		Retry: Backoff{Base: time.Second, Max: 8 * time.Second}, Throttle: Backoff{Base: time.Millisecond, Max: 4 * time.Millisecond},
	})
	return f
}

func TestDeliverShapes(t *testing.T) {
	t.Run("batch size 1: one event", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{BatchSize: 1})
		if err := f.sink.Deliver(t.Context(), messages(1)); err != nil {
			t.Fatal(err)
		}
		req := f.inv.requests()[0]
		if req.Payload[0] != '{' || req.HTTP.Header.Get("Content-Type") != ContentTypeEvent {
			t.Errorf("got %s (%s), want one event object as %s", req.Payload, req.HTTP.Header.Get("Content-Type"), ContentTypeEvent)
		}
	})
	t.Run("batch size 10: an array, even of one", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{BatchSize: 10})
		if err := f.sink.Deliver(t.Context(), messages(1)); err != nil {
			t.Fatal(err)
		}
		req := f.inv.requests()[0]
		if req.Payload[0] != '[' || req.HTTP.Header.Get("Content-Type") != ContentTypeBatch {
			t.Errorf("got %s (%s), want an array as %s", req.Payload, req.HTTP.Header.Get("Content-Type"), ContentTypeBatch)
		}
		if v := f.status.View(); v.Delivered != 1 || v.Failed != 0 || v.LastEvent.IsZero() {
			t.Errorf("status: got %+v, want 1 delivered with a last event time", v)
		}
	})
	t.Run("a raw message: its data as it is", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{BatchSize: 1})
		if err := f.sink.Deliver(t.Context(), []Message{{ID: "r", Data: []byte(`{"triggerName":"t"}`), Raw: true}}); err != nil {
			t.Fatal(err)
		}
		req := f.inv.requests()[0]
		if string(req.Payload) != `{"triggerName":"t"}` || req.HTTP.Header.Get("Content-Type") != "application/json" {
			t.Errorf("got %s (%s), want the data as application/json", req.Payload, req.HTTP.Header.Get("Content-Type"))
		}
	})
	t.Run("defaults filled in", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{Name: "orders", Type: "kafka", BatchSize: 1})
		if err := f.sink.Deliver(t.Context(), []Message{{Data: []byte(`1`)}}); err != nil {
			t.Fatal(err)
		}
		ev := decodeEvents(f.inv.requests()[0].Payload)[0]
		if ev["id"] == "" || ev["source"] != "/nimbus/functions/fn/triggers/orders" || ev["type"] != "com.nimbus.kafka.message" || ev["time"] == nil {
			t.Errorf("got %v, want id, source, type and time filled in", ev)
		}
	})
}

// TestDeliverQualifier runs a trigger's batches on the version its alias
// routes each attempt to, and fails them to the failure destination once
// the alias is gone.
func TestDeliverQualifier(t *testing.T) {
	// fakeFunctions serves the alias's version under "fn:live".
	v2 := &nimbus.Function{Name: "fn:live", Version: "2"}
	f := newSinkFixture(nimbus.Trigger{BatchSize: 5, MaxRetries: 1, FailureDestination: "nats:dlq", Qualifier: "live"}, v2)
	if err := f.sink.Deliver(t.Context(), messages(2)); err != nil {
		t.Fatal(err)
	}
	if got := f.inv.ran; !slices.Equal(got, []string{"2"}) {
		t.Errorf("versions run: got %v, want [2] (the alias's)", got)
	}
	f.sink.cfg.Functions.(*fakeFunctions).remove("fn:live") // the alias is deleted
	if err := f.sink.Deliver(t.Context(), messages(1)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.inv.requests()); n != 1 {
		t.Errorf("invocations: got %d, want 1 (none once the alias is gone)", n)
	}
	if len(f.sender.sent) != 1 {
		t.Fatalf("failure destination: got %d, want 1 message", len(f.sender.sent))
	}
	if fl := f.sender.sent[0]; fl.Qualifier != "live" || fl.Executed != "" || fl.Attempts != 2 ||
		!strings.Contains(fl.Reason, "version or alias live of function fn does not exist") {
		t.Errorf("failure: got %+v, want alias live, 2 attempts, none run", fl)
	}
	if v := f.status.View(); v.Delivered != 2 || v.Failed != 1 {
		t.Errorf("status: got %+v, want 2 delivered and 1 failed", v)
	}
}

func TestDeliverPartialBatchResponse(t *testing.T) {
	f := newSinkFixture(nimbus.Trigger{BatchSize: 10, MaxRetries: 3})
	var got [][]string
	f.inv.answer = func(call int, events []map[string]any) (nimbus.Result, error) {
		got = append(got, ids(events))
		if call == 1 {
			return nimbus.Result{Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":"m1"},{"itemIdentifier":"m3"}]}`)}, nil
		}
		return nimbus.Result{Payload: []byte(`{"batchItemFailures":[]}`)}, nil
	}
	if err := f.sink.Deliver(t.Context(), messages(4)); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"m0", "m1", "m2", "m3"}, {"m1", "m3"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("invocations: got %v, want %v (only the failed items retried)", got, want)
	}
	if v := f.status.View(); v.Delivered != 4 || v.Failed != 0 {
		t.Errorf("status: got %+v, want 4 delivered", v)
	}
	if s := f.sleeps.all(); len(s) != 1 || s[0] != time.Second {
		t.Errorf("back-off: got %v, want [1s]", s)
	}
}

func TestDeliverRetriesThenFailureDestination(t *testing.T) {
	f := newSinkFixture(nimbus.Trigger{BatchSize: 5, MaxRetries: 3, FailureDestination: "nats:dlq"})
	f.inv.answer = func(_ int, events []map[string]any) (nimbus.Result, error) {
		// m2 is poison: the function always fails while it is in the batch.
		if slices.Contains(ids(events), "m2") {
			return nimbus.Result{Payload: []byte(`{"errorType":"Error","errorMessage":"boom"}`),
				Err: &nimbus.FunctionError{Type: "Error", Message: "boom"}}, nil
		}
		return nimbus.Result{Payload: []byte(`"ok"`)}, nil
	}
	if err := f.sink.Deliver(t.Context(), messages(3)); err != nil {
		t.Fatal(err)
	}
	// The whole batch fails each time (no partial response), so all three
	// go to the destination after 1 + 3 attempts.
	if n := len(f.inv.requests()); n != 4 {
		t.Errorf("invocations: got %d, want 4 (1 + 3 retries)", n)
	}
	if s := f.sleeps.all(); !slices.Equal(s, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}) {
		t.Errorf("back-off: got %v, want 1s 2s 4s", s)
	}
	if len(f.sender.sent) != 3 || f.sender.dests[0] != "nats:dlq" {
		t.Fatalf("failure destination got %d messages (%v), want 3 to nats:dlq", len(f.sender.sent), f.sender.dests)
	}
	fl := f.sender.sent[0]
	if fl.Function != "fn" || fl.Trigger != "t1" || fl.Attempts != 4 || fl.FuncError != "Handled" ||
		!strings.Contains(fl.Reason, "failed 4 times") || !strings.Contains(fl.Reason, "Error: boom") || !json.Valid(fl.Event) {
		t.Errorf("failure record: got %+v", fl)
	}
	if v := f.status.View(); v.Failed != 3 || v.Delivered != 0 {
		t.Errorf("status: got %+v, want 3 failed", v)
	}
}

func TestDeliverPoisonMessageAmongGoodOnes(t *testing.T) {
	f := newSinkFixture(nimbus.Trigger{BatchSize: 5, MaxRetries: 2, FailureDestination: "nats:dlq"})
	f.inv.answer = func(_ int, events []map[string]any) (nimbus.Result, error) {
		if slices.Contains(ids(events), "m2") {
			return nimbus.Result{Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":"m2"}]}`)}, nil
		}
		return nimbus.Result{}, nil
	}
	if err := f.sink.Deliver(t.Context(), messages(5)); err != nil {
		t.Fatal(err)
	}
	if v := f.status.View(); v.Delivered != 4 || v.Failed != 1 {
		t.Errorf("status: got %+v, want 4 delivered, 1 failed", v)
	}
	if len(f.sender.sent) != 1 || f.sender.sent[0].Message.ID != "m2" {
		t.Errorf("failure destination: got %v, want m2 only", f.sender.sent)
	}
}

func TestDeliverThrottleIsWaitedOut(t *testing.T) {
	f := newSinkFixture(nimbus.Trigger{BatchSize: 1, MaxRetries: 0})
	f.inv.answer = func(call int, _ []map[string]any) (nimbus.Result, error) {
		if call <= 5 {
			return nimbus.Result{}, nimbus.Errorf(nimbus.ErrThrottled, "Rate Exceeded.")
		}
		return nimbus.Result{}, nil
	}
	if err := f.sink.Deliver(t.Context(), messages(1)); err != nil {
		t.Fatal(err)
	}
	if v := f.status.View(); v.Delivered != 1 || v.Failed != 0 {
		t.Errorf("status: got %+v, want delivered despite throttling with no retries allowed", v)
	}
	if s := f.sleeps.all(); len(s) != 5 || s[4] != 4*time.Millisecond {
		t.Errorf("throttle waits: got %v, want 5, growing to the 4ms cap", s)
	}
}

func TestDeliverBadPartialResponses(t *testing.T) {
	for _, payload := range []string{
		`{"batchItemFailures":[{"itemIdentifier":"nope"}]}`,
		`{"batchItemFailures":[{"itemIdentifier":""}]}`,
		`{"batchItemFailures":[{"id":"m0"}]}`,
		`{"batchItemFailures":"m0"}`,
	} {
		t.Run(payload, func(t *testing.T) {
			f := newSinkFixture(nimbus.Trigger{BatchSize: 2, MaxRetries: 0, FailureDestination: "d"})
			f.inv.answer = func(int, []map[string]any) (nimbus.Result, error) {
				return nimbus.Result{Payload: []byte(payload)}, nil
			}
			if err := f.sink.Deliver(t.Context(), messages(2)); err != nil {
				t.Fatal(err)
			}
			if v := f.status.View(); v.Failed != 2 {
				t.Errorf("got %+v, want the whole batch failed", v)
			}
			if r := f.sender.sent; len(r) == 0 || !strings.Contains(r[0].Reason, "partial batch response") {
				t.Errorf("reason: got %v", r)
			}
		})
	}
	for _, payload := range []string{`{"batchItemFailures":null}`, `{"batchItemFailures":[]}`, `[1]`, `"x"`, ``, `{"other":1}`} {
		t.Run("success "+payload, func(t *testing.T) {
			f := newSinkFixture(nimbus.Trigger{BatchSize: 2})
			f.inv.answer = func(int, []map[string]any) (nimbus.Result, error) {
				return nimbus.Result{Payload: []byte(payload)}, nil
			}
			if err := f.sink.Deliver(t.Context(), messages(2)); err != nil {
				t.Fatal(err)
			}
			if v := f.status.View(); v.Delivered != 2 {
				t.Errorf("got %+v, want both delivered", v)
			}
		})
	}
}

func TestDeliverHTTPStatus(t *testing.T) {
	f := newSinkFixture(nimbus.Trigger{BatchSize: 1, MaxRetries: 1})
	f.inv.answer = func(call int, _ []map[string]any) (nimbus.Result, error) {
		status := 500
		if call == 2 {
			status = 204
		}
		return nimbus.Result{HTTP: &nimbus.HTTPResponse{Status: status}}, nil
	}
	if err := f.sink.Deliver(t.Context(), messages(1)); err != nil {
		t.Fatal(err)
	}
	if v := f.status.View(); v.Delivered != 1 || len(f.inv.requests()) != 2 {
		t.Errorf("got %+v after %d calls, want delivered on the second", v, len(f.inv.requests()))
	}
}

func TestDeliverCannotFinish(t *testing.T) {
	t.Run("destination down", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{BatchSize: 1, MaxRetries: 0, FailureDestination: "nats:dlq"})
		f.sender.err = errors.New("nats: no responders")
		f.inv.answer = func(int, []map[string]any) (nimbus.Result, error) {
			return nimbus.Result{Err: &nimbus.FunctionError{Type: "E", Message: "m"}}, nil
		}
		err := f.sink.Deliver(t.Context(), messages(1))
		if err == nil || !strings.Contains(err.Error(), "no responders") {
			t.Errorf("got %v, want the destination's error", err)
		}
		if v := f.status.View(); v.Failed != 0 {
			t.Errorf("status: got %+v, want nothing counted as failed", v)
		}
	})
	t.Run("shutting down", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{BatchSize: 1})
		f.inv.answer = func(int, []map[string]any) (nimbus.Result, error) {
			return nimbus.Result{}, nimbus.Errorf(nimbus.ErrConflict, "Nimbus is shutting down")
		}
		if err := f.sink.Deliver(t.Context(), messages(1)); !errors.Is(err, nimbus.ErrConflict) {
			t.Errorf("got %v, want ErrConflict", err)
		}
	})
	t.Run("context ended while throttled", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{BatchSize: 1})
		ctx, cancel := context.WithCancel(t.Context())
		f.inv.answer = func(int, []map[string]any) (nimbus.Result, error) {
			cancel()
			return nimbus.Result{}, nimbus.ErrThrottled
		}
		if err := f.sink.Deliver(ctx, messages(1)); !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
	t.Run("function deleted", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{BatchSize: 1})
		f.sink.cfg.Functions = newFakeFunctions()
		if err := f.sink.Deliver(t.Context(), messages(1)); !errors.Is(err, nimbus.ErrNotFound) {
			t.Errorf("got %v, want ErrNotFound", err)
		}
	})
}

func TestDeliverNoDestination(t *testing.T) {
	f := newSinkFixture(nimbus.Trigger{BatchSize: 1, MaxRetries: 0})
	f.inv.answer = func(int, []map[string]any) (nimbus.Result, error) {
		return nimbus.Result{}, errors.New("sandbox: no free uid")
	}
	if err := f.sink.Deliver(t.Context(), messages(1)); err != nil {
		t.Fatalf("got %v, want the message dropped (no destination)", err)
	}
	if v := f.status.View(); v.Failed != 1 || len(f.sender.sent) != 0 {
		t.Errorf("got %+v, %d sent; want 1 failed, none sent", v, len(f.sender.sent))
	}
}

// fakeDLQ is a source's own dead-letter queue.
type fakeDLQ struct {
	got []Message
	err error
}

func (d *fakeDLQ) DeadLetter(_ context.Context, msgs []Message) error {
	if d.err != nil {
		return d.err
	}
	d.got = append(d.got, msgs...)
	return nil
}

func TestDeliverSourceDeadLetter(t *testing.T) {
	fail := func(int, []map[string]any) (nimbus.Result, error) {
		return nimbus.Result{Err: &nimbus.FunctionError{Type: "E", Message: "m"}}, nil
	}
	t.Run("used without a failure destination", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{BatchSize: 2, MaxRetries: 0})
		dlq := &fakeDLQ{}
		f.sink.cfg.DeadLetter = dlq
		f.inv.answer = fail
		if err := f.sink.Deliver(t.Context(), messages(2)); err != nil {
			t.Fatal(err)
		}
		if len(dlq.got) != 2 || string(dlq.got[0].Data) != `{"n":0}` {
			t.Errorf("dead-letter queue got %v, want the 2 original messages", dlq.got)
		}
	})
	t.Run("none configured", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{BatchSize: 2, MaxRetries: 0})
		f.sink.cfg.DeadLetter = &fakeDLQ{err: fmt.Errorf("rabbitmq: %w", ErrNoDeadLetter)}
		f.inv.answer = fail
		if err := f.sink.Deliver(t.Context(), messages(2)); err != nil {
			t.Fatalf("got %v, want the messages dropped", err)
		}
		if v := f.status.View(); v.Failed != 2 {
			t.Errorf("got %+v, want 2 failed", v)
		}
	})
	t.Run("the failure destination wins", func(t *testing.T) {
		f := newSinkFixture(nimbus.Trigger{BatchSize: 2, MaxRetries: 0, FailureDestination: "fn2"})
		dlq := &fakeDLQ{}
		f.sink.cfg.DeadLetter = dlq
		f.inv.answer = fail
		if err := f.sink.Deliver(t.Context(), messages(2)); err != nil {
			t.Fatal(err)
		}
		if len(dlq.got) != 0 || len(f.sender.sent) != 2 {
			t.Errorf("got %d in the queue, %d sent; want 0 and 2", len(dlq.got), len(f.sender.sent))
		}
	})
}

func TestDeliverSplitsLargeBatches(t *testing.T) {
	f := newSinkFixture(nimbus.Trigger{BatchSize: 10, FailureDestination: "d"})
	f.sink.cfg.MaxPayload = 400
	msgs := messages(4)
	msgs[1].Data = []byte(`"` + strings.Repeat("x", 500) + `"`) // too large on its own
	if err := f.sink.Deliver(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for _, r := range f.inv.requests() {
		if len(r.Payload) > 400 {
			t.Errorf("payload of %d bytes, over the limit", len(r.Payload))
		}
		got = append(got, ids(decodeEvents(r.Payload)))
	}
	if fmt.Sprint(got) != "[[m0 m2] [m3]]" {
		t.Errorf("invocations: got %v, want [[m0 m2] [m3]]", got)
	}
	if len(f.sender.sent) != 1 || f.sender.sent[0].Message.ID != "m1" || !strings.Contains(f.sender.sent[0].Reason, "payload limit") {
		t.Errorf("failure destination: got %+v, want m1 as too large", f.sender.sent)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: time.Second, Max: 10 * time.Second}
	var got []time.Duration
	for n := range 6 {
		got = append(got, b.Delay(n))
	}
	if want := []time.Duration{1, 2, 4, 8, 10, 10}; fmt.Sprint(got) != fmt.Sprint(scale(want, time.Second)) {
		t.Errorf("got %v, want %v", got, scale(want, time.Second))
	}
	b.Jitter = 0.5
	for n := range 100 {
		if d := b.Delay(n % 5); d < b.Delay(0)/2-1 || d > b.Max {
			t.Fatalf("jittered delay %v out of range", d)
		}
	}
}

func scale(ns []time.Duration, unit time.Duration) []time.Duration {
	out := make([]time.Duration, len(ns))
	for i, n := range ns {
		out[i] = n * unit
	}
	return out
}

func FuzzPartialFailures(f *testing.F) {
	for _, s := range []string{`{"batchItemFailures":[{"itemIdentifier":"m1"}]}`, `{"batchItemFailures":null}`,
		`{"batchItemFailures":[{}]}`, `[]`, `"x"`, `{"batchItemFailures":{"itemIdentifier":"m1"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		items := []item{{msg: Message{ID: "m0"}}, {msg: Message{ID: "m1"}}}
		out := judge(items, nimbus.Result{Payload: payload})
		if len(out.failed) > len(items) {
			t.Fatalf("more failures than items: %d", len(out.failed))
		}
		if len(out.failed) > 0 && out.reason == "" {
			t.Fatal("failures without a reason")
		}
	})
}
