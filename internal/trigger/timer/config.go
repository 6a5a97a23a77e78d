package timer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // time zones work on hosts without a zoneinfo database

	"github.com/robfig/cron/v3"

	"github.com/nimbus-serverless/nimbus"
)

// Limits and defaults of a timer's Config.
const (
	// DefaultCatchUpWindow is how far back a missed tick is still fired at
	// start-up.
	DefaultCatchUpWindow = time.Hour
	// MaxCatchUpWindow bounds Config.CatchUpWindow; the tick bucket's TTL
	// must be longer (see TickTTL).
	MaxCatchUpWindow = 24 * time.Hour
	// MaxPayload bounds Config.Payload, as Lambda bounds scheduled events.
	MaxPayload = 256 << 10
	// maxScheduleLen bounds Config.Schedule.
	maxScheduleLen = 256
)

// Config is a timer trigger's configuration (nimbus.Trigger.Config of type
// "timer").
type Config struct {
	// Schedule is a cron expression: 5 fields (minute hour day-of-month
	// month day-of-week), 6 fields (seconds first), a descriptor (@yearly,
	// @monthly, @weekly, @daily, @midnight, @hourly) or "@every <duration>"
	// (whole seconds, at least 1s).
	Schedule string `json:"schedule"`
	// Timezone is the IANA zone the schedule is read in; UTC when empty.
	Timezone string `json:"timezone,omitempty"`
	// Payload is the event's data; {} when empty.
	Payload json.RawMessage `json:"payload,omitempty"`
	// CatchUpWindow is a Go duration ("1h", "0s" for none): at start-up
	// the most recent tick missed while no node ran the trigger is fired
	// once if it is at most this old. Empty means DefaultCatchUpWindow.
	CatchUpWindow string `json:"catchUpWindow,omitempty"`
	// Format is the event's format: "" (a CloudEvent, below) or FormatFC,
	// Function Compute's timer event {"triggerTime", "triggerName",
	// "payload"} (the Function Compute dialect's timers).
	Format string `json:"format,omitempty"`
}

// FormatFC is Config.Format of Function Compute's timer event.
const FormatFC = "fc"

// parsed is a validated Config.
type parsed struct {
	Config
	sched   schedule
	loc     *time.Location
	catchUp time.Duration
	payload []byte
}

// ParseConfig decodes and validates a timer Config. Errors are user errors
// (nimbus.ErrInvalid) naming the bad field.
func ParseConfig(raw json.RawMessage) (Config, error) {
	p, err := parseConfig(raw, time.Now())
	return p.Config, err
}

func parseConfig(raw json.RawMessage, now time.Time) (parsed, error) {
	var p parsed
	if len(bytes.TrimSpace(raw)) == 0 {
		return p, nimbus.Invalidf("timer config: schedule is required")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p.Config); err != nil {
		return p, nimbus.Invalidf("timer config: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	var err error
	if p.loc, err = parseTimezone(p.Timezone); err != nil {
		return p, err
	}
	if p.sched, err = parseSchedule(p.Schedule, p.loc, now); err != nil {
		return p, err
	}
	if p.catchUp, err = parseCatchUp(p.CatchUpWindow); err != nil {
		return p, err
	}
	if p.payload, err = parsePayload(p.Payload); err != nil {
		return p, err
	}
	if p.Format != "" && p.Format != FormatFC {
		return p, nimbus.Invalidf("timer config: format %q is not valid: leave it out (CloudEvents) or set %q (Function Compute's timer event)", p.Format, FormatFC)
	}
	return p, nil
}

func parseTimezone(tz string) (*time.Location, error) {
	if tz == "" {
		return time.UTC, nil
	}
	if tz == "Local" || strings.HasPrefix(tz, "/") || strings.Contains(tz, "..") {
		return nil, nimbus.Invalidf("timer config: timezone %q is not an IANA time zone name (e.g. Europe/Paris, UTC)", tz)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, nimbus.Invalidf("timer config: timezone %q is not an IANA time zone name (e.g. Europe/Paris, UTC)", tz)
	}
	return loc, nil
}

func parseCatchUp(s string) (time.Duration, error) {
	if s == "" {
		return DefaultCatchUpWindow, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > MaxCatchUpWindow {
		return 0, nimbus.Invalidf("timer config: catchUpWindow %q must be a duration from 0s to %s (e.g. 30m)", s, MaxCatchUpWindow)
	}
	return d, nil
}

func parsePayload(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return []byte("{}"), nil
	}
	if len(raw) > MaxPayload {
		return nil, nimbus.Invalidf("timer config: payload is %d bytes, more than the %d allowed", len(raw), MaxPayload)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, nimbus.Invalidf("timer config: payload is not valid JSON: %v", err)
	}
	return buf.Bytes(), nil
}

// cronParser reads 5 or 6 fields (seconds optional) and descriptors.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule validates a schedule expression read in loc (nil: UTC).
// Errors are user errors (nimbus.ErrInvalid).
func ParseSchedule(expr string, loc *time.Location) error {
	if loc == nil {
		loc = time.UTC
	}
	_, err := parseSchedule(expr, loc, time.Now())
	return err
}

func parseSchedule(expr string, loc *time.Location, now time.Time) (schedule, error) {
	s := strings.TrimSpace(expr)
	switch {
	case s == "":
		return nil, nimbus.Invalidf("timer config: schedule is required (e.g. \"*/5 * * * *\", \"@hourly\", \"@every 30s\")")
	case len(s) > maxScheduleLen:
		return nil, nimbus.Invalidf("timer config: schedule is longer than %d characters", maxScheduleLen)
	case strings.Contains(s, "TZ="):
		return nil, nimbus.Invalidf("timer config: schedule %q: set the time zone with the timezone field, not TZ= in the schedule", expr)
	case strings.HasPrefix(s, "@every"):
		return parseEvery(expr, s)
	}
	sched, err := cronParser.Parse(s)
	if err != nil {
		return nil, nimbus.Invalidf("timer config: schedule %q: %v (want 5 fields \"min hour dom month dow\", 6 with seconds first, or a descriptor such as @hourly)", expr, err)
	}
	spec, ok := sched.(*cron.SpecSchedule)
	if !ok {
		return nil, nimbus.Invalidf("timer config: schedule %q is not supported", expr)
	}
	spec.Location = loc
	c := &cronSchedule{spec: spec, loc: loc}
	if c.Next(now).IsZero() {
		return nil, nimbus.Invalidf("timer config: schedule %q never fires (e.g. a day that does not exist in the month)", expr)
	}
	return c, nil
}

func parseEvery(expr, s string) (schedule, error) {
	arg := strings.TrimSpace(strings.TrimPrefix(s, "@every"))
	d, err := time.ParseDuration(arg)
	switch {
	case arg == "" || err != nil:
		return nil, nimbus.Invalidf("timer config: schedule %q: @every needs a duration such as 30s, 5m or 1h30m", expr)
	case d < time.Second:
		return nil, nimbus.Invalidf("timer config: schedule %q: @every must be at least 1s", expr)
	case d%time.Second != 0:
		return nil, nimbus.Invalidf("timer config: schedule %q: @every must be whole seconds", expr)
	}
	return every(d), nil
}

// schedule gives the tick after t.
type schedule interface {
	// Next returns the first tick strictly after t (UTC), or the zero
	// time when there is none.
	Next(t time.Time) time.Time
}

// every ticks at the multiples of its period since the Unix epoch, so
// every node computes the same ticks whenever it started.
type every time.Duration

func (e every) Next(t time.Time) time.Time {
	d := int64(e)
	n := t.UnixNano()
	next := n - n%d + d
	if n < 0 && n%d != 0 {
		next -= d
	}
	return time.Unix(0, next).UTC()
}

// cronSchedule is a cron expression in a time zone. When clocks go back,
// the wall-clock times of the repeated hour occur twice; a schedule with
// fixed hours fires only at the first of them (as cron does), a schedule
// whose hour field is "*" fires at both.
type cronSchedule struct {
	spec *cron.SpecSchedule
	loc  *time.Location
}

// starBit marks a field given as "*" in robfig/cron's bit sets.
const starBit = 1 << 63

func (c *cronSchedule) Next(t time.Time) time.Time {
	for range 4 { // at most a few repeated instants to skip
		n := c.spec.Next(t)
		if n.IsZero() || !c.repeated(n) {
			return n.UTC()
		}
		t = n
	}
	return time.Time{}
}

// repeated reports whether n is the second occurrence of its wall-clock
// time (the hour repeated when clocks go back) for a fixed-hour schedule.
func (c *cronSchedule) repeated(n time.Time) bool {
	if c.spec.Hour&starBit != 0 {
		return false
	}
	a, b := n.In(c.loc), n.Add(-time.Hour).In(c.loc)
	return a.Hour() == b.Hour() && a.Minute() == b.Minute() && a.Day() == b.Day()
}

// String returns the schedule as configured, for logs.
func (p parsed) String() string { return fmt.Sprintf("%s (%s)", p.Schedule, p.loc) }
