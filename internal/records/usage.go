package records

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// Usage is what a function used in a period: what is billed of it.
type Usage struct {
	// Requests are the billed invocations: those that ran (successes,
	// function errors, timeouts). Throttled requests and those Nimbus
	// failed to run are counted apart and not billed.
	Requests       int64 `json:"Requests"`
	Errors         int64 `json:"Errors"` // function errors and timeouts
	Throttles      int64 `json:"Throttles"`
	PlatformErrors int64 `json:"PlatformErrors"`
	ColdStarts     int64 `json:"ColdStarts"`
	// BilledMs is the billed duration, summed; MBms the memory size times
	// the billed duration, summed (GB-seconds = MBms / 1024 / 1000).
	BilledMs int64 `json:"BilledDurationMs"`
	MBms     int64 `json:"MBMs"`
	// seq is the last record message folded in (stored, not shown).
	Seq uint64 `json:"Seq,omitempty"`
}

// GBSeconds is the billed compute.
func (u *Usage) GBSeconds() float64 { return float64(u.MBms) / 1024 / 1000 }

// add folds r in.
func (u *Usage) add(r *Record) {
	if tally(r, &u.Requests, &u.Errors, &u.Throttles, &u.PlatformErrors, &u.ColdStarts) {
		u.BilledMs += r.BilledDuration
		u.MBms += int64(r.MemorySize) * r.BilledDuration
	}
}

// tally counts r in the counters every aggregate of records keeps, and
// reports whether the invocation ran (throttled ones and those Nimbus
// failed to run did not: they have no duration and no bill).
func tally(r *Record, ran, errs, throttles, platform, cold *int64) bool {
	switch r.Status {
	case StatusThrottled:
		*throttles++
		return false
	case StatusPlatformError:
		*platform++
		return false
	case StatusFunctionError, StatusTimeout:
		*errs++
	}
	*ran++
	if r.ColdStart {
		*cold++
	}
	return true
}

// Add adds o's counts to u (not its sequence).
func (u *Usage) Add(o *Usage) {
	u.Requests += o.Requests
	u.Errors += o.Errors
	u.Throttles += o.Throttles
	u.PlatformErrors += o.PlatformErrors
	u.ColdStarts += o.ColdStarts
	u.BilledMs += o.BilledMs
	u.MBms += o.MBms
}

// CSVColumns name the usage columns of CSV exports (the CLI's and the
// console's), in the order of CSVFields.
var CSVColumns = []string{"requests", "errors", "throttles", "platform_errors", "cold_starts", "billed_duration_ms", "gb_seconds", "cost"}

// CSVFields are u's CSV columns, with its GB-seconds and cost.
func (u *Usage) CSVFields(gbSeconds, cost float64) []string {
	return []string{strconv.FormatInt(u.Requests, 10), strconv.FormatInt(u.Errors, 10),
		strconv.FormatInt(u.Throttles, 10), strconv.FormatInt(u.PlatformErrors, 10), strconv.FormatInt(u.ColdStarts, 10),
		strconv.FormatInt(u.BilledMs, 10), strconv.FormatFloat(gbSeconds, 'f', 6, 64), strconv.FormatFloat(cost, 'f', 9, 64)}
}

// Prices is the price table of usage reports, per the units Lambda and
// Function Compute bill: requests and GB-seconds, with a monthly free
// tier (per account: all functions together).
type Prices struct {
	Currency              string  `json:"Currency"`
	PerMillionRequests    float64 `json:"PerMillionRequests"`
	PerGBSecond           float64 `json:"PerGBSecond"`
	FreeRequestsPerMonth  int64   `json:"FreeRequestsPerMonth"`
	FreeGBSecondsPerMonth float64 `json:"FreeGBSecondsPerMonth"`
}

// DefaultPrices are Lambda's list prices (x86, us-east-1) and free tier.
func DefaultPrices() Prices {
	return Prices{Currency: "USD", PerMillionRequests: 0.20, PerGBSecond: 0.0000166667,
		FreeRequestsPerMonth: 1_000_000, FreeGBSecondsPerMonth: 400_000}
}

// Check validates p. Errors: nimbus.ErrInvalid.
func (p *Prices) Check() error {
	switch {
	case p.Currency == "" || len(p.Currency) > 8:
		return nimbus.Invalidf("prices: Currency must be a code such as USD, not %q", p.Currency)
	case !(p.PerMillionRequests >= 0) || math.IsInf(p.PerMillionRequests, 0):
		return nimbus.Invalidf("prices: PerMillionRequests must be 0 or more, not %v", p.PerMillionRequests)
	case !(p.PerGBSecond >= 0) || math.IsInf(p.PerGBSecond, 0):
		return nimbus.Invalidf("prices: PerGBSecond must be 0 or more, not %v", p.PerGBSecond)
	case p.FreeRequestsPerMonth < 0:
		return nimbus.Invalidf("prices: FreeRequestsPerMonth must be 0 or more, not %d", p.FreeRequestsPerMonth)
	case !(p.FreeGBSecondsPerMonth >= 0) || math.IsInf(p.FreeGBSecondsPerMonth, 0):
		return nimbus.Invalidf("prices: FreeGBSecondsPerMonth must be 0 or more, not %v", p.FreeGBSecondsPerMonth)
	}
	return nil
}

// cost is what u costs, before the free tier.
func (p *Prices) cost(requests int64, gbs float64) float64 {
	return float64(requests)/1e6*p.PerMillionRequests + gbs*p.PerGBSecond
}

// usage is the aggregation of records into hourly and daily usage, in the
// KV bucket <Prefix>_usage: h.<yyyymmdd>.<hh>.<function> and
// d.<yyyymm>.<dd>.<function>, each with the sequence of the last record
// message folded into it, and "cursor", the last message folded into
// every key. One node at a time aggregates (the holder of a lease in
// <Prefix>_usage_lease); each key's sequence makes a replay after a crash
// or a change of holder add nothing twice.
type usage struct {
	s     *Store
	kv    jetstream.KeyValue
	lease jetstream.KeyValue
}

// usageRetention is how long usage is kept.
const usageRetention = 400 * 24 * time.Hour

// leaseTTL is how long a silent aggregator keeps the lease.
const leaseTTL = 10 * time.Second

func openUsage(ctx context.Context, s *Store) (*usage, error) {
	u := &usage{s: s}
	var err error
	u.kv, err = s.cfg.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: s.cfg.Prefix + "_usage", History: 1, Storage: jetstream.FileStorage, TTL: usageRetention, Replicas: s.cfg.Replicas,
		Description: "Nimbus usage per function per hour and day",
	})
	if err != nil {
		return nil, fmt.Errorf("records: usage bucket: %w", err)
	}
	u.lease, err = s.cfg.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: s.cfg.Prefix + "_usage_lease", History: 1, Storage: jetstream.MemoryStorage, TTL: leaseTTL, Replicas: s.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("records: usage lease bucket: %w", err)
	}
	return u, nil
}

// loop aggregates every AggregateInterval while this node holds the lease.
func (u *usage) loop(ctx context.Context) {
	t := time.NewTicker(u.s.cfg.AggregateInterval)
	defer t.Stop()
	for {
		if u.lead(ctx) {
			for {
				more, err := u.round(ctx)
				if err != nil && ctx.Err() == nil {
					u.s.log.Warn("usage: aggregation failed; will retry", "err", err)
				}
				// A long catch-up keeps the lease, or leaves the work to
				// the node that took it.
				if !more || err != nil || !u.lead(ctx) {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lead takes or keeps the aggregation lease, and reports whether this node
// holds it.
func (u *usage) lead(ctx context.Context) bool {
	node := []byte(u.s.cfg.Node)
	e, err := u.lease.Get(ctx, "holder")
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = u.lease.Create(ctx, "holder", node)
		return err == nil
	case err != nil:
		return false
	case string(e.Value()) != u.s.cfg.Node:
		return false
	}
	_, err = u.lease.Update(ctx, "holder", node, e.Revision())
	return err == nil
}

// roundMessages bounds the messages one round folds in.
const roundMessages = 2048

// round folds the record messages after the cursors into usage and the
// statistics; more says there are more to fold. Each bucket has its own
// cursor, and each key's sequence keeps a replay from adding anything
// twice. Usage and the statistics buckets that kept up are folded from
// usage's cursor. A statistics bucket behind it (lost with its memory
// stream when the server restarted, or new) catches up by passes of its
// own, from the first record of its retention, so that usage never waits
// for it.
func (u *usage) round(ctx context.Context) (more bool, err error) {
	cur, err := u.cursors(ctx)
	if err != nil {
		return false, err
	}
	info, err := u.s.st.Info(ctx)
	if err != nil {
		return false, err
	}
	last, gone := info.State.LastSeq, uint64(0)
	if info.State.FirstSeq > 0 {
		gone = info.State.FirstSeq - 1 // the older ones are gone
	}
	behind, lo, err := u.behind(ctx, &cur, gone)
	if err != nil {
		return false, err
	}
	if behind != (bucketSet{}) {
		if _, err := u.pass(ctx, &cur, behind, false, lo, min(cur.usage, lo+roundMessages)); err != nil {
			return false, err
		}
		more = true
	}
	from := max(cur.usage, gone)
	if last <= from {
		return more, u.keepCursors(ctx, &cur, bucketSet{}, 0)
	}
	var kept bucketSet
	for i := range kept {
		kept[i] = !behind[i]
	}
	hi, err := u.pass(ctx, &cur, kept, true, from, min(last, from+roundMessages))
	if err != nil {
		return false, err
	}
	return more || hi < last, nil
}

// bucketSet selects statistics buckets.
type bucketSet [len(resolutions)]bool

// replaySlack is how much earlier than its bucket's retention a replay
// starts: a record is stored when its invocation ends, up to a timeout
// (and a queue wait) after it started.
const replaySlack = time.Hour

// behind finds the statistics buckets behind usage and the cursor their
// catch-up starts after; a bucket with no cursor (lost or new) starts at
// the first record of its retention.
func (u *usage) behind(ctx context.Context, cur *cursors, gone uint64) (set bucketSet, lo uint64, err error) {
	lo = cur.usage
	for i := range cur.stats {
		if cur.stats[i] == 0 && cur.usage > 0 {
			seq, err := natsstore.SeqSince(ctx, u.s.st, u.s.subj+">", time.Now().Add(-resolutions[i].keep-replaySlack))
			if err != nil {
				return set, 0, err
			}
			cur.stats[i] = min(max(seq, 1)-1, cur.usage)
		}
		cur.stats[i] = max(cur.stats[i], gone)
		if cur.stats[i] < cur.usage {
			set[i] = true
			lo = min(lo, cur.stats[i])
		}
	}
	return set, lo, nil
}

// pass folds the record messages from+1 to hi into the statistics buckets
// of set (and into usage when withUsage), then moves their cursors to the
// last message read, and returns it.
func (u *usage) pass(ctx context.Context, cur *cursors, set bucketSet, withUsage bool, from, hi uint64) (uint64, error) {
	type part struct {
		seq uint64
		u   Usage
	}
	parts := map[string][]part{}
	sb := newStatBuilder(time.Now())
	read := from
	err := natsstore.ReadRange(ctx, u.s.st, u.s.subj+">", from+1, hi, func(m natsstore.Msg) bool {
		seq := m.Seq // ReadRange skips none: a gap is a deleted message
		read = seq
		recs := decodeMetered(m.Data)
		var fold bucketSet
		for i := range fold {
			fold[i] = set[i] && seq > cur.stats[i]
		}
		sb.message(seq, recs, fold)
		if !withUsage || seq <= cur.usage {
			return true
		}
		per := map[string]*Usage{}
		for _, r := range recs {
			t := r.StartTime.UTC()
			for _, k := range []string{hourKey(t, r.Function), dayKey(t, r.Function)} {
				if per[k] == nil {
					per[k] = &Usage{}
				}
				per[k].add(&r)
			}
		}
		for k, v := range per {
			parts[k] = append(parts[k], part{seq, *v})
		}
		return true
	})
	if err != nil || read == from {
		return read, err // none came: the next round tries again
	}
	jobs := sb.folds(u.s.stats)
	for k, ps := range parts {
		jobs = append(jobs, func(ctx context.Context) error {
			return foldKey(ctx, u.kv, k, func(cur *Usage) bool {
				changed := false
				for _, p := range ps {
					if p.seq > cur.Seq {
						cur.Add(&p.u)
						cur.Seq = p.seq
						changed = true
					}
				}
				return changed
			})
		})
	}
	if err := parallel(ctx, foldWidth, len(jobs), func(ctx context.Context, i int) error { return jobs[i](ctx) }); err != nil {
		return read, err
	}
	// A read may end before hi (a pull that comes back empty): the
	// cursors go as far as the messages read.
	if withUsage && read > cur.usage {
		if _, err := u.kv.Put(ctx, "cursor", []byte(strconv.FormatUint(read, 10))); err != nil {
			return read, err
		}
		cur.usage = read
	}
	return read, u.keepCursors(ctx, cur, set, read)
}

// foldWidth is how many keys a round folds at a time.
const foldWidth = 16

// cursors are the buckets' cursors: the last message each folded in.
type cursors struct {
	usage uint64
	stats [len(resolutions)]uint64
	// written is when each statistics cursor was last written.
	written [len(resolutions)]time.Time
}

// cursors reads the buckets' cursors (0 for a bucket that has none).
func (u *usage) cursors(ctx context.Context) (cursors, error) {
	var c cursors
	read := func(kv jetstream.KeyValue) (uint64, time.Time, error) {
		e, err := kv.Get(ctx, "cursor")
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, time.Time{}, nil
		}
		if err != nil {
			return 0, time.Time{}, err
		}
		n, _ := strconv.ParseUint(string(e.Value()), 10, 64)
		return n, e.Created(), nil
	}
	var err error
	if c.usage, _, err = read(u.kv); err != nil {
		return c, err
	}
	for i, kv := range u.s.stats.kv {
		if c.stats[i], c.written[i], err = read(kv); err == nil {
			continue
		}
		// A bucket lost with its (memory) stream: made again, it is
		// rebuilt from the records. The handle goes on by the name.
		if _, cerr := u.s.stats.create(ctx, i); cerr != nil {
			return c, err
		}
		if c.stats[i], c.written[i], err = read(kv); err != nil {
			return c, err
		}
	}
	return c, nil
}

// keepCursors moves the cursors of the statistics buckets of set to hi
// (never back), and writes again those of an idle store before their
// bucket's TTL takes them (which would replay the records kept).
func (u *usage) keepCursors(ctx context.Context, c *cursors, set bucketSet, hi uint64) error {
	for i, kv := range u.s.stats.kv {
		at := c.stats[i]
		if set[i] {
			at = max(at, hi)
		}
		if at == c.stats[i] && !c.written[i].IsZero() && time.Since(c.written[i]) < resolutions[i].keep/4 {
			continue
		}
		if _, err := kv.Put(ctx, "cursor", []byte(strconv.FormatUint(at, 10))); err != nil {
			return err
		}
		c.stats[i], c.written[i] = at, time.Now()
	}
	return nil
}

// metered are the fields of a record that usage needs (the decoder skips
// the others).
type metered struct {
	Function       string    `json:"FunctionName"`
	StartTime      time.Time `json:"StartTime"`
	Duration       float64   `json:"Duration"`
	BilledDuration int64     `json:"BilledDuration"`
	MemorySize     int       `json:"MemorySize"`
	ColdStart      bool      `json:"ColdStart"`
	Status         string    `json:"Status"`
}

// decodeMetered reads the metered fields of a message's records.
func decodeMetered(data []byte) []Record {
	var out []Record
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		var m metered
		if len(line) == 0 || json.Unmarshal(line, &m) != nil {
			continue
		}
		out = append(out, Record{Function: m.Function, StartTime: m.StartTime, Duration: m.Duration, BilledDuration: m.BilledDuration,
			MemorySize: m.MemorySize, ColdStart: m.ColdStart, Status: m.Status})
	}
	return out
}

// foldKey updates key of kv with f (which reports whether it changed the
// value), retrying when another writer changed it meanwhile.
func foldKey[T any](ctx context.Context, kv jetstream.KeyValue, key string, f func(*T) bool) error {
	for {
		var cur T
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(e.Value(), &cur); err != nil {
				return fmt.Errorf("%s %s: %w", kv.Bucket(), key, err)
			}
			rev = e.Revision()
		}
		if !f(&cur) {
			return nil
		}
		b, _ := json.Marshal(&cur)
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !strings.Contains(err.Error(), "wrong last sequence") {
			return err
		}
	}
}

func hourKey(t time.Time, fn string) string { return "h." + t.Format("20060102.15") + "." + fn }
func dayKey(t time.Time, fn string) string  { return "d." + t.Format("200601.02") + "." + fn }

// Granularities of a usage report.
const (
	Hour = "hour"
	Day  = "day"
)

// UsageQuery selects a usage report.
type UsageQuery struct {
	Since, Until time.Time // [Since, Until), truncated to the granularity
	Function     string    // "" for every function
	Granularity  string    // Hour or Day
	// Functions, when set, keeps only the functions it admits (what the
	// caller may see).
	Functions func(name string) bool
}

// UsageRow is one function's usage in one period.
type UsageRow struct {
	Function string    `json:"Function"`
	Start    time.Time `json:"Start"`
	Usage
	GBSeconds float64 `json:"GBSeconds"`
	Cost      float64 `json:"Cost"`
}

// UsageTotal sums a report's rows. FreeTier is the part of the monthly
// free tier the report's usage took (account reports only: a report of one
// function shows none), and NetCost what is left to pay.
type UsageTotal struct {
	Usage
	GBSeconds        float64 `json:"GBSeconds"`
	Cost             float64 `json:"Cost"`
	FreeTierDiscount float64 `json:"FreeTierDiscount"`
	NetCost          float64 `json:"NetCost"`
}

// UsageReport is the answer of a UsageQuery.
type UsageReport struct {
	Since       time.Time  `json:"Since"`
	Until       time.Time  `json:"Until"`
	Granularity string     `json:"Granularity"`
	Prices      Prices     `json:"Prices"`
	Rows        []UsageRow `json:"Usage"`
	Total       UsageTotal `json:"Total"`
}

// Usage reports the usage q selects, with costs. Usage is folded in from
// the records within about a second (AggregateInterval) of their writing.
// Errors: nimbus.ErrInvalid, nimbus.ErrUnavailable.
func (s *Store) Usage(ctx context.Context, q UsageQuery) (*UsageReport, error) {
	if q.Granularity != Hour && q.Granularity != Day {
		return nil, nimbus.Invalidf("granularity must be hour or day, not %q", q.Granularity)
	}
	step := time.Hour
	if q.Granularity == Day {
		step = 24 * time.Hour
	}
	since, until := q.Since.UTC().Truncate(step), q.Until.UTC()
	if !until.After(since) {
		return nil, nimbus.Invalidf("until (%s) must be after since (%s)", until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	if until.Sub(since) > usageRetention+24*time.Hour {
		return nil, nimbus.Invalidf("a usage report covers at most %d days", int(usageRetention/(24*time.Hour)))
	}
	fn := "*"
	if q.Function != "" {
		fn = q.Function
	}
	rows, err := s.usage.read(ctx, q.Granularity, since, until, fn)
	if err != nil {
		return nil, s.unavailable("usage", err)
	}
	rep := &UsageReport{Since: since, Until: until, Granularity: q.Granularity, Prices: s.cfg.Prices, Rows: []UsageRow{}}
	for _, r := range rows {
		if q.Functions != nil && !q.Functions(r.Function) {
			continue
		}
		r.GBSeconds = r.Usage.GBSeconds()
		r.Cost = s.cfg.Prices.cost(r.Requests, r.GBSeconds)
		r.Seq = 0
		rep.Rows = append(rep.Rows, r)
		rep.Total.Add(&r.Usage)
	}
	sort.Slice(rep.Rows, func(i, j int) bool {
		a, b := &rep.Rows[i], &rep.Rows[j]
		if !a.Start.Equal(b.Start) {
			return a.Start.Before(b.Start)
		}
		return a.Function < b.Function
	})
	rep.Total.GBSeconds = rep.Total.Usage.GBSeconds()
	rep.Total.Cost = s.cfg.Prices.cost(rep.Total.Requests, rep.Total.GBSeconds)
	rep.Total.NetCost = rep.Total.Cost
	if q.Function == "" && q.Functions == nil {
		disc, err := s.freeTier(ctx, since, until)
		if err != nil {
			return nil, s.unavailable("usage", err)
		}
		rep.Total.FreeTierDiscount = min(disc, rep.Total.Cost)
		rep.Total.NetCost = rep.Total.Cost - rep.Total.FreeTierDiscount
	}
	return rep, nil
}

// read returns the rows of the keys of fn (or "*") in [since, until).
func (u *usage) read(ctx context.Context, granularity string, since, until time.Time, fn string) ([]UsageRow, error) {
	var filters []string
	if granularity == Hour {
		for d := since.Truncate(24 * time.Hour); d.Before(until); d = d.Add(24 * time.Hour) {
			filters = append(filters, "h."+d.Format("20060102")+".*."+fn)
		}
	} else {
		for m := time.Date(since.Year(), since.Month(), 1, 0, 0, 0, 0, time.UTC); m.Before(until); m = m.AddDate(0, 1, 0) {
			filters = append(filters, "d."+m.Format("200601")+".*."+fn)
		}
	}
	var rows []UsageRow
	for _, f := range filters {
		w, err := u.kv.Watch(ctx, f, jetstream.IgnoreDeletes())
		if err != nil {
			return nil, err
		}
		err = func() error {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case e := <-w.Updates():
					if e == nil {
						return nil // the current values are all in
					}
					row, ok := rowOf(e.Key())
					if !ok || row.Start.Before(since) || !row.Start.Before(until) {
						continue
					}
					if err := json.Unmarshal(e.Value(), &row.Usage); err != nil {
						continue
					}
					rows = append(rows, row)
				}
			}
		}()
		if err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// rowOf parses a usage key.
func rowOf(key string) (UsageRow, bool) {
	parts := strings.SplitN(key, ".", 4)
	if len(parts) != 4 {
		return UsageRow{}, false
	}
	layout := "20060102.15"
	if parts[0] == "d" {
		layout = "200601.02"
	}
	t, err := time.Parse(layout, parts[1]+"."+parts[2])
	if err != nil {
		return UsageRow{}, false
	}
	return UsageRow{Function: parts[3], Start: t.UTC()}, true
}

// freeTier is the part of the monthly free tier (all functions together)
// taken by the usage of [since, until): each month's free requests and
// GB-seconds go to its days in order, and the days of the range keep what
// they took.
func (s *Store) freeTier(ctx context.Context, since, until time.Time) (float64, error) {
	p := &s.cfg.Prices
	var disc float64
	for m := time.Date(since.Year(), since.Month(), 1, 0, 0, 0, 0, time.UTC); m.Before(until); m = m.AddDate(0, 1, 0) {
		rows, err := s.usage.read(ctx, Day, m, m.AddDate(0, 1, 0), "*")
		if err != nil {
			return 0, err
		}
		days := map[time.Time]*Usage{}
		var order []time.Time
		for i := range rows {
			d := rows[i].Start
			if days[d] == nil {
				days[d] = &Usage{}
				order = append(order, d)
			}
			days[d].Add(&rows[i].Usage)
		}
		sort.Slice(order, func(i, j int) bool { return order[i].Before(order[j]) })
		freeReq, freeGBs := float64(p.FreeRequestsPerMonth), p.FreeGBSecondsPerMonth
		for _, d := range order {
			u := days[d]
			req := min(float64(u.Requests), freeReq)
			gbs := min(u.GBSeconds(), freeGBs)
			freeReq -= req
			freeGBs -= gbs
			if !d.Before(since.Truncate(24*time.Hour)) && d.Before(until) {
				disc += req/1e6*p.PerMillionRequests + gbs*p.PerGBSecond
			}
		}
	}
	return disc, nil
}
