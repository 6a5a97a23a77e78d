package trigger

import "time"

// Metrics is told what a trigger's Sink does (internal/metrics implements
// it); nil tells nothing. typ is the trigger's type. Its methods must not
// block.
type Metrics interface {
	// Batch: a batch of size messages arrived from the source; lag is the
	// age of its oldest message (now minus the time the source gave it;
	// 0 when the source gives none).
	Batch(function, typ string, size int, lag time.Duration)
	// Delivered: n messages were delivered (their invocation succeeded).
	Delivered(function, typ string, n int)
	// Failed: n messages failed for good (sent to the failure destination
	// or the dead-letter queue, or dropped).
	Failed(function, typ string, n int)
}

type noMetrics struct{}

func (noMetrics) Batch(string, string, int, time.Duration) {}
func (noMetrics) Delivered(string, string, int)            {}
func (noMetrics) Failed(string, string, int)               {}

// lag is the age of a batch's oldest message with a time.
func lag(batch []Message, now time.Time) time.Duration {
	var oldest time.Time
	for i := range batch {
		if t := batch[i].Time; !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return max(now.Sub(oldest), 0)
}
