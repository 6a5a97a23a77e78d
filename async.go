package nimbus

import (
	"encoding/json"
	"time"
)

// Asynchronous invocation limits. Lambda allows 0-2 retries and 60 s - 6 h of
// event age; Nimbus allows up to 8 retries and 7 days, as Function Compute
// does.
const (
	DefaultRetryAttempts = 2
	MaxRetryAttempts     = 8
	MinEventAgeSeconds   = 60
	DefaultEventAge      = 6 * 60 * 60
	MaxEventAgeSeconds   = 7 * 24 * 60 * 60
)

// EventInvokeConfig is a function's asynchronous invocation configuration
// (Lambda's FunctionEventInvokeConfig, with Nimbus's flow-control settings).
type EventInvokeConfig struct {
	// MaximumRetryAttempts is how often a failed event is run again (nil:
	// the default, 2).
	MaximumRetryAttempts *int `json:"maximumRetryAttempts,omitempty"`
	// MaximumEventAgeInSeconds: an older event is not run (again) and goes
	// to the failure destination (nil: the default, 6 h).
	MaximumEventAgeInSeconds *int   `json:"maximumEventAgeInSeconds,omitempty"`
	OnSuccess                string `json:"onSuccess,omitempty"` // destination, see ParseDestination
	OnFailure                string `json:"onFailure,omitempty"`
	// DestinationSecret signs webhook deliveries (HMAC-SHA256).
	DestinationSecret string `json:"destinationSecret,omitempty"`
	// MaxConcurrency caps the instances the Async Service uses for this
	// function at once (0: the function's own limit).
	MaxConcurrency int `json:"maxConcurrency,omitempty"`
	// MaxEventsPerSecond limits how fast events start (0: no limit).
	MaxEventsPerSecond float64   `json:"maxEventsPerSecond,omitempty"`
	LastModified       time.Time `json:"lastModified"`
}

// EventInvokeFor is the asynchronous invocation configuration of
// qualifier q ("" or Latest: EventInvoke; a version's number or an alias's
// name: EventInvokeQualified), nil when q has none. An event follows the
// configuration of the qualifier it was invoked with, and only that one:
// an alias's events do not fall back to $LATEST's nor to the version's
// configuration, as in Lambda.
func (f *Function) EventInvokeFor(q string) *EventInvokeConfig {
	if q == "" || q == Latest {
		return f.EventInvoke
	}
	return f.EventInvokeQualified[q]
}

// Retries returns the effective retry count.
func (c *EventInvokeConfig) Retries() int {
	if c == nil || c.MaximumRetryAttempts == nil {
		return DefaultRetryAttempts
	}
	return *c.MaximumRetryAttempts
}

// MaxAge returns the effective maximum event age.
func (c *EventInvokeConfig) MaxAge() time.Duration {
	if c == nil || c.MaximumEventAgeInSeconds == nil {
		return DefaultEventAge * time.Second
	}
	return time.Duration(*c.MaximumEventAgeInSeconds) * time.Second
}

// Task statuses of an asynchronous invocation.
const (
	TaskEnqueued  = "Enqueued"
	TaskRunning   = "Running"
	TaskRetrying  = "Retrying"
	TaskSucceeded = "Succeeded"
	TaskFailed    = "Failed"
	TaskExpired   = "Expired"
	TaskStopping  = "Stopping"
	TaskStopped   = "Stopped"
)

// TaskFinal reports whether a status is final.
func TaskFinal(status string) bool {
	switch status {
	case TaskSucceeded, TaskFailed, TaskExpired, TaskStopped:
		return true
	}
	return false
}

// Task is the record of one asynchronous invocation.
type Task struct {
	ID       string    `json:"id"`
	Function string    `json:"function"`
	Status   string    `json:"status"`
	Attempts int       `json:"attempts"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Updated  time.Time `json:"updated"`
	Finished time.Time `json:"finished,omitzero"`
	// DurationMs is the last attempt's run time.
	DurationMs float64 `json:"durationMs,omitempty"`
	// Result is the start of the function's result (Succeeded) and Error
	// the start of its error or the reason it failed (Failed, Expired,
	// Stopped), both truncated.
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
	// Destination is where the outcome was sent and how that went.
	Destination       string `json:"destination,omitempty"`
	DestinationStatus string `json:"destinationStatus,omitempty"` // Delivered, Failed: reason
}

// DeadLetter is an asynchronous event that failed for good, kept so that it
// can be inspected and re-driven.
type DeadLetter struct {
	// Seq identifies the dead letter (for paging and re-driving).
	Seq      uint64 `json:"seq"`
	TaskID   string `json:"taskId"`
	Function string `json:"function"`
	// Condition is why: RetriesExhausted, EventAgeExceeded, FunctionDeleted.
	Condition string          `json:"condition"`
	Reason    string          `json:"reason"`
	Attempts  int             `json:"attempts"`
	Created   time.Time       `json:"created"`
	Failed    time.Time       `json:"failed"`
	Payload   json.RawMessage `json:"payload"`
}

// Supersedes reports whether record t replaces cur, two records of one task
// that may arrive in any order (written by different nodes, or one of them
// without waiting). A later life of the task (a re-drive, created later)
// wins; within one life a final status stands, a stop request outranks
// running and retrying, and otherwise the later update wins (a tie too).
func (t *Task) Supersedes(cur *Task) bool {
	if c := t.Created.Compare(cur.Created); c != 0 {
		return c > 0
	}
	if rc, rt := TaskRank(cur.Status), TaskRank(t.Status); rc != rt {
		return rt > rc
	}
	return !t.Updated.Before(cur.Updated)
}

// TaskRank orders statuses within one life of a task, for Supersedes: 3
// for a final status, 2 for Stopping, 1 for the others.
func TaskRank(status string) int {
	switch {
	case TaskFinal(status):
		return 3
	case status == TaskStopping:
		return 2
	}
	return 1
}

// Equal reports whether two records are the same, times compared as
// instants (a record read back may carry another location).
func (t *Task) Equal(o *Task) bool {
	a, b := *t, *o
	if !a.Created.Equal(b.Created) || !a.Started.Equal(b.Started) || !a.Updated.Equal(b.Updated) || !a.Finished.Equal(b.Finished) {
		return false
	}
	a.Created, a.Started, a.Updated, a.Finished = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	b.Created, b.Started, b.Updated, b.Finished = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return a == b
}
