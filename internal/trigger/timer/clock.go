package timer

import "time"

// Clock tells the time and wakes a timer's loop at a given instant. Tests
// pass a fake one, so no test waits for real minutes.
type Clock interface {
	Now() time.Time
	// At returns a channel that receives once the clock reaches t (at once
	// when t is past), and a function that releases the timer.
	At(t time.Time) (<-chan time.Time, func())
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// At implements Clock. A wall-clock jump can wake it early or late; callers
// check Now again after waking.
func (SystemClock) At(t time.Time) (<-chan time.Time, func()) {
	tm := time.NewTimer(time.Until(t))
	return tm.C, func() { tm.Stop() }
}
