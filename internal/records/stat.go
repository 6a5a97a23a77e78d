package records

import (
	"math"
	"time"
)

// Stat is what the invocations of one function (or of the account) that
// started in one period add up to: one key of a statistics bucket
// (stats.go). Its JSON names are short: a bucket holds many.
type Stat struct {
	// Invocations ran (successes, function errors, timeouts); Errors are
	// the function errors and timeouts among them.
	Invocations    int64 `json:"N,omitempty"`
	Errors         int64 `json:"E,omitempty"`
	Throttles      int64 `json:"T,omitempty"`
	PlatformErrors int64 `json:"P,omitempty"`
	ColdStarts     int64 `json:"C,omitempty"`
	// DurationMs sums the runs' durations; MBms the memory size times the
	// billed duration.
	DurationMs float64 `json:"D,omitempty"`
	MBms       int64   `json:"M,omitempty"`
	// Hist is the histogram of the run durations, sparse: pairs of a
	// bucket index (histIndex) and a count, by increasing index.
	Hist []int64 `json:"H,omitempty"`
	// Seq is the last record message folded in.
	Seq uint64 `json:"S,omitempty"`
}

// add folds r in.
func (s *Stat) add(r *Record) {
	if !tally(r, &s.Invocations, &s.Errors, &s.Throttles, &s.PlatformErrors, &s.ColdStarts) {
		return
	}
	s.DurationMs += r.Duration
	s.MBms += int64(r.MemorySize) * r.BilledDuration
	s.Hist = histAdd(s.Hist, histIndex(r.Duration), 1)
}

// Add adds o's counts to s (not its sequence).
func (s *Stat) Add(o *Stat) {
	s.addCounts(o)
	for i := 0; i+1 < len(o.Hist); i += 2 {
		s.Hist = histAdd(s.Hist, int(o.Hist[i]), o.Hist[i+1])
	}
}

// addCounts adds o's counters to s (not its histogram nor sequence).
func (s *Stat) addCounts(o *Stat) {
	s.Invocations += o.Invocations
	s.Errors += o.Errors
	s.Throttles += o.Throttles
	s.PlatformErrors += o.PlatformErrors
	s.ColdStarts += o.ColdStarts
	s.DurationMs += o.DurationMs
	s.MBms += o.MBms
}

// active reports whether anything was asked of the function in the period.
func (s *Stat) active() bool { return s.Invocations+s.Throttles+s.PlatformErrors > 0 }

// The duration histogram has logarithmic buckets: bucket i holds the
// durations in (γ^(i-1), γ^i] ms and stands for 2γ^i/(γ+1), within
// histError of every duration it holds (the DDSketch mapping). Durations
// are clamped to [histMinMs, histMaxMs].
const (
	histError = 0.09
	histMinMs = 0.001  // 1 µs
	histMaxMs = 86.4e6 // a day
	histLo    = -38    // histIndex(histMinMs)
	histHi    = 102    // histIndex(histMaxMs)
	histN     = histHi - histLo + 1
)

var (
	histGamma    = (1 + histError) / (1 - histError)
	histLogGamma = math.Log(histGamma)
)

// histIndex is the bucket of a duration in ms.
func histIndex(ms float64) int {
	ms = min(max(ms, histMinMs), histMaxMs)
	return min(max(int(math.Ceil(math.Log(ms)/histLogGamma)), histLo), histHi)
}

// histValue is the duration bucket i stands for.
func histValue(i int) float64 { return 2 * math.Pow(histGamma, float64(i)) / (histGamma + 1) }

// histAdd adds n to bucket i of the sparse histogram h.
func histAdd(h []int64, i int, n int64) []int64 {
	j := 0
	for j < len(h) && h[j] < int64(i) {
		j += 2
	}
	if j < len(h) && h[j] == int64(i) {
		h[j+1] += n
		return h
	}
	h = append(h, 0, 0)
	copy(h[j+2:], h[j:])
	h[j], h[j+1] = int64(i), n
	return h
}

// acc adds up Stats, with a dense histogram (a query's accumulator).
type acc struct {
	Stat
	hist [histN]int64
	n    int64 // the histogram's count
}

func (a *acc) add(s *Stat) {
	a.addCounts(s)
	for i := 0; i+1 < len(s.Hist); i += 2 {
		if k := int(s.Hist[i]) - histLo; k >= 0 && k < histN {
			a.hist[k] += s.Hist[i+1]
			a.n += s.Hist[i+1]
		}
	}
}

// addPacked adds an index's stat.
func (a *acc) addPacked(s *istat) {
	a.Invocations += s.invocations
	a.Errors += s.errors
	a.Throttles += s.throttles
	a.PlatformErrors += s.platformErrors
	a.ColdStarts += s.coldStarts
	a.DurationMs += s.durationMs
	a.MBms += s.mbms
	for _, b := range s.hist {
		n := int64(b & (1<<24 - 1))
		a.hist[b>>24] += n
		a.n += n
	}
}

func (a *acc) addAcc(o *acc) {
	a.addCounts(&o.Stat)
	for k, n := range o.hist {
		a.hist[k] += n
	}
	a.n += o.n
}

// quantile is the duration (ms) under which a fraction q of the runs
// fall (0 when none ran).
func (a *acc) quantile(q float64) float64 {
	if a.n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(a.n))), 1)
	var seen int64
	for k, n := range a.hist {
		seen += n
		if seen >= rank {
			return math.Round(histValue(k+histLo)*1000) / 1000
		}
	}
	return histValue(histHi)
}

// values are the figures of a, over a period of span.
func (a *acc) values(span time.Duration) StatsValues {
	return StatsValues{
		Invocations: a.Invocations, Errors: a.Errors, Throttles: a.Throttles, PlatformErrors: a.PlatformErrors,
		ColdStarts: a.ColdStarts, GBSeconds: float64(a.MBms) / 1024 / 1000,
		P50: a.quantile(0.50), P99: a.quantile(0.99),
		Concurrency: a.DurationMs / float64(span.Milliseconds()),
	}
}
