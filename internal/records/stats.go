package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
)

// Statistics are time series of the invocations, folded from the records
// by the usage aggregation's round (usage.go: the same lease, cursor and
// per-key sequences, so a replay adds nothing twice) into three KV
// buckets, one per resolution: <Prefix>_stats_1m, _stats_15m and
// _stats_1h, each kept for its retention (a bucket TTL). A key is
// <yyyymmdd>.<hhmm>.<function>: what the invocations of the function that
// started in the period add up to (a Stat); the function allFn sums every
// function, so an account's series reads one key per period.
//
// The buckets are in memory: statistics are derived, and a file bucket
// would fsync every key of every round on a node's embedded store. Each
// bucket keeps its own "cursor"; a bucket that was lost (its server
// restarted) has none, and the round rebuilds it, by passes of its own
// beside the normal fold, from the first record of its retention still in
// the stream (usage never waits for it, and its keys, whose sequences are
// ahead, take nothing of the replay).

// allFn is the function token of the account's keys: not a function name
// (those are [A-Za-z0-9_-]).
const allFn = "=all"

// resolution is one statistics bucket.
type resolution struct {
	name   string // the bucket's suffix
	step   time.Duration
	keep   time.Duration // the bucket's TTL
	serves time.Duration // the longest window that reads it
}

// resolutions, finest first.
var resolutions = [...]resolution{
	{"1m", time.Minute, 2 * time.Hour, time.Hour},
	{"15m", 15 * time.Minute, 26 * time.Hour, 24 * time.Hour},
	{"1h", time.Hour, 8 * 24 * time.Hour, 7 * 24 * time.Hour},
}

const (
	res1m = iota
	res15m
	res1h
)

// statsWindow is a window of a StatsQuery.
type statsWindow struct {
	span time.Duration
	res  int // the resolution of its points
}

var statsWindows = map[string]statsWindow{
	"1h":  {time.Hour, res1m},
	"24h": {24 * time.Hour, res15m},
	"7d":  {7 * 24 * time.Hour, res1h},
}

// StatsWindows are the windows a StatsQuery takes.
var StatsWindows = []string{"1h", "24h", "7d"}

// stats is the statistics buckets and the index of the hourly one.
type stats struct {
	js       jetstream.JetStream
	prefix   string
	replicas int
	kv       [len(resolutions)]jetstream.KeyValue
	// index holds each bucket's keys of the longest window it serves.
	index [len(resolutions)]*statIndex
}

func openStats(ctx context.Context, s *Store) (*stats, error) {
	st := &stats{js: s.cfg.JS, prefix: s.cfg.Prefix, replicas: s.cfg.Replicas}
	for i := range resolutions {
		kv, err := st.create(ctx, i)
		if err != nil {
			return nil, err
		}
		st.kv[i] = kv
	}
	for i, r := range resolutions {
		st.index[i] = &statIndex{kv: st.kv[i], keep: r.serves + r.step}
	}
	return st, nil
}

// create creates (or finds) the bucket of resolution i.
func (st *stats) create(ctx context.Context, i int) (jetstream.KeyValue, error) {
	r := resolutions[i]
	kv, err := st.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: st.prefix + "_stats_" + r.name, History: 1, Storage: jetstream.MemoryStorage, TTL: r.keep, Replicas: st.replicas,
		Description: "Nimbus invocation statistics per " + r.name,
	})
	if err != nil {
		return nil, fmt.Errorf("records: stats bucket %s: %w", r.name, err)
	}
	return kv, nil
}

// statKey is the key of fn's period starting at t.
func statKey(t time.Time, fn string) string { return t.Format("20060102.1504") + "." + fn }

// parseStatKey reads a statistics key.
func parseStatKey(key string) (time.Time, string, bool) {
	day, rest, ok := strings.Cut(key, ".")
	if !ok {
		return time.Time{}, "", false
	}
	hm, fn, ok := strings.Cut(rest, ".")
	if !ok || len(day) != 8 || len(hm) != 4 {
		return time.Time{}, "", false
	}
	t, err := time.Parse("20060102.1504", day+"."+hm)
	return t, fn, err == nil
}

// statRef is a key of one resolution.
type statRef struct {
	res int
	key string
}

// statBuilder turns a round's records into the Stats of each key, per
// message.
type statBuilder struct {
	now     time.Time
	periods [len(resolutions)]map[int64]string // period start -> key prefix
	parts   map[statRef][]statPart
}

type statPart struct {
	seq uint64
	s   Stat
}

func newStatBuilder(now time.Time) *statBuilder {
	b := &statBuilder{now: now, parts: map[statRef][]statPart{}}
	for i := range b.periods {
		b.periods[i] = map[int64]string{}
	}
	return b
}

// message folds the records of message seq into the resolutions fold
// admits (those whose cursor is before seq).
func (b *statBuilder) message(seq uint64, recs []Record, fold [len(resolutions)]bool) {
	per := map[statRef]*Stat{}
	for i := range recs {
		r := &recs[i]
		for res, rs := range resolutions {
			if !fold[res] {
				continue
			}
			t := r.StartTime.UTC().Truncate(rs.step)
			if t.Before(b.now.Add(-rs.keep)) {
				continue // gone by now
			}
			prefix, ok := b.periods[res][t.Unix()]
			if !ok {
				prefix = t.Format("20060102.1504") + "."
				b.periods[res][t.Unix()] = prefix
			}
			for _, fn := range [2]string{r.Function, allFn} {
				ref := statRef{res, prefix + fn}
				if per[ref] == nil {
					per[ref] = &Stat{}
				}
				per[ref].add(r)
			}
		}
	}
	for ref, st := range per {
		b.parts[ref] = append(b.parts[ref], statPart{seq, *st})
	}
}

// folds are the jobs that fold the parts into their keys.
func (b *statBuilder) folds(st *stats) []func(context.Context) error {
	jobs := make([]func(context.Context) error, 0, len(b.parts))
	for ref, parts := range b.parts {
		jobs = append(jobs, func(ctx context.Context) error {
			return foldKey(ctx, st.kv[ref.res], ref.key, func(cur *Stat) bool {
				changed := false
				for i := range parts {
					if p := &parts[i]; p.seq > cur.Seq {
						cur.Add(&p.s)
						cur.Seq = p.seq
						changed = true
					}
				}
				return changed
			})
		})
	}
	return jobs
}

// StatsQuery selects a StatsReport.
type StatsQuery struct {
	Window   string // "1h", "24h" or "7d"
	Function string // "" for the account
	// ByFunction adds each function's totals over the window.
	ByFunction bool
	// Functions, when set, keeps only the functions it admits (what the
	// caller may see): the account is then the sum of theirs.
	Functions func(name string) bool
	Now       time.Time // zero: time.Now()
}

// StatsValues are the figures of a period: the invocations that ran
// (Errors among them), the throttled and those Nimbus failed to run, the
// cold starts, the billed GB-seconds, the median and 99th percentile of
// the run durations (ms, within 10 %; 0 when none ran) and the average
// number of concurrent runs (the runs' durations over the period's).
type StatsValues struct {
	Invocations    int64   `json:"Invocations"`
	Errors         int64   `json:"Errors"`
	Throttles      int64   `json:"Throttles"`
	PlatformErrors int64   `json:"PlatformErrors"`
	ColdStarts     int64   `json:"ColdStarts"`
	GBSeconds      float64 `json:"GBSeconds"`
	P50            float64 `json:"P50"`
	P99            float64 `json:"P99"`
	Concurrency    float64 `json:"Concurrency"`
}

// StatsPoint is one step of a series, from Time.
type StatsPoint struct {
	Time time.Time `json:"Time"`
	StatsValues
}

// FunctionStats are a function's totals over a window.
type FunctionStats struct {
	Function string `json:"Function"`
	StatsValues
}

// StatsReport is the answer of a StatsQuery: a point per Step (seconds)
// from Since to Until, oldest first, the last one the current step; the
// totals; and with ByFunction each function that had any invocation in
// the window, by name.
type StatsReport struct {
	Window    string          `json:"Window"`
	Step      int             `json:"Step"`
	Since     time.Time       `json:"Since"`
	Until     time.Time       `json:"Until"`
	Points    []StatsPoint    `json:"Points"`
	Total     StatsValues     `json:"Total"`
	Functions []FunctionStats `json:"Functions,omitzero"`
}

// Stats reports the statistics q selects, from the statistics buckets
// (folded within about a second, AggregateInterval, of the records'
// writing). One function's or the account's series reads its keys of the
// window only; the functions' totals come from the hourly index (and the
// finer keys of the window's first hour). Errors: nimbus.ErrInvalid,
// nimbus.ErrUnavailable.
func (s *Store) Stats(ctx context.Context, q StatsQuery) (*StatsReport, error) {
	w, ok := statsWindows[q.Window]
	if !ok {
		return nil, nimbus.Invalidf("window must be one of %s, not %q", strings.Join(StatsWindows, ", "), q.Window)
	}
	now := q.Now
	if now.IsZero() {
		now = time.Now()
	}
	step := resolutions[w.res].step
	until := now.UTC().Truncate(step).Add(step)
	since := until.Add(-w.span)
	rep := &StatsReport{Window: q.Window, Step: int(step / time.Second), Since: since, Until: until}
	points := make([]acc, w.span/step)
	if q.Function == "" || q.Functions == nil || q.Functions(q.Function) {
		if err := s.stats.series(ctx, q, w.res, since, until, points); err != nil {
			return nil, s.unavailable("stats", err)
		}
	}
	var total acc
	rep.Points = make([]StatsPoint, len(points))
	for i := range points {
		rep.Points[i] = StatsPoint{Time: since.Add(time.Duration(i) * step), StatsValues: points[i].values(step)}
		total.addAcc(&points[i])
	}
	rep.Total = total.values(w.span)
	if q.ByFunction {
		fns, err := s.stats.functions(ctx, q, since, until)
		if err != nil {
			return nil, s.unavailable("stats", err)
		}
		rep.Functions = make([]FunctionStats, 0, len(fns))
		for fn, a := range fns {
			if a.active() {
				rep.Functions = append(rep.Functions, FunctionStats{Function: fn, StatsValues: a.values(w.span)})
			}
		}
		sort.Slice(rep.Functions, func(i, j int) bool { return rep.Functions[i].Function < rep.Functions[j].Function })
	}
	return rep, nil
}

// series adds q's keys of resolution res in [since, until) into points:
// one function's or the account's keys, read one by one; or, for a
// restricted caller, the sum of its functions', from the index.
func (st *stats) series(ctx context.Context, q StatsQuery, res int, since, until time.Time, points []acc) error {
	step := resolutions[res].step
	if q.Function == "" && q.Functions != nil {
		idx, err := st.index[res].get(ctx)
		if err != nil {
			return err
		}
		keep := func(fn string) bool { return fn != allFn && q.Functions(fn) }
		idx.each(since, until, step, keep, func(t time.Time, _ string, s *istat) { points[t.Sub(since)/step].addPacked(s) })
		return nil
	}
	fn := q.Function
	if fn == "" {
		fn = allFn
	}
	return parallel(ctx, 8, len(points), func(ctx context.Context, i int) error {
		e, err := st.kv[res].Get(ctx, statKey(since.Add(time.Duration(i)*step), fn))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var s Stat
		if json.Unmarshal(e.Value(), &s) == nil {
			points[i].add(&s) // each point its own: no lock
		}
		return nil
	})
}

// functions are the totals of each function q admits over [since, until),
// from the indexes: the window cut into the longest periods a bucket has
// (its first hour in minutes and quarters, the others whole hours).
func (st *stats) functions(ctx context.Context, q StatsQuery, since, until time.Time) (map[string]*acc, error) {
	keep := func(fn string) bool {
		return fn != allFn && (q.Function == "" || fn == q.Function) && (q.Functions == nil || q.Functions(fn))
	}
	out := map[string]*acc{}
	add := func(_ time.Time, fn string, s *istat) {
		a := out[fn]
		if a == nil {
			a = &acc{}
			out[fn] = a
		}
		a.addPacked(s)
	}
	hour := since.Truncate(time.Hour)
	if hour.Before(since) {
		hour = hour.Add(time.Hour)
	}
	quarter := since.Truncate(15 * time.Minute)
	if quarter.Before(since) {
		quarter = quarter.Add(15 * time.Minute)
	}
	for _, p := range []struct {
		res      int
		from, to time.Time
	}{{res1m, since, earliest(quarter, until)}, {res15m, quarter, earliest(hour, until)}, {res1h, hour, until}} {
		if !p.from.Before(p.to) {
			continue
		}
		idx, err := st.index[p.res].get(ctx)
		if err != nil {
			return nil, err
		}
		idx.each(p.from, p.to, resolutions[p.res].step, keep, add)
	}
	return out, nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// parallel runs f(0) to f(n-1), at most width at a time, and returns the
// first error (the others are then cancelled).
func parallel(ctx context.Context, width, n int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(width, n) {
		wg.Go(func() {
			for i := range next {
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		})
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
