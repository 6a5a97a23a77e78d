package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

func TestCountsAdd(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := Counts{Delivered: 3, Failed: 1, LastEvent: t0, LastError: "old", LastErrorTime: t0}
	b := Counts{Delivered: 2, LastEvent: t0.Add(-time.Hour), LastError: "new", LastErrorTime: t0.Add(time.Second)}
	got := a.Add(b)
	want := Counts{Delivered: 5, Failed: 1, LastEvent: t0, LastError: "new", LastErrorTime: t0.Add(time.Second)}
	if got != want {
		t.Errorf("a+b: got %+v, want %+v", got, want)
	}
	if got := b.Add(a); got.LastError != "new" || got.LastEvent != t0 || got.Delivered != 5 {
		t.Errorf("b+a: got %+v: the later error and event win whatever the order", got)
	}
	if got := a.Add(Counts{}); got != a {
		t.Errorf("a+0: got %+v, want %+v", got, a)
	}
}

func TestCountsKey(t *testing.T) {
	id := "0b0e2a3c-6a5f-4b8e-9d61-6f0e1c2d3e4f"
	if got := CountsKey("fn", &nimbus.Trigger{ID: id, Name: "t"}); got != id {
		t.Errorf("key with an ID: got %q, want the ID", got)
	}
	k1 := CountsKey("a-b", &nimbus.Trigger{Name: "c"})
	k2 := CountsKey("a", &nimbus.Trigger{Name: "b-c"})
	k3 := CountsKey("a", &nimbus.Trigger{ID: "no/slashes", Name: "b-c"})
	if k1 == k2 || k2 != k3 || !validCountsKey().MatchString(k1) {
		t.Errorf("keys without a usable ID: %q %q %q", k1, k2, k3)
	}
}

// openEmbedded opens the embedded store in dir and its counts bucket.
func openEmbedded(t *testing.T, dir string) (*natsstore.Store, store.KV) {
	t.Helper()
	s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := s.KV(t.Context(), CountsBucket)
	if err != nil {
		_ = s.Close(context.Background())
		t.Fatal(err)
	}
	return s, kv
}

// TestCountStoreEmbedded: two writers adding at once to one key of the
// embedded store add up; the counts outlive the store's restart; Delete
// removes them.
func TestCountStoreEmbedded(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	s, kv := openEmbedded(t, dir)
	w1, w2 := NewCountStore(kv), NewCountStore(kv)
	const per, goroutines = 25, 4
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, 2*goroutines*per)
	for g := range goroutines {
		for i, w := range []*CountStore{w1, w2} {
			wg.Go(func() {
				for n := range per {
					d := Counts{Delivered: 2, Failed: 1, LastEvent: t0.Add(time.Duration(n) * time.Millisecond)}
					if g == 0 && n == per-1 {
						d.LastError, d.LastErrorTime = fmt.Sprintf("writer %d", i), t0.Add(time.Duration(i)*time.Hour)
					}
					if _, _, err := w.Add(t.Context(), "k1", d); err != nil {
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := Counts{Delivered: 2 * 2 * goroutines * per, Failed: 2 * goroutines * per,
		LastEvent: t0.Add((per - 1) * time.Millisecond), LastError: "writer 1", LastErrorTime: t0.Add(time.Hour)}
	got, rev, err := w1.Read(t.Context(), "k1")
	if err != nil || rev == 0 || !sameCounts(got, want) {
		t.Fatalf("after concurrent adds: got %+v rev %d (%v), want %+v", got, rev, err, want)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	s, kv = openEmbedded(t, dir)
	defer s.Close(context.Background())
	cs := NewCountStore(kv)
	if got, _, err := cs.Read(t.Context(), "k1"); err != nil || !sameCounts(got, want) {
		t.Fatalf("after the store's restart: got %+v (%v), want %+v", got, err, want)
	}
	if err := cs.Delete(t.Context(), "k1"); err != nil {
		t.Fatal(err)
	}
	if err := cs.Delete(t.Context(), "k1"); err != nil {
		t.Errorf("deleting again: %v, want nil", err)
	}
	if got, rev, err := cs.Read(t.Context(), "k1"); err != nil || rev != 0 || !got.IsZero() {
		t.Errorf("after Delete: got %+v rev %d (%v), want nothing", got, rev, err)
	}
	// Counting starts again on a deleted key.
	if got, _, err := cs.Add(t.Context(), "k1", Counts{Delivered: 1}); err != nil || got.Delivered != 1 {
		t.Errorf("add after Delete: got %+v (%v)", got, err)
	}
}

// sameCounts compares counts, times by instant.
func sameCounts(a, b Counts) bool {
	return a.Delivered == b.Delivered && a.Failed == b.Failed && a.LastEvent.Equal(b.LastEvent) &&
		a.LastError == b.LastError && a.LastErrorTime.Equal(b.LastErrorTime)
}

// flakyKV is a store.KV that fails every call while down.
type flakyKV struct {
	store.KV
	down atomic.Bool
}

var errDown = fmt.Errorf("store down: %w", nimbus.ErrUnavailable)

func (k *flakyKV) Get(ctx context.Context, key string) (store.Entry, error) {
	if k.down.Load() {
		return store.Entry{}, errDown
	}
	return k.KV.Get(ctx, key)
}

func (k *flakyKV) Create(ctx context.Context, key string, v []byte) (uint64, error) {
	if k.down.Load() {
		return 0, errDown
	}
	return k.KV.Create(ctx, key, v)
}

func (k *flakyKV) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if k.down.Load() {
		return 0, errDown
	}
	return k.KV.Update(ctx, key, v, rev)
}

// countsFixture is a Manager with a push trigger whose function fails
// when told to, counting into kv.
type countsFixture struct {
	m    *Manager
	fn   *nimbus.Function
	tr   nimbus.Trigger
	fail atomic.Int32 // invocations left to fail
}

func newCountsFixture(t *testing.T, kv store.KV, flushEvery time.Duration) *countsFixture {
	t.Helper()
	f := &countsFixture{tr: nimbus.Trigger{ID: "6f1d2c3b-0000-4000-8000-000000000001", Name: "p", Type: "push", Enabled: true, BatchSize: 1, MaxRetries: 1}}
	f.fn = &nimbus.Function{Name: "fn", Triggers: []nimbus.Trigger{f.tr}}
	inv := &fakeInvoker{answer: func(int, []map[string]any) (nimbus.Result, error) {
		if f.fail.Add(-1) >= 0 {
			return nimbus.Result{Err: &nimbus.FunctionError{Type: "Error", Message: "boom"}}, nil
		}
		return nimbus.Result{Payload: []byte("null")}, nil
	}}
	f.m = NewManager(ManagerConfig{
		Functions: newFakeFunctions(f.fn), Invoker: inv,
		Types:  map[string]Factory{"push": func(json.RawMessage) (Source, error) { return nil, nil }},
		Sleep:  func(context.Context, time.Duration) error { return nil },
		Counts: NewCountStore(kv), FlushEvery: flushEvery,
	})
	if err := f.m.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *countsFixture) deliver(t *testing.T, n int) {
	t.Helper()
	var sink *Deliverer
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		var ok bool
		if sink, ok = f.m.Sink("fn", "p"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no sink for the push trigger")
		}
	}
	for i := range n {
		if err := sink.Deliver(t.Context(), []Message{{ID: fmt.Sprint(i), Data: []byte(`1`)}}); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *countsFixture) status() StatusView { return f.m.Status("fn", &f.tr) }

// TestManagerCountsDurable: counts and the last error reach the store, are
// shown at once before they do, survive a new Manager on the same store,
// and two Managers sharing the store add up.
func TestManagerCountsDurable(t *testing.T) {
	noLeaks(t)
	kv := mem.NewKV()
	a := newCountsFixture(t, kv, time.Hour) // flushes only when closed
	a.fail.Store(3)                         // the first message fails twice (for good), the second once
	a.deliver(t, 3)
	v := a.status()
	if v.Delivered != 2 || v.Failed != 1 || v.LastError != "the function failed: Error: boom" || v.LastErrorTime.IsZero() {
		t.Fatalf("before any flush: got %+v, want 2 delivered, 1 failed and the last error", v)
	}
	if _, rev, _ := NewCountStore(kv).Read(t.Context(), a.tr.ID); rev != 0 {
		t.Fatalf("stored before the first flush")
	}
	closeManager(t, a.m)
	stored, _, err := NewCountStore(kv).Read(t.Context(), a.tr.ID)
	if err != nil || stored.Delivered != 2 || stored.Failed != 1 || stored.LastError == "" {
		t.Fatalf("stored on close: %+v (%v)", stored, err)
	}

	b := newCountsFixture(t, kv, 10*time.Millisecond)
	c := newCountsFixture(t, kv, 10*time.Millisecond)
	defer closeManager(t, c.m)
	defer closeManager(t, b.m)
	if v := b.status(); v.Delivered != 2 || v.Failed != 1 || v.LastError != stored.LastError || !v.LastErrorTime.Equal(stored.LastErrorTime) {
		t.Fatalf("a new manager: got %+v, want what the old one stored", v)
	}
	b.deliver(t, 5)
	c.deliver(t, 7)
	if v := b.status(); v.Delivered < 7 {
		t.Errorf("its own deliveries show at once: got %d delivered, want at least 2+5", v.Delivered)
	}
	waitCounts(t, c, 14, 1)
	waitCounts(t, b, 14, 1)
}

// waitCounts waits until f shows the counts.
func waitCounts(t *testing.T, f *countsFixture, delivered, failed int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		v := f.status()
		if v.Delivered == delivered && v.Failed == failed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d delivered, %d failed; want %d and %d", v.Delivered, v.Failed, delivered, failed)
		}
	}
}

// TestManagerCountsStoreOutage: while the store is down, counts are kept,
// shown and retried, and delivery goes on; they are stored once it is back.
func TestManagerCountsStoreOutage(t *testing.T) {
	noLeaks(t)
	kv := &flakyKV{KV: mem.NewKV()}
	f := newCountsFixture(t, kv, 5*time.Millisecond)
	defer closeManager(t, f.m)
	kv.down.Store(true)
	start := time.Now()
	f.deliver(t, 4)
	if d := time.Since(start); d > time.Second {
		t.Errorf("delivery took %s with the store down", d)
	}
	time.Sleep(50 * time.Millisecond) // several failed flushes
	if v := f.status(); v.Delivered != 4 {
		t.Errorf("store down: got %d delivered, want 4 (kept in memory)", v.Delivered)
	}
	kv.down.Store(false)
	cs := NewCountStore(kv)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c, _, err := cs.Read(t.Context(), f.tr.ID)
		if err == nil && c.Delivered == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store back: stored %+v (%v), want 4 delivered", c, err)
		}
	}
	if v := f.status(); v.Delivered != 4 {
		t.Errorf("after the flush: got %d delivered, want 4 (not counted twice)", v.Delivered)
	}
}

// TestManagerCountsDeleted: a deleted trigger's counts leave the store.
func TestManagerCountsDeleted(t *testing.T) {
	noLeaks(t)
	kv := mem.NewKV()
	f := newCountsFixture(t, kv, 5*time.Millisecond)
	defer closeManager(t, f.m)
	f.deliver(t, 1)
	cs := NewCountStore(kv)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, rev, _ := cs.Read(t.Context(), f.tr.ID); rev != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("counts never stored")
		}
	}
	fns := f.m.cfg.Functions.(*fakeFunctions)
	fns.put(&nimbus.Function{Name: "fn"})
	f.m.Changed("fn")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		_, err := kv.Get(t.Context(), f.tr.ID)
		if errors.Is(err, nimbus.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts of the deleted trigger still stored (%v)", err)
		}
	}
}
