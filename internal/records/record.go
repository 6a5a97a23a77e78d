// Package records keeps one record per invocation, durably (a JetStream
// stream kept for the retention), answers queries over them, and meters
// usage from them: requests, billed milliseconds and GB-seconds per
// function per hour, aggregated exactly once from the records, with costs
// from a price table (usage.go).
package records

import (
	"context"
	"errors"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Statuses of a Record: how an invocation ended. They are also the
// outcome label of the invocation metrics.
const (
	StatusSuccess       = "success"
	StatusFunctionError = "function_error" // the function's own error or a crash
	StatusTimeout       = "timeout"
	StatusThrottled     = "throttled"      // refused for want of capacity: never ran
	StatusPlatformError = "platform_error" // Nimbus failed to run it
	// StatusAbandoned: the caller left while the function ran (the run is
	// billed; its answer reached no one), or stopped it.
	StatusAbandoned = "abandoned"
)

// Statuses lists every Record status.
var Statuses = []string{StatusSuccess, StatusFunctionError, StatusTimeout, StatusThrottled, StatusPlatformError, StatusAbandoned}

// Record is what is kept of one invocation. Its JSON names are
// Lambda-style (RequestId, Duration, BilledDuration, ...); durations are
// in milliseconds.
type Record struct {
	RequestID string `json:"RequestId"`
	Function  string `json:"FunctionName"`
	Qualifier string `json:"Qualifier"`
	// Trigger is how the invocation arrived (nimbus.Invocation.Trigger).
	Trigger   string    `json:"Trigger"`
	StartTime time.Time `json:"StartTime"`
	EndTime   time.Time `json:"EndTime"`
	// Duration is the run; BilledDuration what is billed of it (the run
	// and a cold start's init, rounded up to the millisecond; 0 for an
	// invocation that never ran).
	Duration       float64 `json:"Duration"`
	BilledDuration int64   `json:"BilledDuration"`
	MemorySize     int     `json:"MemorySize"`
	MaxMemoryUsed  int64   `json:"MaxMemoryUsed"`
	InitDuration   float64 `json:"InitDuration,omitempty"`
	ColdStart      bool    `json:"ColdStart"`
	// QueueDuration is how long the request waited for an instance.
	QueueDuration float64 `json:"QueueDuration,omitempty"`
	InstanceID    string  `json:"InstanceId,omitempty"`
	Node          string  `json:"Node"`
	Status        string  `json:"Status"`
	ErrorType     string  `json:"ErrorType,omitempty"`
	TaskID        string  `json:"TaskId,omitempty"`
	TraceID       string  `json:"TraceId,omitempty"`
}

// Failed reports whether the invocation did not succeed.
func (r *Record) Failed() bool { return r.Status != StatusSuccess }

// GBSeconds is the record's billed compute: memory in GB times billed
// seconds.
func (r *Record) GBSeconds() float64 {
	return float64(r.MemorySize) / 1024 * float64(r.BilledDuration) / 1000
}

// Millis is d in milliseconds, to the microsecond.
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BilledMillis is d in started milliseconds (at least 1), as the REPORT
// line bills it.
func BilledMillis(d time.Duration) int64 {
	b := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 || b == 0 {
		b++
	}
	return b
}

// Of builds the record of an invocation that began at start and ended at
// end with res and err (err: it did not run, or Nimbus failed).
func Of(fn *nimbus.Function, req *nimbus.Invocation, start, end time.Time, res *nimbus.Result, err error, node string) Record {
	rep := res.Report
	r := Record{
		RequestID: req.RequestID, Function: fn.Name, Qualifier: fn.Qualifier(), Trigger: req.Trigger,
		StartTime: start.UTC(), EndTime: end.UTC(), MemorySize: fn.MemoryMB, Node: node,
		TaskID: req.TaskID, TraceID: req.TraceID, InstanceID: rep.InstanceID,
		ColdStart: rep.ColdStart, QueueDuration: Millis(rep.Queued), MaxMemoryUsed: rep.MaxMemoryUsedMB,
		Status: StatusSuccess,
	}
	if r.Trigger == "" {
		r.Trigger = nimbus.TriggerAPI
	}
	ran := rep.InstanceID != "" || rep.Init > 0
	if ran {
		r.Duration = Millis(rep.Duration)
		r.InitDuration = Millis(rep.Init)
		r.BilledDuration = BilledMillis(rep.Duration + rep.Init)
	}
	switch {
	case errors.Is(err, nimbus.ErrThrottled):
		r.Status, r.ErrorType = StatusThrottled, "TooManyRequestsException"
	case errors.Is(err, context.Canceled):
		// The caller went away before an instance took the request.
		r.Status, r.ErrorType = StatusPlatformError, "RequestCancelled"
	case err != nil:
		r.Status, r.ErrorType = StatusPlatformError, "ServiceException"
	case res.Err != nil && res.Err.Type == "Sandbox.Timedout":
		r.Status, r.ErrorType = StatusTimeout, res.Err.Type
	case res.Err != nil && res.Err.Type == "Runtime.Abandoned":
		r.Status, r.ErrorType = StatusAbandoned, res.Err.Type
	case res.Err != nil:
		r.Status, r.ErrorType = StatusFunctionError, res.Err.Type
	}
	return r
}
