package taskindex

import (
	"cmp"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)

func task(fn, id, status string, created, updated time.Duration) *nimbus.Task {
	return &nimbus.Task{ID: id, Function: fn, Status: status, Created: t0.Add(created), Updated: t0.Add(updated)}
}

func openIndex(t testing.TB, path string, o Options) *Index {
	t.Helper()
	x, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

func newIndex(t testing.TB) *Index {
	t.Helper()
	return openIndex(t, filepath.Join(t.TempDir(), "tasks.db"), Options{})
}

func apply(t testing.TB, x *Index, seq uint64, recs ...*nimbus.Task) []*nimbus.Task {
	t.Helper()
	took, err := x.Apply(recs, seq)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return took
}

// sameTask compares records field by field, times with Equal.
func sameTask(a, b nimbus.Task) bool { return a.Equal(&b) }

// mustGet returns a task's record, from the cache (cached) or the database.
func mustGet(t testing.TB, x *Index, fn, id string, cached bool) nimbus.Task {
	t.Helper()
	if !cached {
		x.cache.purge()
	}
	got, found, err := x.Get(fn, id)
	if err != nil || !found {
		t.Fatalf("Get(%s, %s) = found %v, %v", fn, id, found, err)
	}
	return got
}

func TestApplyMerge(t *testing.T) {
	const E, R, Y, S, F, X, P = nimbus.TaskEnqueued, nimbus.TaskRunning, nimbus.TaskRetrying,
		nimbus.TaskSucceeded, nimbus.TaskFailed, nimbus.TaskStopping, nimbus.TaskStopped
	rec := func(status string, created, updated time.Duration) *nimbus.Task {
		return task("f", "t1", status, created, updated)
	}
	type step struct {
		rec  *nimbus.Task
		took bool
	}
	cases := []struct {
		name  string
		steps []step
		want  int // the step whose record stands
	}{
		{"in order", []step{{rec(E, 0, 0), true}, {rec(R, 0, 1), true}, {rec(S, 0, 2), true}}, 2},
		{"running before enqueued", []step{{rec(R, 0, 1), true}, {rec(E, 0, 0), false}}, 0},
		{"late running after final", []step{{rec(E, 0, 0), true}, {rec(S, 0, 2), true}, {rec(R, 0, 1), false}}, 1},
		{"final stands over a later running", []step{{rec(F, 0, 1), true}, {rec(R, 0, 5), false}}, 0},
		{"retrying after running", []step{{rec(R, 0, 1), true}, {rec(Y, 0, 2), true}}, 1},
		{"older retrying ignored", []step{{rec(Y, 0, 2), true}, {rec(R, 0, 1), false}}, 0},
		{"stopping outranks a later running", []step{{rec(X, 0, 1), true}, {rec(R, 0, 3), false}}, 0},
		{"stopping replaces running", []step{{rec(R, 0, 3), true}, {rec(X, 0, 1), true}}, 1},
		{"stopped after stopping", []step{{rec(X, 0, 1), true}, {rec(P, 0, 2), true}}, 1},
		{"final outranks stopping", []step{{rec(P, 0, 1), true}, {rec(X, 0, 2), false}}, 0},
		{"same rank tie: the later arrival", []step{{rec(R, 0, 1), true}, {rec(Y, 0, 1), true}}, 1},
		{"re-drive: later created wins over final", []step{{rec(F, 0, 5), true}, {rec(E, 10, 10), true}}, 1},
		{"re-drive: old life's final after it", []step{{rec(E, 10, 10), true}, {rec(F, 0, 5), false}}, 0},
		{"re-drive: new life runs", []step{{rec(S, 0, 2), true}, {rec(E, 10, 10), true},
			{rec(R, 10, 11), true}, {rec(S, 0, 3), false}}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/one by one", func(t *testing.T) {
			x := newIndex(t)
			for i, s := range tc.steps {
				if got := len(apply(t, x, 0, s.rec)) == 1; got != s.took {
					t.Errorf("step %d took effect: got %v, want %v", i, got, s.took)
				}
			}
			checkStands(t, x, *tc.steps[tc.want].rec)
		})
		t.Run(tc.name+"/one batch", func(t *testing.T) {
			x := newIndex(t)
			var recs, want []*nimbus.Task
			for _, s := range tc.steps {
				recs = append(recs, s.rec)
				if s.took {
					want = append(want, s.rec)
				}
			}
			if got := apply(t, x, 0, recs...); !slices.Equal(got, want) {
				t.Errorf("took effect: got %v, want %v", got, want)
			}
			checkStands(t, x, *tc.steps[tc.want].rec)
		})
	}
}

// checkStands checks Get, from the cache and the database, and List.
func checkStands(t *testing.T, x *Index, want nimbus.Task) {
	t.Helper()
	if got := mustGet(t, x, want.Function, want.ID, true); !sameTask(got, want) {
		t.Errorf("Get (cache): got %+v, want %+v", got, want)
	}
	if got := mustGet(t, x, want.Function, want.ID, false); !sameTask(got, want) {
		t.Errorf("Get (database): got %+v, want %+v", got, want)
	}
	page, _, err := x.List(want.Function, async.ListOptions{Limit: 10})
	if err != nil || len(page) != 1 || !sameTask(page[0], want) {
		t.Errorf("List: got %+v, %v; want [%+v]", page, err, want)
	}
}

// TestApplyAnyOrder applies a task's records in random orders and batches:
// the record that supersedes all others stands, whatever the order.
// TestApplySameAgain: a record applied again (a node's own record, back
// from the stream) writes nothing and is not reported as taking effect,
// while a record that differs only in a later field still does.
func TestApplySameAgain(t *testing.T) {
	x := newIndex(t)
	c0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	r := &nimbus.Task{ID: "a", Function: "f", Status: nimbus.TaskRunning, Attempts: 1, Created: c0, Updated: c0.Add(time.Second)}
	if took := apply(t, x, 0, r); len(took) != 1 {
		t.Fatalf("first apply took %d", len(took))
	}
	again := *r
	again.Created, again.Updated = again.Created.In(time.FixedZone("x", 3600)), again.Updated.Local()
	if took := apply(t, x, 7, &again); len(took) != 0 {
		t.Errorf("the same record again took effect: %+v", took)
	}
	if _, seq, _ := x.Position(); seq != 7 {
		t.Errorf("position = %d, want 7 (moved even when nothing changed)", seq)
	}
	x.cache.purge()
	if took := apply(t, x, 0, &again); len(took) != 0 {
		t.Errorf("the same record again, read from the database, took effect: %+v", took)
	}
	more := *r
	more.Result = "partial"
	if took := apply(t, x, 0, &more); len(took) != 1 {
		t.Errorf("a record with the same times but another result did not take effect")
	}
}

func TestApplyAnyOrder(t *testing.T) {
	statuses := []string{nimbus.TaskEnqueued, nimbus.TaskRunning, nimbus.TaskRetrying, nimbus.TaskRunning,
		nimbus.TaskStopping, nimbus.TaskSucceeded}
	var recs []*nimbus.Task
	for life := range 2 {
		for i, s := range statuses {
			recs = append(recs, task("f", "t", s, time.Duration(life)*time.Hour, time.Duration(life)*time.Hour+time.Duration(i)*time.Second))
		}
	}
	want := recs[len(recs)-1] // the second life's Succeeded
	rng := rand.New(rand.NewPCG(1, 2))
	x := newIndex(t)
	for round := range 20 {
		if err := x.Reset("s"); err != nil {
			t.Fatal(err)
		}
		shuffled := slices.Clone(recs)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for len(shuffled) > 0 {
			n := min(len(shuffled), 1+rng.IntN(4))
			apply(t, x, 0, shuffled[:n]...)
			shuffled = shuffled[n:]
		}
		if got := mustGet(t, x, "f", "t", round%2 == 0); !sameTask(got, *want) {
			t.Fatalf("round %d: got %s %v, want %s %v", round, got.Status, got.Updated, want.Status, want.Updated)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	zone := time.FixedZone("X", 5*3600+1800)
	full := nimbus.Task{ID: "id-1", Function: "fn", Status: nimbus.TaskFailed, Attempts: 3,
		Created: time.Date(2026, 1, 2, 3, 4, 5, 1, zone), Started: time.Date(2026, 1, 2, 3, 4, 6, 999999999, time.UTC),
		Updated: time.Date(2026, 1, 2, 3, 4, 7, 123456789, zone), Finished: time.Date(2026, 1, 2, 3, 4, 7, 123456790, zone),
		DurationMs: 12.345, Result: "", Error: "boom \"quoted\" ünïcode\n", Destination: "function:other",
		DestinationStatus: "Failed: no such function"}
	minimal := nimbus.Task{ID: "id-2", Function: "fn", Status: nimbus.TaskEnqueued, Created: t0, Updated: t0}
	path := filepath.Join(t.TempDir(), "tasks.db")
	x := openIndex(t, path, Options{})
	apply(t, x, 1, &full, &minimal)
	for _, want := range []nimbus.Task{full, minimal} {
		checkStands2(t, x, want)
	}
	x.Close()
	x = openIndex(t, path, Options{})
	for _, want := range []nimbus.Task{full, minimal} {
		if got := mustGet(t, x, "fn", want.ID, true); !sameTask(got, want) {
			t.Errorf("after reopen: got %+v, want %+v", got, want)
		}
	}
}

// checkStands2 checks Get from the cache and the database (not List, as
// the function has other tasks).
func checkStands2(t *testing.T, x *Index, want nimbus.Task) {
	t.Helper()
	if got := mustGet(t, x, want.Function, want.ID, true); !sameTask(got, want) {
		t.Errorf("Get (cache): got %+v, want %+v", got, want)
	}
	if got := mustGet(t, x, want.Function, want.ID, false); !sameTask(got, want) {
		t.Errorf("Get (database): got %+v, want %+v", got, want)
	}
}

func TestBadRecords(t *testing.T) {
	x := newIndex(t)
	good := task("f", "ok", nimbus.TaskEnqueued, 0, 0)
	farFuture := task("f", "far", nimbus.TaskEnqueued, 0, 0)
	farFuture.Created = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // JSON cannot encode it
	recs := []*nimbus.Task{nil, task("", "x", nimbus.TaskEnqueued, 0, 0), task("f", "", nimbus.TaskEnqueued, 0, 0), farFuture, good}
	if got := apply(t, x, 7, recs...); len(got) != 1 || got[0] != good {
		t.Errorf("took effect: got %v, want only the good record", got)
	}
	if _, found, err := x.Get("f", "far"); found || err != nil {
		t.Errorf("Get(far) = found %v, %v; want absent", found, err)
	}
	if _, seq, _ := x.Position(); seq != 7 {
		t.Errorf("position: got %d, want 7", seq)
	}
	if _, err := x.Apply(nil, math.MaxInt64+1); !errors.Is(err, nimbus.ErrInvalid) {
		t.Errorf("Apply(seq > MaxInt64): got %v, want ErrInvalid", err)
	}
	for _, id := range []string{"", "unknown"} {
		if _, found, err := x.Get("f", id); found || err != nil {
			t.Errorf("Get(f, %q) = found %v, %v; want absent", id, found, err)
		}
	}
	if _, found, err := x.Get("", "ok"); found || err != nil {
		t.Errorf("Get(\"\", ok) = found %v, %v; want absent", found, err)
	}
	if page, next, err := x.List("", async.ListOptions{Limit: 10}); len(page) != 0 || next != "" || err != nil {
		t.Errorf("List(\"\") = %v, %q, %v; want nothing", page, next, err)
	}
	if _, _, err := x.List("f", async.ListOptions{Limit: -1}); !errors.Is(err, nimbus.ErrInvalid) {
		t.Errorf("List(limit -1): got %v, want ErrInvalid", err)
	}
	if c, err := x.Counts(""); len(c) != 0 || err != nil {
		t.Errorf("Counts(\"\") = %v, %v; want empty", c, err)
	}
}

func TestOpenBad(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string
		o    Options
		is   error
	}{
		{"negative cache", filepath.Join(dir, "a.db"), Options{CacheSize: -1}, nimbus.ErrInvalid},
		{"a directory", dir, Options{}, nil},
		{"not a database", garbage, Options{}, nil},
		{"under a file", filepath.Join(notDir, "x.db"), Options{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Open(tc.path, tc.o)
			if err == nil {
				x.Close()
				t.Fatal("Open: no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Open: got %v, want %v", err, tc.is)
			}
		})
	}
}

// listAll pages through fn's tasks and checks every page's size.
func listAll(t *testing.T, x *Index, fn string, o async.ListOptions) []nimbus.Task {
	t.Helper()
	var all []nimbus.Task
	for pages := 0; ; pages++ {
		page, next, err := x.List(fn, o)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		if len(page) != o.Limit || next != page[len(page)-1].ID {
			t.Fatalf("page %d: %d tasks, next %q", pages, len(page), next)
		}
		if pages > 1000 {
			t.Fatal("List does not end")
		}
		o.Marker = next
	}
}

// reference filters and orders tasks as List must.
func reference(all []*nimbus.Task, fn string, o async.ListOptions) []string {
	var ids []*nimbus.Task
	for _, t := range all {
		if t.Function != fn || (o.Status != "" && t.Status != o.Status) ||
			(!o.Since.IsZero() && t.Created.Before(o.Since)) || (!o.Until.IsZero() && !t.Created.Before(o.Until)) {
			continue
		}
		ids = append(ids, t)
	}
	slices.SortFunc(ids, func(a, b *nimbus.Task) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	out := make([]string, len(ids))
	for i, t := range ids {
		out[i] = t.ID
	}
	return out
}

func ids(ts []nimbus.Task) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

// listFixture is 60 tasks of f and 20 of g: several created at the same
// instant (ordered by id), ids not in creation order, four statuses.
func listFixture() []*nimbus.Task {
	statuses := []string{nimbus.TaskSucceeded, nimbus.TaskFailed, nimbus.TaskRunning, nimbus.TaskEnqueued}
	var all []*nimbus.Task
	for i := range 80 {
		fn := "f"
		if i%4 == 3 {
			fn = "g"
		}
		created := time.Duration(i/3) * time.Minute // three at a time share an instant
		id := fmt.Sprintf("task-%02d", (i*37)%80)
		all = append(all, task(fn, id, statuses[i%len(statuses)], created, created+time.Second))
	}
	return all
}

func TestList(t *testing.T) {
	all := listFixture()
	x := newIndex(t)
	apply(t, x, 0, all...)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	cases := []struct {
		name string
		fn   string
		o    async.ListOptions
	}{
		{"every task, pages of 7", "f", async.ListOptions{Limit: 7}},
		{"pages of 1", "f", async.ListOptions{Limit: 1}},
		{"one page exactly", "f", async.ListOptions{Limit: 60}},
		{"one big page", "f", async.ListOptions{Limit: 1000}},
		{"default limit", "g", async.ListOptions{}},
		{"status", "f", async.ListOptions{Status: nimbus.TaskFailed, Limit: 4}},
		{"status none", "g", async.ListOptions{Status: nimbus.TaskSucceeded, Limit: 4}},
		{"unknown status", "f", async.ListOptions{Status: "Bogus", Limit: 4}},
		{"since", "f", async.ListOptions{Since: at(10), Limit: 5}},
		{"until", "f", async.ListOptions{Until: at(10), Limit: 5}},
		{"since until", "f", async.ListOptions{Since: at(5), Until: at(20), Limit: 3}},
		{"since until status", "f", async.ListOptions{Status: nimbus.TaskSucceeded, Since: at(5), Until: at(20), Limit: 2}},
		{"since not on the minute", "f", async.ListOptions{Since: at(10).Add(time.Nanosecond), Limit: 5}},
		{"empty window", "f", async.ListOptions{Since: at(20), Until: at(20), Limit: 5}},
		{"other function", "g", async.ListOptions{Limit: 3}},
		{"unknown function", "h", async.ListOptions{Limit: 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(listAll(t, x, tc.fn, tc.o))
			if want := reference(all, tc.fn, tc.o); !slices.Equal(got, want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
		})
	}
}

func TestListMarker(t *testing.T) {
	all := listFixture()
	x := newIndex(t)
	apply(t, x, 0, all...)
	first := reference(all, "f", async.ListOptions{})
	cases := []struct {
		name   string
		marker string
		want   []string
	}{
		{"unknown marker starts over", "no-such-task", first[:5]},
		{"another function's task starts over", reference(all, "g", async.ListOptions{})[0], first[:5]},
		{"a marker", first[9], first[10:15]},
		{"the last task", first[len(first)-1], nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			page, _, err := x.List("f", async.ListOptions{Limit: 5, Marker: tc.marker})
			if got := ids(page); err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	// The marker task changed status since: the next page goes on after
	// its place, not from the beginning.
	failed := reference(all, "f", async.ListOptions{Status: nimbus.TaskFailed})
	page, next, err := x.List("f", async.ListOptions{Status: nimbus.TaskFailed, Limit: 3})
	if err != nil || next != failed[2] {
		t.Fatalf("first page: %v, %q, %v", ids(page), next, err)
	}
	marker := mustGet(t, x, "f", next, true)
	marker.Status, marker.Updated = nimbus.TaskSucceeded, marker.Updated.Add(time.Hour)
	apply(t, x, 0, &marker)
	page, _, err = x.List("f", async.ListOptions{Status: nimbus.TaskFailed, Limit: 3, Marker: next})
	if got := ids(page); err != nil || !slices.Equal(got, failed[3:6]) {
		t.Errorf("after the marker changed: got %v, %v; want %v", got, err, failed[3:6])
	}
}

// TestListPlan checks that a page is read through an index, in order,
// without sorting: its cost is the page's.
func TestListPlan(t *testing.T) {
	x := newIndex(t)
	all := listFixture()
	apply(t, x, 0, all...)
	f := reference(all, "f", async.ListOptions{})
	early, late := f[2], f[50]
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	cases := []struct {
		o      async.ListOptions
		index  string
		marker bool // the page seeks to the marker (else to Since)
	}{
		{async.ListOptions{Limit: 10}, "tasks_by_created", false},
		{async.ListOptions{Limit: 10, Marker: late}, "tasks_by_created", true},
		{async.ListOptions{Limit: 10, Since: at(1), Until: at(60), Marker: late}, "tasks_by_created", true},
		{async.ListOptions{Limit: 10, Since: at(10), Until: at(60), Marker: early}, "tasks_by_created", false},
		{async.ListOptions{Limit: 10, Status: nimbus.TaskFailed}, "tasks_by_status", false},
		{async.ListOptions{Limit: 10, Status: nimbus.TaskFailed, Marker: late, Since: at(1)}, "tasks_by_status", true},
	}
	for _, tc := range cases {
		q, args, err := x.listQuery(t.Context(), "f", tc.o)
		if err != nil {
			t.Fatal(err)
		}
		plan := queryPlan(t, x.r, q, args...)
		if !strings.Contains(plan, "SEARCH tasks USING INDEX "+tc.index+" (fn=?") || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%+v: plan %q, want a search of %s without sorting", tc.o, plan, tc.index)
		}
		if seeks := strings.Contains(plan, "(created,id)>(?,?)"); seeks != tc.marker {
			t.Errorf("%+v: plan %q, seeks to the marker %v, want %v", tc.o, plan, seeks, tc.marker)
		}
		if !tc.marker && !tc.o.Since.IsZero() && !strings.Contains(plan, "created>?") {
			t.Errorf("%+v: plan %q does not seek to Since", tc.o, plan)
		}
	}
}

func queryPlan(t *testing.T, db *sql.DB, q string, args ...any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}

func TestCounts(t *testing.T) {
	x := newIndex(t)
	type counts = map[string]int
	const E, R, S, F = nimbus.TaskEnqueued, nimbus.TaskRunning, nimbus.TaskSucceeded, nimbus.TaskFailed
	steps := []struct {
		name string
		do   func()
		f, g counts
	}{
		{"enqueued", func() {
			apply(t, x, 0, task("f", "1", E, 0, 0), task("f", "2", E, 0, 0), task("f", "3", E, 0, 0), task("g", "1", E, 0, 0))
		}, counts{E: 3}, counts{E: 1}},
		{"running", func() { apply(t, x, 0, task("f", "1", R, 0, 1), task("f", "2", R, 0, 1)) }, counts{E: 1, R: 2}, counts{E: 1}},
		{"ignored", func() { apply(t, x, 0, task("f", "1", E, 0, 0)) }, counts{E: 1, R: 2}, counts{E: 1}},
		{"same status", func() { apply(t, x, 0, task("f", "1", R, 0, 2)) }, counts{E: 1, R: 2}, counts{E: 1}},
		{"final", func() { apply(t, x, 0, task("f", "1", S, 0, 3), task("f", "2", F, 0, 3)) }, counts{E: 1, S: 1, F: 1}, counts{E: 1}},
		{"re-drive", func() { apply(t, x, 0, task("f", "2", E, time.Hour, time.Hour)) }, counts{E: 2, S: 1}, counts{E: 1}},
		{"sweep", func() {
			if n, err := x.Sweep(t0.Add(time.Minute)); err != nil || n != 3 {
				t.Errorf("Sweep = %d, %v; want 3", n, err)
			}
		}, counts{E: 1}, counts{}},
		{"reset", func() {
			if err := x.Reset("s2"); err != nil {
				t.Fatal(err)
			}
		}, counts{}, counts{}},
	}
	for _, s := range steps {
		s.do()
		for fn, want := range map[string]counts{"f": s.f, "g": s.g} {
			if got, err := x.Counts(fn); err != nil || !mapsEqual(got, want) {
				t.Errorf("%s: Counts(%s) = %v, %v; want %v", s.name, fn, got, err, want)
			}
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestSweep(t *testing.T) {
	x := openIndex(t, filepath.Join(t.TempDir(), "tasks.db"), Options{CacheSize: 100})
	const old, recent = 2*sweepBatch + 17, 50
	var recs []*nimbus.Task
	for i := range old + recent {
		updated := time.Duration(i) * time.Millisecond
		if i >= old {
			updated = time.Hour
		}
		recs = append(recs, task(fmt.Sprintf("fn%d", i%7), fmt.Sprintf("t%05d", i), nimbus.TaskSucceeded, 0, updated))
	}
	apply(t, x, 0, recs...)
	if n, err := x.Sweep(t0.Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("Sweep before every record = %d, %v; want 0", n, err)
	}
	if n, err := x.Sweep(t0.Add(time.Minute)); err != nil || n != old {
		t.Errorf("Sweep = %d, %v; want %d", n, err, old)
	}
	if n, err := x.Sweep(t0.Add(time.Minute)); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v; want 0", n, err)
	}
	for i, r := range recs {
		_, found, err := x.Get(r.Function, r.ID) // the cached ones too
		if err != nil || found != (i >= old) {
			t.Fatalf("Get(%s) after the sweep: found %v, %v", r.ID, found, err)
		}
	}
	total := 0
	for i := range 7 {
		c, _ := x.Counts(fmt.Sprintf("fn%d", i))
		total += c[nimbus.TaskSucceeded]
	}
	if total != recent {
		t.Errorf("counts after the sweep: %d, want %d", total, recent)
	}
}

func TestPositionReset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	x := openIndex(t, path, Options{})
	check := func(step, wantStream string, wantSeq uint64) {
		t.Helper()
		if s, q, err := x.Position(); err != nil || s != wantStream || q != wantSeq {
			t.Errorf("%s: Position = %q, %d, %v; want %q, %d", step, s, q, err, wantStream, wantSeq)
		}
	}
	check("new", "", 0)
	if err := x.Reset("stream-a"); err != nil {
		t.Fatal(err)
	}
	check("reset", "stream-a", 0)
	apply(t, x, 5, task("f", "1", nimbus.TaskEnqueued, 0, 0))
	check("applied 5", "stream-a", 5)
	apply(t, x, 3, task("f", "2", nimbus.TaskEnqueued, 0, 0))
	check("applied 3 (replayed)", "stream-a", 5)
	apply(t, x, 0, task("f", "3", nimbus.TaskEnqueued, 0, 0))
	check("own write", "stream-a", 5)
	apply(t, x, 9)
	check("an empty batch", "stream-a", 9)
	x.Close()
	x = openIndex(t, path, Options{})
	check("reopened", "stream-a", 9)
	if c, _ := x.Counts("f"); c[nimbus.TaskEnqueued] != 3 {
		t.Errorf("reopened: counts %v, want 3 Enqueued", c)
	}
	if page, _, _ := x.List("f", async.ListOptions{Limit: 10}); len(page) != 3 {
		t.Errorf("reopened: %d tasks, want 3", len(page))
	}
	mustGet(t, x, "f", "1", true)
	if err := x.Reset("stream-b"); err != nil {
		t.Fatal(err)
	}
	check("reset again", "stream-b", 0)
	if _, found, _ := x.Get("f", "1"); found {
		t.Error("a task survived Reset")
	}
	if page, _, _ := x.List("f", async.ListOptions{Limit: 10}); len(page) != 0 {
		t.Errorf("after Reset: %d tasks", len(page))
	}
	apply(t, x, 1, task("f", "1", nimbus.TaskRunning, 0, 1))
	if got := mustGet(t, x, "f", "1", false); got.Status != nimbus.TaskRunning {
		t.Errorf("after Reset: %s", got.Status)
	}
}

// TestSchemaChange: a file of another schema version is emptied on open.
func TestSchemaChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	x := openIndex(t, path, Options{})
	if err := x.Reset("s"); err != nil {
		t.Fatal(err)
	}
	apply(t, x, 4, task("f", "1", nimbus.TaskEnqueued, 0, 0))
	if _, err := x.w.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	x.Close()
	x = openIndex(t, path, Options{})
	if s, q, err := x.Position(); err != nil || s != "" || q != 0 {
		t.Errorf("Position = %q, %d, %v; want an empty index", s, q, err)
	}
	if _, found, _ := x.Get("f", "1"); found {
		t.Error("a task survived the schema change")
	}
	apply(t, x, 1, task("f", "1", nimbus.TaskEnqueued, 0, 0))
}

// TestCacheFill: a reader's fill from a read made before a write committed
// never replaces or resurrects what the write stored, even once evicted.
func TestCacheFill(t *testing.T) {
	c, err := newCache(1)
	if err != nil {
		t.Fatal(err)
	}
	k := key{"f", "1"}
	old, cur := task("f", "1", nimbus.TaskEnqueued, 0, 0), task("f", "1", nimbus.TaskRunning, 0, 1)
	_, _, gen := c.get(k) // a reader misses, then reads old from the database
	c.store([]*nimbus.Task{cur})
	c.store([]*nimbus.Task{task("f", "2", nimbus.TaskRunning, 0, 1)}) // evicts cur
	c.fill(k, *old, gen)
	if got, ok, _ := c.get(k); ok {
		t.Errorf("cache serves %s after a newer write", got.Status)
	}
	_, _, gen = c.get(k)
	c.fill(k, *cur, gen)
	if got, ok, _ := c.get(k); !ok || got.Status != nimbus.TaskRunning {
		t.Errorf("fill without a write in between: got %v %v", got.Status, ok)
	}
}

// TestConcurrent runs readers against a writer: a reader never sees a
// task's record go back to an older one (the cache is small, so entries
// are evicted and filled all the time), and lists stay ordered.
func TestConcurrent(t *testing.T) {
	x := openIndex(t, filepath.Join(t.TempDir(), "tasks.db"), Options{CacheSize: 8})
	const tasks, fns = 150, 3
	lifecycle := []string{nimbus.TaskEnqueued, nimbus.TaskRunning, nimbus.TaskSucceeded}
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- reader(x, r, tasks, fns, done)
		}()
	}
	for step, status := range lifecycle {
		for i := 0; i < tasks; i += 10 {
			var batch []*nimbus.Task
			for j := i; j < i+10; j++ {
				batch = append(batch, task(fmt.Sprintf("fn%d", j%fns), fmt.Sprintf("t%04d", j), status, 0, time.Duration(step)*time.Second))
			}
			apply(t, x, uint64(step*tasks+i+1), batch...)
		}
	}
	if n, err := x.Sweep(t0.Add(time.Hour)); err != nil || n != tasks {
		t.Errorf("Sweep = %d, %v", n, err)
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// reader reads until done, checking what it sees.
func reader(x *Index, r, tasks, fns int, done <-chan struct{}) error {
	seen := make(map[string]nimbus.Task)
	rng := rand.New(rand.NewPCG(uint64(r), 7))
	for {
		select {
		case <-done:
			if len(seen) == 0 {
				return fmt.Errorf("reader %d: saw no task", r)
			}
			return nil
		default:
		}
		j := rng.IntN(tasks)
		fn, id := fmt.Sprintf("fn%d", j%fns), fmt.Sprintf("t%04d", j)
		got, found, err := x.Get(fn, id)
		if err != nil {
			return err
		}
		if prev, ok := seen[id]; found && ok && !got.Supersedes(&prev) {
			return fmt.Errorf("reader %d: %s went back from %s to %s", r, id, prev.Status, got.Status)
		}
		if found {
			seen[id] = got
		}
		if err := checkOrdered(x, fn); err != nil {
			return fmt.Errorf("reader %d: %w", r, err)
		}
	}
}

func checkOrdered(x *Index, fn string) error {
	page, _, err := x.List(fn, async.ListOptions{Limit: 50, Status: nimbus.TaskRunning})
	if err != nil {
		return err
	}
	if !slices.IsSortedFunc(page, func(a, b nimbus.Task) int { return strings.Compare(a.ID, b.ID) }) {
		return fmt.Errorf("page out of order: %v", ids(page))
	}
	for _, t := range page {
		if t.Status != nimbus.TaskRunning || t.Function != fn {
			return fmt.Errorf("page has %s %s", t.Function, t.Status)
		}
	}
	if _, err := x.Counts(fn); err != nil {
		return err
	}
	_, _, err = x.Position()
	return err
}

// TestApplyFails: a batch that fails changes nothing, in the database or
// the cache, and an index that is closed answers errors.
func TestApplyFails(t *testing.T) {
	x := newIndex(t)
	before := task("f", "1", nimbus.TaskEnqueued, 0, 0)
	apply(t, x, 3, before)
	if _, err := x.w.Exec(`CREATE TRIGGER fail BEFORE INSERT ON tasks WHEN new.id = 'boom'
		BEGIN SELECT RAISE(ABORT, 'injected'); END`); err != nil {
		t.Fatal(err)
	}
	_, err := x.Apply([]*nimbus.Task{task("f", "1", nimbus.TaskRunning, 0, 1), task("f", "boom", nimbus.TaskEnqueued, 0, 0)}, 4)
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Apply: got %v, want the injected failure", err)
	}
	for _, cached := range []bool{true, false} {
		if got := mustGet(t, x, "f", "1", cached); got.Status != nimbus.TaskEnqueued {
			t.Errorf("after a failed Apply (cached %v): %s", cached, got.Status)
		}
	}
	if c, _ := x.Counts("f"); !mapsEqual(c, map[string]int{nimbus.TaskEnqueued: 1}) {
		t.Errorf("after a failed Apply: counts %v", c)
	}
	if _, seq, _ := x.Position(); seq != 3 {
		t.Errorf("after a failed Apply: position %d, want 3", seq)
	}
	x.Close()
	if _, err := x.Apply([]*nimbus.Task{task("f", "2", nimbus.TaskEnqueued, 0, 0)}, 5); err == nil {
		t.Error("Apply after Close: no error")
	}
	if _, _, err := x.List("f", async.ListOptions{}); err == nil {
		t.Error("List after Close: no error")
	}
	if _, err := x.Counts("f"); err == nil {
		t.Error("Counts after Close: no error")
	}
	if _, err := x.Sweep(t0); err == nil {
		t.Error("Sweep after Close: no error")
	}
	if err := x.Reset("s"); err == nil {
		t.Error("Reset after Close: no error")
	}
}
