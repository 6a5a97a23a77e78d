// Package audittest is the conformance suite of audit.Log: every
// implementation runs it from its own tests, so that all behave alike.
package audittest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/audit"
)

// Harness opens the Log under test.
type Harness struct {
	// Open returns a new, empty Log; the suite calls it once per subtest.
	Open func(t *testing.T) audit.Log
	// Reopen, when set, closes l and opens it again on the same storage
	// (a restart); the suite then checks that nothing recorded was lost.
	Reopen func(t *testing.T, l audit.Log) audit.Log
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"Empty", testEmpty},
		{"NewestFirst", testNewestFirst},
		{"Filters", testFilters},
		{"Pages", testPages},
		{"PagesFiltered", testPagesFiltered},
		{"RareMatch", testRareMatch},
		{"BadInput", testBadInput},
		{"Concurrent", testConcurrent},
		{"Reopen", testReopen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
}

// base is the time of the suite's first event.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// event returns the i-th test event: a minute after the (i-1)-th, by key
// k<i%3>, on function f<i%2>, action A<i%4>.
func event(i int) audit.Event {
	return audit.Event{
		Time: base.Add(time.Duration(i) * time.Minute), Key: fmt.Sprintf("k%d", i%3), AccessKeyID: fmt.Sprintf("NIMBUSID%d", i),
		Role: "admin", Source: "127.0.0.1", Action: fmt.Sprintf("A%d", i%4), Route: "POST /x/{name}",
		Function: fmt.Sprintf("f%d", i%2), Resource: fmt.Sprintf("r%d", i), Status: 200 + i%2,
	}
}

func record(t *testing.T, l audit.Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := l.Record(t.Context(), event(i)); err != nil {
			t.Fatalf("Record(%d): %v", i, err)
		}
	}
}

// list returns the ids (AccessKeyIDs' numbers) of a page.
func list(t *testing.T, l audit.Log, f audit.Filter) ([]string, string) {
	t.Helper()
	if f.Limit == 0 {
		f.Limit = audit.DefaultLimit
	}
	evs, next, err := l.List(t.Context(), f)
	if err != nil {
		t.Fatalf("List(%+v): %v", f, err)
	}
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.Resource
	}
	return ids, next
}

// want is the resources of events is, in that order.
func want(is ...int) []string {
	out := make([]string, len(is))
	for i, n := range is {
		out[i] = fmt.Sprintf("r%d", n)
	}
	return out
}

func same(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func testEmpty(t *testing.T, h Harness) {
	l := h.Open(t)
	if got, next := list(t, l, audit.Filter{}); len(got) != 0 || next != "" {
		t.Errorf("empty log lists %v, marker %q; want nothing", got, next)
	}
	if got, _ := list(t, l, audit.Filter{Function: "f0", Since: base}); len(got) != 0 {
		t.Errorf("empty log lists %v with a filter; want nothing", got)
	}
}

func testNewestFirst(t *testing.T, h Harness) {
	l := h.Open(t)
	record(t, l, 0, 3)
	evs, next, err := l.List(t.Context(), audit.Filter{Limit: 10})
	if err != nil || next != "" || len(evs) != 3 {
		t.Fatalf("List = %d events, %q, %v; want 3, no marker", len(evs), next, err)
	}
	for i, e := range evs {
		w := event(2 - i)
		if !e.Time.Equal(w.Time) {
			t.Errorf("event %d Time = %v, want %v", i, e.Time, w.Time)
		}
		e.Time = w.Time
		if e != w {
			t.Errorf("event %d = %+v, want %+v", i, e, w)
		}
	}
}

func testFilters(t *testing.T, h Harness) {
	l := h.Open(t)
	record(t, l, 0, 12)
	tests := []struct {
		name string
		f    audit.Filter
		want []string
	}{
		{"key", audit.Filter{Key: "k1"}, want(10, 7, 4, 1)},
		{"function", audit.Filter{Function: "f1"}, want(11, 9, 7, 5, 3, 1)},
		{"action", audit.Filter{Action: "A3"}, want(11, 7, 3)},
		{"since", audit.Filter{Since: base.Add(9 * time.Minute)}, want(11, 10, 9)},
		{"until", audit.Filter{Until: base.Add(2 * time.Minute)}, want(2, 1, 0)},
		{"window", audit.Filter{Since: base.Add(4 * time.Minute), Until: base.Add(6 * time.Minute)}, want(6, 5, 4)},
		{"all", audit.Filter{Key: "k1", Function: "f0", Action: "A0", Since: base.Add(2 * time.Minute)}, want(4)},
		{"none", audit.Filter{Key: "nobody"}, want()},
		{"unknown function", audit.Filter{Function: "no.such-fn"}, want()},
	}
	for _, tt := range tests {
		if got, next := list(t, l, tt.f); !same(got, tt.want) || next != "" {
			t.Errorf("%s: List = %v, marker %q; want %v, no marker", tt.name, got, next, tt.want)
		}
	}
}

// pages lists every page of f and checks each is at most f.Limit.
func pages(t *testing.T, l audit.Log, f audit.Filter) []string {
	t.Helper()
	var all []string
	for n := 0; ; n++ {
		if n > 1000 {
			t.Fatal("paging does not end")
		}
		got, next := list(t, l, f)
		if len(got) > f.Limit {
			t.Fatalf("page of %d events, limit %d", len(got), f.Limit)
		}
		all = append(all, got...)
		if next == "" {
			return all
		}
		if len(got) == 0 {
			t.Fatalf("an empty page with a marker %q", next)
		}
		f.Marker = next
	}
}

func testPages(t *testing.T, h Harness) {
	l := h.Open(t)
	record(t, l, 0, 25)
	var w []int
	for i := 24; i >= 0; i-- {
		w = append(w, i)
	}
	if got := pages(t, l, audit.Filter{Limit: 10}); !same(got, want(w...)) {
		t.Errorf("pages of 10 = %v, want %v", got, want(w...))
	}
	if got := pages(t, l, audit.Filter{Limit: 5}); !same(got, want(w...)) {
		t.Errorf("pages of 5 (ending exactly) = %v, want %v", got, want(w...))
	}
	// A page: then more events are recorded; the next page continues where
	// the first ended.
	first, next := list(t, l, audit.Filter{Limit: 20})
	record(t, l, 25, 30)
	rest, _ := list(t, l, audit.Filter{Limit: 20, Marker: next})
	if got := append(first, rest...); !same(got, want(w...)) {
		t.Errorf("pages around new events = %v, want %v", got, want(w...))
	}
}

func testPagesFiltered(t *testing.T, h Harness) {
	l := h.Open(t)
	record(t, l, 0, 30)
	got := pages(t, l, audit.Filter{Limit: 3, Function: "f0", Since: base.Add(10 * time.Minute)})
	if w := want(28, 26, 24, 22, 20, 18, 16, 14, 12, 10); !same(got, w) {
		t.Errorf("filtered pages = %v, want %v", got, w)
	}
}

// testRareMatch: the only events that match are far below the newest ones.
func testRareMatch(t *testing.T, h Harness) {
	l := h.Open(t)
	record(t, l, 0, 2)
	for i := 0; i < 700; i++ {
		e := event(2)
		e.Key, e.Function, e.Resource = "busy", "busy", fmt.Sprint("busy", i)
		if err := l.Record(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := list(t, l, audit.Filter{Key: "k1"}); !same(got, want(1)) {
		t.Errorf("rare key = %v, want %v", got, want(1))
	}
	if got := pages(t, l, audit.Filter{Limit: 1, Function: "f0"}); !same(got, want(0)) {
		t.Errorf("rare function pages = %v, want %v", got, want(0))
	}
	if got, _ := list(t, l, audit.Filter{Limit: 1000}); len(got) != 702 {
		t.Errorf("a page of 1000 holds %d events, want all 702", len(got))
	}
}

func testBadInput(t *testing.T, h Harness) {
	l := h.Open(t)
	record(t, l, 0, 2)
	for _, f := range []audit.Filter{
		{Limit: 0}, {Limit: -1}, {Limit: audit.MaxLimit + 1},
		{Limit: 1, Marker: "x"}, {Limit: 1, Marker: "s0"}, {Limit: 1, Marker: "s-1"}, {Limit: 1, Marker: "s1x"},
		{Limit: 1, Since: base.Add(time.Hour), Until: base},
	} {
		if _, _, err := l.List(t.Context(), f); !errors.Is(err, nimbus.ErrInvalid) {
			t.Errorf("List(%+v) error = %v, want ErrInvalid", f, err)
		}
	}
	// A marker beyond the newest event lists from the newest.
	if got, _ := list(t, l, audit.Filter{Limit: 5, Marker: audit.Marker(1 << 40)}); !same(got, want(1, 0)) {
		t.Errorf("a marker past the end lists %v, want %v", got, want(1, 0))
	}
}

func testConcurrent(t *testing.T, h Harness) {
	l := h.Open(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 10; i++ {
				if err := l.Record(t.Context(), event(g*10+i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got, _ := list(t, l, audit.Filter{Limit: 1000})
	seen := map[string]bool{}
	for _, r := range got {
		seen[r] = true
	}
	if len(got) != 80 || len(seen) != 80 {
		t.Errorf("listed %d events (%d distinct), want 80", len(got), len(seen))
	}
}

func testReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("this Log keeps nothing across a restart")
	}
	l := h.Open(t)
	record(t, l, 0, 5)
	l = h.Reopen(t, l)
	record(t, l, 5, 7)
	if got, _ := list(t, l, audit.Filter{}); !same(got, want(6, 5, 4, 3, 2, 1, 0)) {
		t.Errorf("after a restart = %v, want %v", got, want(6, 5, 4, 3, 2, 1, 0))
	}
}
