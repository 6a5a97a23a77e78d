package records_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/records"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open opens a Store on an embedded store in dir.
func open(t *testing.T, dir string, cfg records.Config) (*records.Store, *natsstore.Store) {
	t.Helper()
	return openOn(t, natsstore.Config{DataDir: dir}, cfg)
}

// openOn opens a Store on the store sc configures.
func openOn(t *testing.T, sc natsstore.Config, cfg records.Config) (*records.Store, *natsstore.Store) {
	t.Helper()
	st, err := natsstore.Open(t.Context(), sc)
	if cfg.Prefix == "" {
		cfg.Prefix = sc.Prefix
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg.JS = st.JetStream()
	cfg.Health = st.Healthy
	if cfg.Node == "" {
		cfg.Node = "n1"
	}
	s, err := records.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close(context.Background())
		_ = st.Close(context.Background())
	})
	return s, st
}

func rec(fn string, i int, start time.Time, status string, memMB int, billed int64, cold bool) records.Record {
	return records.Record{RequestID: fmt.Sprintf("%s-%d", fn, i), Function: fn, Qualifier: "$LATEST", Trigger: "api",
		StartTime: start, EndTime: start.Add(time.Duration(billed) * time.Millisecond), Duration: float64(billed) - 0.5,
		BilledDuration: billed, MemorySize: memMB, Status: status, ColdStart: cold, Node: "n1"}
}

func TestListNewestFirstPagedAndFiltered(t *testing.T) {
	s, _ := open(t, t.TempDir(), records.Config{FlushInterval: 5 * time.Millisecond})
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for i := range 120 {
		st := records.StatusSuccess
		if i%10 == 0 {
			st = records.StatusFunctionError
		}
		r := rec("fa", i, base.Add(time.Duration(i)*time.Second), st, 128, 10, i == 0)
		s.Add(&r)
		o := rec("fb", i, base, records.StatusSuccess, 128, 1, false)
		s.Add(&o)
		if i%7 == 0 {
			if err := s.Flush(t.Context()); err != nil { // several messages
				t.Fatal(err)
			}
		}
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var all []records.Record
	cur := ""
	for pages := 0; ; pages++ {
		got, next, err := s.List(t.Context(), records.Filter{Function: "fa", Limit: 25, Cursor: cur})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("too many pages")
		}
		cur = next
	}
	if len(all) != 120 {
		t.Fatalf("listed %d records, want 120", len(all))
	}
	for i, r := range all {
		if want := fmt.Sprintf("fa-%d", 119-i); r.RequestID != want {
			t.Fatalf("record %d is %s, want %s (newest first, no repeats)", i, r.RequestID, want)
		}
	}
	failed, _, err := s.List(t.Context(), records.Filter{Function: "fa", Limit: 100, Statuses: []string{records.StatusFunctionError}})
	if err != nil || len(failed) != 12 {
		t.Fatalf("failed records: %d, %v; want 12", len(failed), err)
	}
	since, _, err := s.List(t.Context(), records.Filter{Function: "fa", Limit: 100, Since: base.Add(100 * time.Second)})
	if err != nil || len(since) != 20 {
		t.Fatalf("records since +100s: %d, %v; want 20", len(since), err)
	}
	none, next, err := s.List(t.Context(), records.Filter{Function: "nobody", Limit: 10})
	if err != nil || len(none) != 0 || next != "" {
		t.Fatalf("unknown function: %v %q %v", none, next, err)
	}
	for _, bad := range []records.Filter{
		{Function: "fa", Limit: 0}, {Function: "fa", Limit: 1001}, {Function: "fa", Limit: 5, Cursor: "zz"},
		{Function: "fa", Limit: 5, Statuses: []string{"ok"}}, {Function: "fa", Limit: 5, Since: base, Until: base.Add(-time.Second)},
	} {
		if _, _, err := s.List(t.Context(), bad); err == nil {
			t.Errorf("List(%+v) = nil error, want one", bad)
		}
	}
}

// TestUsageIsExactAcrossRestart sums the records and compares with the
// usage, across a restart of the store in the middle.
func TestUsageIsExactAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := records.Config{FlushInterval: 5 * time.Millisecond, Aggregate: true, AggregateInterval: 20 * time.Millisecond}
	s, st := open(t, dir, cfg)
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	var want records.Usage
	add := func(s *records.Store, i int) {
		status := []string{records.StatusSuccess, records.StatusFunctionError, records.StatusTimeout, records.StatusThrottled, records.StatusPlatformError}[i%5]
		billed := int64(i%13 + 1)
		if status == records.StatusThrottled || status == records.StatusPlatformError {
			billed = 0
		}
		r := rec("fu", i, hour.Add(time.Duration(i)*20*time.Second), status, 256, billed, i%17 == 0)
		s.Add(&r)
		if billed > 0 {
			want.Requests++
			want.BilledMs += billed
			want.MBms += 256 * billed
			if r.ColdStart {
				want.ColdStarts++
			}
		}
	}
	for i := range 150 {
		add(s, i)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(t.Context())
	_ = st.Close(t.Context())
	s2, _ := open(t, dir, cfg)
	for i := 150; i < 300; i++ {
		add(s2, i)
	}
	if err := s2.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var rep *records.UsageReport
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		rep, err = s2.Usage(t.Context(), records.UsageQuery{Since: hour, Until: time.Now(), Granularity: records.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Total.Requests == want.Requests || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := rep.Total
	if got.Requests != want.Requests || got.BilledMs != want.BilledMs || got.MBms != want.MBms || got.ColdStarts != want.ColdStarts {
		t.Fatalf("usage total %+v, want %+v", got.Usage, want)
	}
	if got.Throttles != 60 || got.PlatformErrors != 60 || got.Errors != 120 {
		t.Errorf("throttles %d, platform errors %d, errors %d; want 60, 60, 120", got.Throttles, got.PlatformErrors, got.Errors)
	}
	if len(rep.Rows) < 2 {
		t.Errorf("hourly rows: %d, want the records' hours", len(rep.Rows))
	}
	days, err := s2.Usage(t.Context(), records.UsageQuery{Since: hour, Until: time.Now(), Granularity: records.Day, Function: "fu"})
	if err != nil {
		t.Fatal(err)
	}
	var dayTotal records.Usage
	for _, r := range days.Rows {
		dayTotal.Requests += r.Requests
		dayTotal.MBms += r.MBms
	}
	if dayTotal.Requests != want.Requests || dayTotal.MBms != want.MBms {
		t.Errorf("daily rows add up to %+v, want %+v", dayTotal, want)
	}
	p := records.DefaultPrices()
	gbs := float64(want.MBms) / 1024 / 1000
	cost := float64(want.Requests)/1e6*p.PerMillionRequests + gbs*p.PerGBSecond
	if d := got.Cost - cost; d > 1e-12 || d < -1e-12 {
		t.Errorf("cost %v, want %v", got.Cost, cost)
	}
	if got.FreeTierDiscount != got.Cost || got.NetCost != 0 {
		t.Errorf("free tier: discount %v net %v; this usage is within the free tier", got.FreeTierDiscount, got.NetCost)
	}
	if _, err := s2.Usage(t.Context(), records.UsageQuery{Since: hour, Until: time.Now(), Granularity: "week"}); err == nil {
		t.Error("granularity week accepted")
	}
	if _, err := s2.Usage(t.Context(), records.UsageQuery{Since: time.Now(), Until: hour, Granularity: records.Hour}); err == nil {
		t.Error("until before since accepted")
	}
}

// TestStoreDownDropsNothingWithinBound: records added while the store is
// gone wait (bounded) and are written when it is back; beyond MaxPending
// they are dropped and counted, and Add never blocks.
func TestStoreDownBoundsAndCounts(t *testing.T) {
	dir := t.TempDir()
	s, st := open(t, dir, records.Config{FlushInterval: 5 * time.Millisecond, MaxPending: 100, WriteTimeout: 200 * time.Millisecond})
	_ = st.Close(t.Context()) // the store is gone
	start := time.Now()
	for i := range 1000 {
		r := rec("fd", i, time.Now(), records.StatusSuccess, 128, 1, false)
		s.Add(&r)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("1000 Adds took %s with the store down", d)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_ = s.Flush(ctx)
	if s.Dropped() < 900 {
		t.Errorf("dropped %d, want at least 900 (MaxPending 100)", s.Dropped())
	}
	if s.Written() != 0 {
		t.Errorf("written %d with the store down", s.Written())
	}
}

// TestOnSharedNATS lists and meters records on the machine's NATS server
// (a cluster's stand-in: --nats-url), which may be older than the embedded
// one (2.9 takes a consumer's single filter subject only).
func TestOnSharedNATS(t *testing.T) {
	prefix := nodetest.SharedNATSPrefix(t) // skips (or fails) when it is not there
	sc := natsstore.Config{DataDir: t.TempDir(), URL: nodetest.SharedNATS, Prefix: prefix}
	s, _ := openOn(t, sc, records.Config{FlushInterval: 5 * time.Millisecond, Aggregate: true, AggregateInterval: 20 * time.Millisecond})
	hour := time.Now().UTC().Truncate(time.Hour)
	for i := range 30 {
		r := rec("fs", i, hour.Add(time.Duration(i)*time.Second), records.StatusSuccess, 128, 7, false)
		s.Add(&r)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.List(t.Context(), records.Filter{Function: "fs", Limit: 100})
	if err != nil || len(got) != 30 {
		t.Fatalf("List on the shared NATS: %d records, %v", len(got), err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rep, err := s.Usage(t.Context(), records.UsageQuery{Since: hour, Until: time.Now().Add(time.Minute), Granularity: records.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Total.Requests == 30 && rep.Total.BilledMs == 210 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage on the shared NATS: %+v, want 30 requests, 210 ms", rep.Total.Usage)
		}
	}
	for _, q := range []records.StatsQuery{{Window: "1h", Function: "fs"}, {Window: "24h", ByFunction: true}, {Window: "7d", Functions: func(fn string) bool { return fn == "fs" }}} {
		rep, err := s.Stats(t.Context(), q)
		if err != nil || rep.Total.Invocations != 30 || q.ByFunction && (len(rep.Functions) != 1 || rep.Functions[0].Invocations != 30) {
			t.Fatalf("stats %+v on the shared NATS: %+v, %v; want 30 invocations", q, rep, err)
		}
	}
}

// TestListSinceSeesPastLateBatches: records written late (a node that held
// them while the store was away) sit after newer ones in the stream; a
// listing with since goes past them to the newer records.
func TestListSinceSeesPastLateBatches(t *testing.T) {
	s, _ := open(t, t.TempDir(), records.Config{FlushInterval: 5 * time.Millisecond})
	now := time.Now().UTC()
	recent := rec("late", 1, now.Add(-time.Minute), records.StatusSuccess, 128, 1, false)
	s.Add(&recent)
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		old := rec("late", 100+i, now.Add(-20*time.Minute), records.StatusSuccess, 128, 1, false)
		s.Add(&old)
		if err := s.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	got, next, err := s.List(t.Context(), records.Filter{Function: "late", Limit: 10, Since: now.Add(-3 * time.Minute)})
	if err != nil || len(got) != 1 || got[0].RequestID != recent.RequestID || next != "" {
		t.Fatalf("since 3m: %+v, %q, %v; want the one recent record", got, next, err)
	}
}

// TestListBoundedReadGoesOnByCursor: a listing whose function is rare in a
// long stream stops after its budget of reads with a cursor, and following
// the cursors finds the record.
func TestListBoundedReadGoesOnByCursor(t *testing.T) {
	defer records.SetMaxSpans(2)()
	s, _ := open(t, t.TempDir(), records.Config{FlushInterval: 5 * time.Millisecond})
	now := time.Now().UTC()
	rare := rec("rare", 1, now, records.StatusFunctionError, 128, 1, false)
	s.Add(&rare)
	for i := range 120 { // 120 messages of another function after it
		r := rec("busy", i, now, records.StatusSuccess, 128, 1, false)
		s.Add(&r)
		if err := s.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	newest := rec("rare", 2, now, records.StatusSuccess, 128, 1, false) // on top, filtered out
	s.Add(&newest)
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var got []records.Record
	cur, calls := "", 0
	for {
		page, next, err := s.List(t.Context(), records.Filter{Function: "rare", Limit: 10, Cursor: cur,
			Statuses: []string{records.StatusFunctionError}})
		if err != nil {
			t.Fatal(err)
		}
		calls++
		got = append(got, page...)
		if next == "" {
			break
		}
		if calls > 20 {
			t.Fatal("the cursors do not end")
		}
		cur = next
	}
	if len(got) != 1 || got[0].RequestID != rare.RequestID {
		t.Fatalf("found %+v, want the rare record", got)
	}
	if calls < 2 {
		t.Errorf("%d calls: the budget of 2 reads (16 + 32 messages) should not cover 121 messages", calls)
	}
}
