// Package asynctest is the conformance suite of async.Backend: every
// implementation (internal/async/mem, internal/async/nats) runs it, so the
// Async Service's policy can rely on the same behaviour from each.
package asynctest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
)

// Harness makes the backends the suite runs against.
type Harness struct {
	// New makes an empty store that nodes share and returns how to open a
	// node's backend on it (the suite closes them).
	New func(t *testing.T) (open func(t *testing.T) async.Backend)
	// Crash makes a node stop as one that died: it neither renews nor
	// releases its claims.
	Crash func(t *testing.T, b async.Backend)
	// Now is the backends' clock.
	Now func() time.Time
	// Advance moves the clock on by d (or waits d, for a real clock).
	Advance func(t *testing.T, d time.Duration)
	// ClaimTTL is how long a claim lasts without renewal.
	ClaimTTL time.Duration
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		f    func(*testing.T, Harness)
	}{
		{"PutClaimDone", testPutClaimDone},
		{"FIFOPerFunction", testFIFO},
		{"FunctionsDoNotBlockEachOther", testIndependent},
		{"NotBeforeWaits", testNotBefore},
		{"ClaimIsExclusive", testExclusive},
		{"NodesNeverClaimOneMessageTwice", testNoDoubleClaims},
		{"CrashedNodeClaimsLapse", testCrash},
		{"PendingAndWakeups", testPendingWakeups},
		{"RecordsMerge", testRecordsMerge},
		{"TasksPages", testTasksPages},
		{"StopsReachEveryNode", testStops},
		{"Letters", testLetters},
		{"ManyFunctions", testManyFunctions},
		{"Backlog", testBacklog},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.f(t, h) })
	}
}

// node opens a backend and closes it when the test ends.
func node(t *testing.T, open func(*testing.T) async.Backend) async.Backend {
	t.Helper()
	b := open(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// uniq names a function for this test (backends may share a server).
func uniq(t *testing.T, name string) string {
	return fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1e9)
}

func event(h Harness, fn, id string) (*nimbus.Task, *async.Event) {
	now := h.Now().UTC()
	return &nimbus.Task{ID: id, Function: fn, Status: nimbus.TaskEnqueued, Created: now, Updated: now},
		&async.Event{ID: id, Function: fn, Payload: []byte(`{"id":"` + id + `"}`), Created: now}
}

func put(t *testing.T, h Harness, b async.Backend, fn string, ids ...string) {
	t.Helper()
	var recs []*nimbus.Task
	var evs []*async.Event
	for _, id := range ids {
		r, e := event(h, fn, id)
		recs, evs = append(recs, r), append(evs, e)
	}
	if err := b.Put(t.Context(), recs, evs); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func ids(c *async.Claim) []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, ev := range c.Events {
		out = append(out, ev.ID)
	}
	return out
}

func claim(t *testing.T, b async.Backend, fn string) (*async.Claim, time.Time) {
	t.Helper()
	c, next, err := b.Claim(t.Context(), fn)
	if err != nil {
		t.Fatalf("Claim(%s): %v", fn, err)
	}
	return c, next
}

func testPutClaimDone(t *testing.T, h Harness) {
	b := node(t, h.New(t))
	fn := uniq(t, "put")
	put(t, h, b, fn, "a", "b", "c")
	c, _ := claim(t, b, fn)
	if got := ids(c); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("claimed %v, want [a b c] (one Put, one message)", got)
	}
	if string(c.Events[1].Payload) != `{"id":"b"}` || c.Events[1].Function != fn {
		t.Errorf("event = %+v", c.Events[1])
	}
	if again, next := claim(t, b, fn); again != nil {
		t.Fatalf("claimed %v twice", ids(again))
	} else if !next.IsZero() && next.Before(h.Now()) {
		t.Errorf("next = %v, in the past", next)
	}
	if err := b.Done(t.Context(), c); err != nil {
		t.Fatalf("Done: %v", err)
	}
	if c, next := claim(t, b, fn); c != nil || !next.IsZero() {
		t.Fatalf("after Done: claimed %v, next %v; want nothing waiting", ids(c), next)
	}
	if fns, _ := b.Pending(t.Context()); slices.Contains(fns, fn) {
		t.Errorf("Pending lists %s after its only message was done", fn)
	}
	if _, err := b.Task(t.Context(), fn, "b"); err != nil {
		t.Errorf("the record Put stored: %v", err)
	}
}

func testFIFO(t *testing.T, h Harness) {
	b := node(t, h.New(t))
	fn := uniq(t, "fifo")
	for i := range 5 {
		put(t, h, b, fn, fmt.Sprint(i))
	}
	var got []string
	for range 5 {
		c, _ := claim(t, b, fn)
		if c == nil {
			t.Fatalf("ran out after %v", got)
		}
		got = append(got, ids(c)...)
		if err := b.Done(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) {
		t.Errorf("order %v, want 0..4", got)
	}
}

func testIndependent(t *testing.T, h Harness) {
	b := node(t, h.New(t))
	fa, fb := uniq(t, "a"), uniq(t, "b")
	put(t, h, b, fa, "a1")
	put(t, h, b, fb, "b1")
	put(t, h, b, fa, "a2")
	ca, _ := claim(t, b, fa)
	cb, _ := claim(t, b, fb)
	if !slices.Equal(ids(ca), []string{"a1"}) || !slices.Equal(ids(cb), []string{"b1"}) {
		t.Fatalf("claimed %v and %v", ids(ca), ids(cb))
	}
	ca2, _ := claim(t, b, fa)
	if !slices.Equal(ids(ca2), []string{"a2"}) {
		t.Fatalf("a's second message = %v while its first is held", ids(ca2))
	}
}

func testNotBefore(t *testing.T, h Harness) {
	b := node(t, h.New(t))
	fn := uniq(t, "retry")
	rec, ev := event(h, fn, "later")
	ev.NotBefore = h.Now().Add(2 * time.Second).UTC()
	ev.Attempts = 1
	if err := b.Put(t.Context(), []*nimbus.Task{rec}, []*async.Event{ev}); err != nil {
		t.Fatal(err)
	}
	put(t, h, b, fn, "now")
	c, _ := claim(t, b, fn)
	if !slices.Equal(ids(c), []string{"now"}) {
		t.Fatalf("claimed %v, want [now]: a retry that is not due must not hold up the ones behind it", ids(c))
	}
	c2, next := claim(t, b, fn)
	if c2 != nil || next.IsZero() || next.After(ev.NotBefore.Add(time.Second)) {
		t.Fatalf("claimed %v, next %v; want nothing until %v", ids(c2), next, ev.NotBefore)
	}
	h.Advance(t, 2100*time.Millisecond)
	c3, _ := claim(t, b, fn)
	if !slices.Equal(ids(c3), []string{"later"}) || c3.Events[0].Attempts != 1 {
		t.Fatalf("after its time: claimed %v", ids(c3))
	}
}

func testExclusive(t *testing.T, h Harness) {
	open := h.New(t)
	b1, b2 := node(t, open), node(t, open)
	fn := uniq(t, "excl")
	put(t, h, b1, fn, "x")
	c1, _ := claim(t, b1, fn)
	if c1 == nil {
		t.Fatal("first node claimed nothing")
	}
	if c2, _ := claim(t, b2, fn); c2 != nil {
		t.Fatalf("second node claimed %v while the first holds it", ids(c2))
	}
	if err := b1.Release(t.Context(), c1); err != nil {
		t.Fatal(err)
	}
	var c2 *async.Claim
	waitFor(t, "the released message to be claimable on another node", func() bool {
		c2, _ = claim(t, b2, fn)
		return c2 != nil
	})
	if !slices.Equal(ids(c2), []string{"x"}) {
		t.Fatalf("after Release the second node claimed %v", ids(c2))
	}
	if err := b2.Done(t.Context(), c2); err != nil {
		t.Fatal(err)
	}
	if c, _ := claim(t, b1, fn); c != nil {
		t.Fatalf("claimed %v after Done on another node", ids(c))
	}
}

// testNoDoubleClaims has two nodes claim and finish one function's
// messages as fast as they can: each message is claimed once, also when one
// node reads a message the other is finishing.
func testNoDoubleClaims(t *testing.T, h Harness) {
	open := h.New(t)
	b1, b2 := node(t, open), node(t, open)
	fn := uniq(t, "race")
	const n = 150
	for i := range n {
		put(t, h, b1, fn, fmt.Sprint(i))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for _, b := range []async.Backend{b1, b2} {
		wg.Go(func() {
			for idle := 0; idle < 50; {
				c, _, err := b.Claim(t.Context(), fn)
				if err != nil {
					t.Error(err)
					return
				}
				if c == nil {
					idle++
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				for _, id := range ids(c) {
					seen[id]++
				}
				mu.Unlock()
				if err := b.Done(t.Context(), c); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d of %d messages claimed", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("message %s claimed %d times", id, k)
		}
	}
}

func testCrash(t *testing.T, h Harness) {
	open := h.New(t)
	b1, b2 := node(t, open), node(t, open)
	fn := uniq(t, "crash")
	put(t, h, b2, fn, "x")
	if c, _ := claim(t, b1, fn); c == nil {
		t.Fatal("claimed nothing")
	}
	h.Crash(t, b1)
	if c, _ := claim(t, b2, fn); c != nil {
		t.Fatalf("claimed %v before the dead node's claim lapsed", ids(c))
	}
	deadline := time.Now().Add(h.ClaimTTL*3 + 10*time.Second)
	for {
		h.Advance(t, h.ClaimTTL/2)
		if c, _ := claim(t, b2, fn); c != nil {
			if !slices.Equal(ids(c), []string{"x"}) {
				t.Fatalf("took over %v", ids(c))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead node's message was never taken over")
		}
	}
}

func testPendingWakeups(t *testing.T, h Harness) {
	open := h.New(t)
	b1, b2 := node(t, open), node(t, open)
	fn := uniq(t, "wake")
	put(t, h, b1, fn, "x")
	fns, err := b2.Pending(t.Context())
	if err != nil || !slices.Contains(fns, fn) {
		t.Fatalf("Pending = %v, %v; want %s", fns, err, fn)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-b2.Wakeups():
			if got == fn {
				return
			}
		case <-timeout:
			t.Fatal("the other node got no wake-up for the new events")
		}
	}
}

func rec(h Harness, fn, id, status string, created time.Time, updated time.Duration) *nimbus.Task {
	return &nimbus.Task{ID: id, Function: fn, Status: status, Created: created, Updated: created.Add(updated)}
}

func testRecordsMerge(t *testing.T, h Harness) {
	open := h.New(t)
	b1, b2 := node(t, open), node(t, open)
	fn := uniq(t, "rec")
	c0 := h.Now().UTC().Truncate(time.Millisecond)
	write := func(b async.Backend, ts ...*nimbus.Task) {
		t.Helper()
		if err := b.Record(t.Context(), ts); err != nil {
			t.Fatal(err)
		}
	}
	write(b1, rec(h, fn, "t1", nimbus.TaskSucceeded, c0, 2*time.Second))
	// A listing waits until the node's own writes are indexed: the late
	// record below then meets the stored one, not one held in memory.
	if _, _, err := b1.Tasks(t.Context(), fn, async.ListOptions{Limit: 10}); err != nil {
		t.Fatal(err)
	}
	write(b1, rec(h, fn, "t1", nimbus.TaskRunning, c0, 3*time.Second)) // late and lower: ignored
	got, err := b1.Task(t.Context(), fn, "t1")
	if err != nil || got.Status != nimbus.TaskSucceeded {
		t.Fatalf("Task = %+v, %v; want Succeeded to stand", got, err)
	}
	if !got.Created.Equal(c0) || !got.Updated.Equal(c0.Add(2*time.Second)) {
		t.Errorf("times did not round-trip: %+v", got)
	}
	write(b2, rec(h, fn, "t1", nimbus.TaskEnqueued, c0.Add(time.Minute), 0)) // a re-drive
	waitFor(t, "the other node's record", func() bool {
		got, _ := b1.Task(t.Context(), fn, "t1")
		return got.Status == nimbus.TaskEnqueued
	})
	if _, err := b1.Task(t.Context(), fn, "nope"); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("unknown task: %v, want ErrNotFound", err)
	}
	b1.RecordLater(rec(h, fn, "t2", nimbus.TaskRunning, c0, 0))
	waitFor(t, "a record stored later", func() bool {
		got, err := b2.Task(t.Context(), fn, "t2")
		return err == nil && got.Status == nimbus.TaskRunning
	})
	counts, err := b2.Counts(t.Context(), fn)
	if err != nil || counts[nimbus.TaskEnqueued] != 1 || counts[nimbus.TaskRunning] != 1 || len(counts) != 2 {
		t.Errorf("Counts = %v, %v", counts, err)
	}
}

func testTasksPages(t *testing.T, h Harness) {
	b := node(t, h.New(t))
	fn := uniq(t, "pages")
	c0 := h.Now().UTC().Truncate(time.Millisecond)
	var recs []*nimbus.Task
	for i := range 25 {
		status := nimbus.TaskSucceeded
		if i%5 == 0 {
			status = nimbus.TaskFailed
		}
		recs = append(recs, rec(h, fn, fmt.Sprintf("t%02d", i), status, c0.Add(time.Duration(i)*time.Second), 0))
	}
	slices.Reverse(recs) // stored out of order; listed by creation
	if err := b.Record(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	var got []string
	marker := ""
	for page := 0; ; page++ {
		ts, next, err := b.Tasks(t.Context(), fn, async.ListOptions{Limit: 10, Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range ts {
			got = append(got, tk.ID)
		}
		if next == "" {
			break
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
		marker = next
	}
	if len(got) != 25 || got[0] != "t00" || got[24] != "t24" || !slices.IsSorted(got) {
		t.Fatalf("listed %v", got)
	}
	failed, next, err := b.Tasks(t.Context(), fn, async.ListOptions{Limit: 100, Status: nimbus.TaskFailed})
	if err != nil || len(failed) != 5 || next != "" {
		t.Fatalf("Failed = %d tasks, next %q, %v", len(failed), next, err)
	}
	window, _, err := b.Tasks(t.Context(), fn, async.ListOptions{Limit: 100,
		Since: c0.Add(10 * time.Second), Until: c0.Add(15 * time.Second)})
	if err != nil || len(window) != 5 || window[0].ID != "t10" || window[4].ID != "t14" {
		t.Fatalf("window = %v, %v", window, err)
	}
	if ts, _, err := b.Tasks(t.Context(), uniq(t, "none"), async.ListOptions{Limit: 10}); err != nil || len(ts) != 0 {
		t.Errorf("a function without tasks: %v, %v", ts, err)
	}
}

func testStops(t *testing.T, h Harness) {
	open := h.New(t)
	b1, b2 := node(t, open), node(t, open)
	fn := uniq(t, "stop")
	c0 := h.Now().UTC()
	if err := b1.Record(t.Context(), []*nimbus.Task{rec(h, fn, "s1", nimbus.TaskStopping, c0, time.Second)}); err != nil {
		t.Fatal(err)
	}
	want := async.TaskKey(fn, "s1")
	timeout := time.After(5 * time.Second)
	for {
		select {
		case key := <-b2.Stops():
			if key == want {
				return
			}
		case <-timeout:
			t.Fatal("the other node was not told of the stop")
		}
	}
}

func testLetters(t *testing.T, h Harness) {
	b := node(t, h.New(t))
	fa, fb := uniq(t, "la"), uniq(t, "lb")
	for i, fn := range []string{fa, fb, fa, fa} {
		dl := &nimbus.DeadLetter{TaskID: fmt.Sprint(i), Function: fn, Condition: "RetriesExhausted",
			Created: h.Now().UTC(), Failed: h.Now().UTC(), Payload: []byte(`{}`)}
		if err := b.Bury(t.Context(), dl); err != nil {
			t.Fatal(err)
		}
	}
	all, err := b.Letters(t.Context(), fa, 0, 10)
	if err != nil || len(all) != 3 || all[0].TaskID != "0" || all[2].TaskID != "3" {
		t.Fatalf("Letters = %+v, %v", all, err)
	}
	rest, _ := b.Letters(t.Context(), fa, all[0].Seq, 10)
	if len(rest) != 2 || rest[0].Seq != all[1].Seq {
		t.Fatalf("after the first: %+v", rest)
	}
	one, _ := b.Letters(t.Context(), fa, 0, 1)
	if len(one) != 1 {
		t.Fatalf("limit 1: %+v", one)
	}
	if err := b.Remove(t.Context(), all[1].Seq); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(t.Context(), all[1].Seq); err != nil {
		t.Errorf("removing a removed letter: %v", err)
	}
	left, _ := b.Letters(t.Context(), fa, 0, 10)
	if len(left) != 2 || left[1].TaskID != "3" {
		t.Errorf("after Remove: %+v", left)
	}
}

// testManyFunctions puts events for more functions than JetStream's
// default of 1,000 consumers a stream: each is claimable.
func testManyFunctions(t *testing.T, h Harness) {
	b := node(t, h.New(t))
	const n = 1100
	base := uniq(t, "many")
	var recs []*nimbus.Task
	var evs []*async.Event
	for i := range n {
		r, e := event(h, fmt.Sprintf("%s-%d", base, i), "x")
		recs, evs = append(recs, r), append(evs, e)
	}
	if err := b.Put(t.Context(), recs, evs); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				c, _, err := b.Claim(t.Context(), fmt.Sprintf("%s-%d", base, i))
				if err != nil || c == nil {
					t.Errorf("function %d of %d: claimed %v, %v", i, n, c, err)
					continue
				}
				if err := b.Done(t.Context(), c); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testBacklog: a Backlogger counts the messages per function, those held by
// a claim included, until they are done.
func testBacklog(t *testing.T, h Harness) {
	b := node(t, h.New(t))
	bl, ok := b.(async.Backlogger)
	if !ok {
		t.Skip("the backend does not report its backlog")
	}
	f1, f2 := uniq(t, "backlog1"), uniq(t, "backlog2")
	put(t, h, b, f1, "a")
	put(t, h, b, f1, "b")
	put(t, h, b, f2, "c")
	got, err := bl.Backlog(t.Context())
	if err != nil || got[f1] != 2 || got[f2] != 1 {
		t.Fatalf("Backlog = %v, %v; want %s: 2, %s: 1", got, err, f1, f2)
	}
	c, _ := claim(t, b, f2)
	if got, _ := bl.Backlog(t.Context()); got[f2] != 1 {
		t.Errorf("Backlog of a claimed message = %d, want 1", got[f2])
	}
	if err := b.Done(t.Context(), c); err != nil {
		t.Fatalf("Done: %v", err)
	}
	if got, _ := bl.Backlog(t.Context()); got[f2] != 0 || got[f1] != 2 {
		t.Errorf("Backlog after Done = %v, want %s: 2 and no %s", got, f1, f2)
	}
}
