package timer

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

func TestParseConfig(t *testing.T) {
	big := `{"schedule":"@hourly","payload":"` + strings.Repeat("x", MaxPayload) + `"}`
	tests := []struct {
		name, config, wantErr string
	}{
		{"five fields", `{"schedule":"*/5 * * * *"}`, ""},
		{"six fields", `{"schedule":"*/10 * * * * *"}`, ""},
		{"descriptor", `{"schedule":"@hourly"}`, ""},
		{"every", `{"schedule":"@every 1h30m"}`, ""},
		{"time zone and payload", `{"schedule":"0 9 * * 1-5","timezone":"Europe/Paris","payload":[1,{"a":null}]}`, ""},
		{"catch-up window", `{"schedule":"@daily","catchUpWindow":"6h"}`, ""},
		{"empty", ``, "schedule is required"},
		{"not an object", `[]`, "cannot unmarshal array"},
		{"bad JSON", `{"schedule":`, "unexpected EOF"},
		{"unknown field", `{"schedule":"@hourly","tz":"UTC"}`, `unknown field "tz"`},
		{"no schedule", `{"timezone":"UTC"}`, "schedule is required"},
		{"schedule not a string", `{"schedule":5}`, "schedule"},
		{"seven fields", `{"schedule":"0 0 0 * * * *"}`, "expected 5 to 6 fields"},
		{"four fields", `{"schedule":"* * * *"}`, "expected 5 to 6 fields"},
		{"minute out of range", `{"schedule":"61 * * * *"}`, "above maximum"},
		{"bad word", `{"schedule":"* * * * mon-funday"}`, `schedule "* * * * mon-funday"`},
		{"never fires", `{"schedule":"0 0 30 2 *"}`, "never fires"},
		{"TZ in schedule", `{"schedule":"TZ=UTC"}`, "timezone field"},
		{"CRON_TZ in schedule", `{"schedule":"CRON_TZ=Europe/Paris 0 9 * * *"}`, "timezone field"},
		{"unknown descriptor", `{"schedule":"@reboot"}`, "unrecognized descriptor"},
		{"every without duration", `{"schedule":"@every"}`, "needs a duration"},
		{"every bad duration", `{"schedule":"@every soon"}`, "needs a duration"},
		{"every below a second", `{"schedule":"@every 500ms"}`, "at least 1s"},
		{"every negative", `{"schedule":"@every -5s"}`, "at least 1s"},
		{"every fractional", `{"schedule":"@every 1.5s"}`, "whole seconds"},
		{"long schedule", `{"schedule":"` + strings.Repeat("1,", 200) + `1 * * * *"}`, "longer than"},
		{"bad time zone", `{"schedule":"@hourly","timezone":"Mars/Olympus"}`, "IANA"},
		{"Local time zone", `{"schedule":"@hourly","timezone":"Local"}`, "IANA"},
		{"path time zone", `{"schedule":"@hourly","timezone":"../../etc/passwd"}`, "IANA"},
		{"bad catch-up window", `{"schedule":"@hourly","catchUpWindow":"1d"}`, "catchUpWindow"},
		{"negative catch-up window", `{"schedule":"@hourly","catchUpWindow":"-1h"}`, "catchUpWindow"},
		{"catch-up window too long", `{"schedule":"@hourly","catchUpWindow":"25h"}`, "catchUpWindow"},
		{"payload too large", big, "payload is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.config))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseConfig: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseConfig error = %v, want one containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, nimbus.ErrInvalid) {
				t.Errorf("error %v is not nimbus.ErrInvalid", err)
			}
		})
	}
}

func TestFactoryValidates(t *testing.T) {
	f := New(Deps{Clock: newFakeClock(t0)}).Factory("fn", "tr")
	if _, err := f([]byte(`{"schedule":"@hourly"}`)); err != nil {
		t.Errorf("Factory: %v", err)
	}
	if _, err := f([]byte(`{"schedule":"nope"}`)); !errors.Is(err, nimbus.ErrInvalid) {
		t.Errorf("Factory error = %v, want nimbus.ErrInvalid", err)
	}
	src, _ := f([]byte(`{"schedule":"@hourly"}`))
	if err := src.Run(t.Context(), nil, trigger.Options{}); err == nil {
		t.Error("Run without a tick store returned nil")
	}
	if _, err := New(Deps{}).Factory("", "tr")([]byte(`{"schedule":"@hourly"}`)); !errors.Is(err, nimbus.ErrInvalid) {
		t.Errorf("Factory without a function name: error = %v, want nimbus.ErrInvalid", err)
	}
}

func mustSchedule(t *testing.T, expr, tz string) schedule {
	t.Helper()
	loc, err := parseTimezone(tz)
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseSchedule(expr, loc, t0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// ticksFrom returns the n ticks after from.
func ticksFrom(s schedule, from time.Time, n int) []string {
	var out []string
	for t := s.Next(from); len(out) < n; t = s.Next(t) {
		out = append(out, t.Format(time.RFC3339))
	}
	return out
}

func TestScheduleTimeZones(t *testing.T) {
	tests := []struct {
		name, expr, tz, from string
		want                 []string
	}{
		{"UTC by default", "0 9 * * *", "", "2026-01-15T00:00:00Z",
			[]string{"2026-01-15T09:00:00Z", "2026-01-16T09:00:00Z"}},
		{"Paris in winter", "0 9 * * *", "Europe/Paris", "2026-01-15T00:00:00Z",
			[]string{"2026-01-15T08:00:00Z", "2026-01-16T08:00:00Z"}},
		{"Paris in summer", "0 9 * * *", "Europe/Paris", "2026-07-15T00:00:00Z",
			[]string{"2026-07-15T07:00:00Z", "2026-07-16T07:00:00Z"}},
		{"New York weekdays", "30 8 * * MON-FRI", "America/New_York", "2026-01-16T00:00:00Z",
			[]string{"2026-01-16T13:30:00Z", "2026-01-19T13:30:00Z"}},
		// Clocks go forward at 02:00 on 29 March 2026 in Paris: 02:30 does
		// not exist that day, so a 02:30 schedule skips it.
		{"spring forward skips the missing time", "30 2 * * *", "Europe/Paris", "2026-03-28T12:00:00Z",
			[]string{"2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"}},
		{"spring forward, hourly", "0 * * * *", "Europe/Paris", "2026-03-28T23:30:00Z",
			[]string{"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"}},
		// Clocks go back at 03:00 on 25 October 2026: 02:30 happens twice;
		// a fixed-hour schedule fires at the first only.
		{"fall back fires a fixed time once", "30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z",
			[]string{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
		{"fall back, every 30 minutes fires in both passes", "*/30 * * * *", "Europe/Paris", "2026-10-24T23:45:00Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z"}},
		{"every is aligned to the epoch", "@every 1h", "Europe/Paris", "2026-10-24T23:45:10Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z"}},
		{"every 7s", "@every 7s", "", "1970-01-01T00:00:00Z",
			[]string{"1970-01-01T00:00:07Z", "1970-01-01T00:00:14Z"}},
		{"seconds field", "15,45 * * * * *", "", "2026-01-01T00:00:20Z",
			[]string{"2026-01-01T00:00:45Z", "2026-01-01T00:01:15Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSchedule(t, tt.expr, tt.tz)
			got := ticksFrom(s, utc(tt.from), len(tt.want))
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("ticks = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTicksIn(t *testing.T) {
	s := mustSchedule(t, "@every 1s", "")
	got := ticksIn(s, utc("2026-01-01T00:00:00Z"), utc("2026-01-01T01:00:00Z"), 3)
	want := []time.Time{utc("2026-01-01T00:59:58Z"), utc("2026-01-01T00:59:59Z"), utc("2026-01-01T01:00:00Z")}
	if len(got) != 3 || !got[0].Equal(want[0]) || !got[2].Equal(want[2]) {
		t.Errorf("ticksIn = %v, want %v", got, want)
	}
}
