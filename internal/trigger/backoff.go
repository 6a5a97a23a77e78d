package trigger

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is an exponential back-off schedule with jitter: the n-th delay
// (n from 0) is Base·2ⁿ capped at Max, of which a random part up to Jitter
// (a fraction, 0 to 1) is taken off, so that many waiters do not retry in
// step.
type Backoff struct {
	Base, Max time.Duration
	Jitter    float64
}

// Delay returns the n-th delay.
func (b Backoff) Delay(n int) time.Duration {
	d := b.Base
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.Jitter > 0 {
		d -= time.Duration(rand.Float64() * b.Jitter * float64(d))
	}
	return d
}

// Default back-off schedules.
var (
	// RetryBackoff spaces the retries of failed messages.
	RetryBackoff = Backoff{Base: time.Second, Max: time.Minute, Jitter: 0.5}
	// ThrottleBackoff spaces the attempts while the function is saturated.
	ThrottleBackoff = Backoff{Base: 50 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.5}
	// RestartBackoff spaces the restarts of a source that failed.
	RestartBackoff = Backoff{Base: time.Second, Max: time.Minute, Jitter: 0.2}
)

// Sleep waits for d or until ctx ends (returning its error). It is the
// default of the injectable sleeps; tests replace it so that they do not
// wait.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
