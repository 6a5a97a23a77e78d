package records_test

import (
	"errors"
	"math"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/records"
)

// statsCase is a set of records and what they add up to.
type statsCase struct {
	recs []records.Record
}

// sum is what the records of the functions keep admits that started in
// [since, until) add up to: the expected Total.
func (c *statsCase) sum(since, until time.Time, span time.Duration, keep func(string) bool) (records.StatsValues, []float64) {
	var v records.StatsValues
	var durs []float64
	var durMs float64
	var mbms int64
	for _, r := range c.recs {
		if r.StartTime.Before(since) || !r.StartTime.Before(until) || !keep(r.Function) {
			continue
		}
		switch r.Status {
		case records.StatusThrottled:
			v.Throttles++
			continue
		case records.StatusPlatformError:
			v.PlatformErrors++
			continue
		case records.StatusFunctionError, records.StatusTimeout:
			v.Errors++
		}
		v.Invocations++
		if r.ColdStart {
			v.ColdStarts++
		}
		durs = append(durs, r.Duration)
		durMs += r.Duration
		mbms += int64(r.MemorySize) * r.BilledDuration
	}
	v.GBSeconds = float64(mbms) / 1024 / 1000
	v.Concurrency = durMs / float64(span.Milliseconds())
	sort.Float64s(durs)
	return v, durs
}

// exactQuantile is the q quantile of sorted durations.
func exactQuantile(durs []float64, q float64) float64 {
	if len(durs) == 0 {
		return 0
	}
	return durs[max(int(math.Ceil(q*float64(len(durs))))-1, 0)]
}

// checkValues compares got with want, the percentiles within 10 % of the
// exact ones of durs.
func checkValues(t *testing.T, what string, got, want records.StatsValues, durs []float64) {
	t.Helper()
	if got.Invocations != want.Invocations || got.Errors != want.Errors || got.Throttles != want.Throttles ||
		got.PlatformErrors != want.PlatformErrors || got.ColdStarts != want.ColdStarts {
		t.Errorf("%s: counts %+v, want %+v", what, got, want)
	}
	if !near(got.GBSeconds, want.GBSeconds, 1e-9) || !near(got.Concurrency, want.Concurrency, 1e-9) {
		t.Errorf("%s: GB-s %v concurrency %v, want %v %v", what, got.GBSeconds, got.Concurrency, want.GBSeconds, want.Concurrency)
	}
	for _, p := range []struct {
		q   float64
		got float64
	}{{0.5, got.P50}, {0.99, got.P99}} {
		exact := exactQuantile(durs, p.q)
		if exact == 0 && p.got != 0 || exact != 0 && math.Abs(p.got-exact)/exact > 0.10 {
			t.Errorf("%s: p%v = %v, exact %v (more than 10 %% off)", what, p.q*100, p.got, exact)
		}
	}
}

// sameValues compares two figures, the sums of floats to their rounding.
func sameValues(a, b records.StatsValues) bool {
	return a.Invocations == b.Invocations && a.Errors == b.Errors && a.Throttles == b.Throttles &&
		a.PlatformErrors == b.PlatformErrors && a.ColdStarts == b.ColdStarts && a.P50 == b.P50 && a.P99 == b.P99 &&
		near(a.GBSeconds, b.GBSeconds, 1e-12) && near(a.Concurrency, b.Concurrency, 1e-12)
}

func near(a, b, eps float64) bool { return math.Abs(a-b) <= eps*math.Max(1, math.Abs(b)) }

func all(string) bool { return true }

// waitStats waits until the account's 24 h statistics count n
// invocations, throttles and platform errors.
func waitStats(t *testing.T, s *records.Store, now time.Time, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rep, err := s.Stats(t.Context(), records.StatsQuery{Window: "24h", Now: now})
		if err != nil {
			t.Fatal(err)
		}
		got := rep.Total.Invocations + rep.Total.Throttles + rep.Total.PlatformErrors
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("statistics count %d requests, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStats folds records of three functions into the statistics and
// checks every window against the records: points, totals, percentiles,
// one function, by function, a restricted caller; then replays every
// record (the cursors lost, a bucket lost) and finds the same figures.
func TestStats(t *testing.T) {
	s, st := open(t, t.TempDir(), records.Config{FlushInterval: 5 * time.Millisecond, Aggregate: true, AggregateInterval: 20 * time.Millisecond})
	now := time.Now().UTC()
	hourSince := now.Truncate(time.Minute).Add(time.Minute - time.Hour)
	var c statsCase
	add := func(r records.Record) {
		c.recs = append(c.recs, r)
		s.Add(&r)
	}
	statuses := []string{records.StatusSuccess, records.StatusSuccess, records.StatusSuccess, records.StatusFunctionError,
		records.StatusTimeout, records.StatusThrottled, records.StatusPlatformError}
	for i := range 300 {
		at := hourSince.Add(time.Duration(i%40)*time.Minute + time.Duration(i)*time.Millisecond)
		r := rec("sa", i, at, statuses[i%len(statuses)], 256, int64(1+i*37%200), i%11 == 0)
		r.Duration = 0.3 + float64(i*37%200) + float64(i%3)/10
		if r.Status == records.StatusThrottled || r.Status == records.StatusPlatformError {
			r.Duration, r.BilledDuration = 0, 0
		}
		add(r)
	}
	for i := range 40 {
		r := rec("sb", i, hourSince.Add(time.Duration(i)*20*time.Second), records.StatusSuccess, 1024, 1500, i == 0)
		r.Duration = 1400 + float64(i)
		add(r)
	}
	// At the edges: the first minute of the hour window, the one before
	// it, three hours ago (past the 1 m bucket), three days ago (in the
	// 7 d window only).
	add(rec("sc", 1, hourSince, records.StatusSuccess, 128, 5, true))
	add(rec("sc", 2, hourSince.Add(-time.Second), records.StatusFunctionError, 128, 7, false))
	add(rec("sc", 3, now.Add(-3*time.Hour), records.StatusSuccess, 128, 9, false))
	add(rec("sd", 4, now.Add(-72*time.Hour), records.StatusSuccess, 128, 11, false))
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitCursors(t, st.JetStream())
	waitStats(t, s, now, int64(len(c.recs)-1))

	check := func(t *testing.T, phase string) map[string]*records.StatsReport {
		reps := map[string]*records.StatsReport{}
		for _, w := range []struct {
			window string
			step   time.Duration
			span   time.Duration
		}{{"1h", time.Minute, time.Hour}, {"24h", 15 * time.Minute, 24 * time.Hour}, {"7d", time.Hour, 7 * 24 * time.Hour}} {
			rep, err := s.Stats(t.Context(), records.StatsQuery{Window: w.window, Now: now, ByFunction: true})
			if err != nil {
				t.Fatal(err)
			}
			reps[w.window] = rep
			what := phase + " " + w.window
			until := now.Truncate(w.step).Add(w.step)
			if rep.Step != int(w.step/time.Second) || !rep.Until.Equal(until) || !rep.Since.Equal(until.Add(-w.span)) {
				t.Fatalf("%s: step %d since %s until %s", what, rep.Step, rep.Since, rep.Until)
			}
			if len(rep.Points) != int(w.span/w.step) {
				t.Fatalf("%s: %d points, want %d", what, len(rep.Points), w.span/w.step)
			}
			for i, p := range rep.Points {
				from := rep.Since.Add(time.Duration(i) * w.step)
				if !p.Time.Equal(from) {
					t.Fatalf("%s: point %d at %s, want %s", what, i, p.Time, from)
				}
				want, durs := c.sum(from, from.Add(w.step), w.step, all)
				checkValues(t, what+" point "+p.Time.Format(time.TimeOnly), p.StatsValues, want, durs)
			}
			want, durs := c.sum(rep.Since, rep.Until, w.span, all)
			checkValues(t, what+" total", rep.Total, want, durs)
			var names []string
			for _, f := range rep.Functions {
				names = append(names, f.Function)
				want, durs := c.sum(rep.Since, rep.Until, w.span, func(fn string) bool { return fn == f.Function })
				checkValues(t, what+" "+f.Function, f.StatsValues, want, durs)
			}
			wantNames := map[string][]string{"1h": {"sa", "sb", "sc"}, "24h": {"sa", "sb", "sc"}, "7d": {"sa", "sb", "sc", "sd"}}[w.window]
			if !reflect.DeepEqual(names, wantNames) {
				t.Errorf("%s: functions %v, want %v", what, names, wantNames)
			}

			one, err := s.Stats(t.Context(), records.StatsQuery{Window: w.window, Now: now, Function: "sa"})
			if err != nil {
				t.Fatal(err)
			}
			want, durs = c.sum(rep.Since, rep.Until, w.span, func(fn string) bool { return fn == "sa" })
			checkValues(t, what+" function sa", one.Total, want, durs)
			if one.Functions != nil {
				t.Errorf("%s: functions without ByFunction: %v", what, one.Functions)
			}

			mine := func(fn string) bool { return fn == "sb" || fn == "sc" }
			restricted, err := s.Stats(t.Context(), records.StatsQuery{Window: w.window, Now: now, Functions: mine, ByFunction: true})
			if err != nil {
				t.Fatal(err)
			}
			want, durs = c.sum(rep.Since, rep.Until, w.span, mine)
			checkValues(t, what+" restricted", restricted.Total, want, durs)
			for i, p := range restricted.Points {
				want, durs := c.sum(p.Time, p.Time.Add(w.step), w.step, mine)
				checkValues(t, what+" restricted point "+strconv.Itoa(i), p.StatsValues, want, durs)
			}
			if len(restricted.Functions) != 2 || restricted.Functions[0].Function != "sb" || restricted.Functions[1].Function != "sc" {
				t.Errorf("%s: restricted functions %+v, want sb and sc", what, restricted.Functions)
			}
		}
		return reps
	}
	before := check(t, "folded")
	if p := before["1h"].Points[50]; p.Invocations != 0 || p.P50 != 0 || p.P99 != 0 || p.Concurrency != 0 {
		t.Errorf("an empty minute: %+v, want zeros", p)
	}

	// A replay: every cursor lost, and the quarter-hour bucket with its
	// keys; the round folds every record again.
	js := st.JetStream()
	for _, b := range []string{"nimbus_usage", "nimbus_stats_1m", "nimbus_stats_1h"} {
		kv, err := js.KeyValue(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		if err := kv.Delete(t.Context(), "cursor"); err != nil {
			t.Fatal(err)
		}
	}
	if err := js.DeleteKeyValue(t.Context(), "nimbus_stats_15m"); err != nil {
		t.Fatal(err)
	}
	waitCursors(t, js)
	waitStats(t, s, now, int64(len(c.recs)-1))
	after := check(t, "replayed")
	for w, rep := range before {
		a := after[w]
		same := len(rep.Points) == len(a.Points) && len(rep.Functions) == len(a.Functions) && sameValues(rep.Total, a.Total)
		for i := 0; same && i < len(rep.Points); i++ {
			same = rep.Points[i].Time.Equal(a.Points[i].Time) && sameValues(rep.Points[i].StatsValues, a.Points[i].StatsValues)
		}
		for i := 0; same && i < len(rep.Functions); i++ {
			same = rep.Functions[i].Function == a.Functions[i].Function && sameValues(rep.Functions[i].StatsValues, a.Functions[i].StatsValues)
		}
		if !same {
			t.Errorf("%s: the replay changed the statistics:\n%+v\n%+v", w, rep.Total, a.Total)
		}
	}
	usage, err := s.Usage(t.Context(), records.UsageQuery{Since: now.Add(-4 * 24 * time.Hour), Until: now.Add(time.Hour), Granularity: records.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if usage.Total.Requests != before["7d"].Total.Invocations {
		t.Errorf("usage after the replay: %d requests, want %d", usage.Total.Requests, before["7d"].Total.Invocations)
	}

	// A bucket lost while usage kept its cursor (a node's restart: the
	// statistics are in memory, usage on file): it catches up by passes
	// of its own, from the first record of its retention, and usage
	// counts nothing twice.
	if err := js.DeleteKeyValue(t.Context(), "nimbus_stats_1h"); err != nil {
		t.Fatal(err)
	}
	waitCursors(t, js)
	waitStats(t, s, now, int64(len(c.recs)-1))
	again := check(t, "caught up")
	if !sameValues(again["7d"].Total, before["7d"].Total) || len(again["7d"].Functions) != len(before["7d"].Functions) {
		t.Errorf("7d after the hourly bucket's catch-up:\n%+v\nwant\n%+v", again["7d"].Total, before["7d"].Total)
	}
	usage, err = s.Usage(t.Context(), records.UsageQuery{Since: now.Add(-4 * 24 * time.Hour), Until: now.Add(time.Hour), Granularity: records.Hour})
	if err != nil || usage.Total.Requests != before["7d"].Total.Invocations {
		t.Errorf("usage after the catch-up: %+v %v, want %d requests", usage.Total, err, before["7d"].Total.Invocations)
	}

	if _, err := s.Stats(t.Context(), records.StatsQuery{Window: "2h"}); !errors.Is(err, nimbus.ErrInvalid) {
		t.Errorf("window 2h: %v, want ErrInvalid", err)
	}
	none, err := s.Stats(t.Context(), records.StatsQuery{Window: "1h", Function: "sa", Functions: func(string) bool { return false }})
	if err != nil || none.Total.Invocations != 0 {
		t.Errorf("a function the caller may not see: %+v, %v", none, err)
	}
}

// waitCursors waits until every bucket's cursor is at the records'
// stream's last message.
func waitCursors(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	st, err := js.Stream(t.Context(), "nimbus_INVOCATIONS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.FormatUint(info.State.LastSeq, 10)
	for _, b := range []string{"nimbus_usage", "nimbus_stats_1m", "nimbus_stats_15m", "nimbus_stats_1h"} {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			kv, err := js.KeyValue(t.Context(), b)
			if err == nil {
				if e, err := kv.Get(t.Context(), "cursor"); err == nil && string(e.Value()) == want {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the cursor did not come back to %s", b, want)
			}
		}
	}
}
