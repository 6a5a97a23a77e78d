package async

import (
	"context"
	"errors"
	"time"
)

// Metrics is told what the Async Service does (internal/metrics implements
// it); Config.Metrics nil tells nothing. Its methods must not block.
type Metrics interface {
	// Submitted: an event was stored.
	Submitted(function string)
	// Started: an attempt of an event starts running, age after the
	// event was first submitted.
	Started(function string, age time.Duration)
	// Retried: a failed attempt was stored for a retry.
	Retried(function string)
	// Failed: an event failed for good (condition CondRetriesExhausted,
	// CondEventAgeExceeded or CondFunctionDeleted); kept reports whether a
	// failure destination or dead-letter target took it (otherwise only
	// the dead-letter store keeps it).
	Failed(function, condition string, kept bool)
	// DeadLettered: a dead letter was written.
	DeadLettered(function string)
	// DestinationFailed: sending an outcome failed; kind is "on_success",
	// "on_failure" or "dead_letter_target".
	DestinationFailed(function, kind string)
}

// The kinds of DestinationFailed.
const (
	DestOnSuccess  = "on_success"
	DestOnFailure  = "on_failure"
	DestDeadLetter = "dead_letter_target"
)

// noMetrics tells nothing.
type noMetrics struct{}

func (noMetrics) Submitted(string)                 {}
func (noMetrics) Started(string, time.Duration)    {}
func (noMetrics) Retried(string)                   {}
func (noMetrics) Failed(string, string, bool)      {}
func (noMetrics) DeadLettered(string)              {}
func (noMetrics) DestinationFailed(string, string) {}

// Backlogger is implemented by a Backend whose queue can say cheaply how
// many messages wait per function.
type Backlogger interface {
	// Backlog returns the number of queue messages per function with any
	// (waiting, due later, or held by a node). Errors:
	// nimbus.ErrUnavailable.
	Backlog(ctx context.Context) (map[string]int, error)
}

// ErrNoBacklog is what Backlog returns when the backend cannot tell.
var ErrNoBacklog = errors.New("async: the backend does not report its backlog")

// Backlog returns the queue's messages per function. Errors: ErrNoBacklog,
// nimbus.ErrUnavailable.
func (s *Service) Backlog(ctx context.Context) (map[string]int, error) {
	b, ok := s.q.(Backlogger)
	if !ok {
		return nil, ErrNoBacklog
	}
	return b.Backlog(ctx)
}
