package fnlog

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-12-06T07:00:00Z", time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC), true},
		{"2026-12-06T07:00:00.5+01:00", time.Date(2026, 12, 6, 6, 0, 0, 5e8, time.UTC), true},
		{"1h", now.Add(-time.Hour), true},
		{"90s", now.Add(-90 * time.Second), true},
		{"0s", now, true},
		{"-1h", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"2026-12-06", time.Time{}, false},
		{"", time.Time{}, false},
	}
	for _, c := range cases {
		got, err := ParseTime(c.in, now)
		if (err == nil) != c.ok || !got.Equal(c.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestMatches(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	q := Query{Since: t0, Until: t0.Add(time.Minute), RequestID: "r1", Filter: "ERROR"}
	cases := []struct {
		at        time.Time
		req, line string
		want      bool
	}{
		{t0, "r1", "an ERROR here", true},
		{t0.Add(time.Minute), "r1", "ERROR", true},
		{t0.Add(-time.Nanosecond), "r1", "ERROR", false},
		{t0.Add(time.Minute + 1), "r1", "ERROR", false},
		{t0, "r2", "ERROR", false},
		{t0, "r1", "error", false},
	}
	for _, c := range cases {
		if got := q.Matches(c.at, c.req, c.line); got != c.want {
			t.Errorf("Matches(%v, %q, %q) = %v, want %v", c.at, c.req, c.line, got, c.want)
		}
	}
	if !(&Query{}).Matches(t0, "", "x") {
		t.Error("the empty query does not match")
	}
}
