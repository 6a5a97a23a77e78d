package trigger

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nimbus-serverless/nimbus"
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

// Reconnect runs session until ctx ends, the loop of a source that keeps a
// connection: when a session fails, its error goes to status and the log,
// and the next starts after a wait that is minWait at first and after a
// session that made progress, and doubles up to maxWait otherwise.
func Reconnect(ctx context.Context, status *Status, log *slog.Logger, minWait, maxWait time.Duration,
	session func(context.Context) (progress bool, err error)) {
	wait := minWait
	for ctx.Err() == nil {
		progress, err := session(ctx)
		if ctx.Err() != nil {
			return
		}
		status.Error(err)
		log.Warn("consumer stopped; retrying", nimbus.LogErr, RedactText(err.Error()), "retry_in", wait)
		if progress {
			wait = minWait
		}
		if Sleep(ctx, wait) != nil {
			return
		}
		wait = min(2*wait, maxWait)
	}
}
