package timer

import (
	"testing"
	"time"
)

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"*/5 * * * *", "0 */5 * * * *", "@hourly", "@every 30s", "0 9 * * MON-FRI",
		"30 2 * * *", "0 0 30 2 *", "TZ=UTC", "@every 0s", "1-5/2 1,2 L * *", "? ? ? ? ?", "@every 1h30m"} {
		f.Add(s, "Europe/Paris")
	}
	f.Add("* * * * *", "")
	f.Fuzz(func(t *testing.T, expr, tz string) {
		loc, err := parseTimezone(tz)
		if err != nil {
			return
		}
		now := time.Date(2026, 10, 25, 0, 59, 30, 0, time.UTC)
		s, err := parseSchedule(expr, loc, now)
		if err != nil {
			return
		}
		prev := now
		for range 3 {
			next := s.Next(prev)
			if next.IsZero() {
				return
			}
			if !next.After(prev) {
				t.Fatalf("schedule %q: Next(%v) = %v, not after", expr, prev, next)
			}
			if next.Nanosecond() != 0 {
				t.Fatalf("schedule %q: tick %v is not on a whole second", expr, next)
			}
			prev = next
		}
	})
}
