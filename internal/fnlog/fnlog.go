// Package fnlog is what reading functions' durable logs takes: a Query (a
// time window, a request, a substring, how many) and the parsing of its
// times, shared by the API and the CLI. fnlog/nats keeps the logs.
package fnlog

import (
	"fmt"
	"strings"
	"time"
)

// Defaults of the durable logs.
const (
	// DefaultRetention is how long log lines are kept (the same as
	// invocation records: --invocation-retention).
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultMaxBytes bounds each function's stored log (--log-max-bytes).
	DefaultMaxBytes = 64 << 20
	// DefaultLimit is how many lines a read returns when it does not say,
	// MaxLimit the most it may ask for.
	DefaultLimit = 1000
	MaxLimit     = 10000
)

// Query selects a function's log lines.
type Query struct {
	Since, Until time.Time // zero: unbounded; both inclusive
	RequestID    string    // "": every request (and lines of none)
	Filter       string    // a substring of the line ("": any)
	// Limit is how many of the most recent matching lines a read
	// returns (0: none, for a follow that prints only new lines).
	Limit int
}

// Matches reports whether a line written at t by requestID matches q.
func (q *Query) Matches(t time.Time, requestID, line string) bool {
	switch {
	case !q.Since.IsZero() && t.Before(q.Since):
		return false
	case !q.Until.IsZero() && t.After(q.Until):
		return false
	case q.RequestID != "" && requestID != q.RequestID:
		return false
	}
	return q.Filter == "" || strings.Contains(line, q.Filter)
}

// ParseTime reads a point in time: an RFC 3339 time
// ("2026-12-06T07:00:00Z") or a duration before now ("90m", "1h", "2h30m").
func ParseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2006-01-02T15:04:05Z) nor a duration before now (1h, 30m)", s)
	}
	return now.Add(-d), nil
}
